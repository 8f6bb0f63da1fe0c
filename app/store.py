"""Chat history in SQLite: conversations, messages as a tree (regenerate and edit make
branches), provenance and statistics per message.

Qt-free on purpose, so the durability tests can drive it without a window.

Durability: WAL journal with synchronous=NORMAL survives a killed process (every
committed transaction is in the WAL), and a streaming reply is committed as it grows
(the caller throttles; see app/chat_controller.py).  A reply whose `finish` is still
NULL when the store opens was cut off by a crash: it is marked interrupted.

Messages form a tree.  A message's siblings (same parent, same role) are its
versions: regenerating an answer adds an assistant sibling, editing a question adds a
user sibling.  A conversation shows one branch: the path from the root to its
`current_leaf`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DB_NAME = "chats.sqlite3"
DEFAULT_TITLE = "New chat"
SOURCES = ("target", "draft", "ngram", "history", "recycle")


class StoreError(Exception):
    """The database cannot be used (written by a newer Tandem, damaged)."""


# ------------------------------------------------------------------ schema and migrations
#
# MIGRATIONS[i] brings a database from version i to version i + 1, inside one
# transaction.  Append, never edit: users' databases are at every version ever shipped.

_V1 = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL DEFAULT 'New chat',
    system_prompt TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    opened_at REAL,
    deleted_at REAL,            -- soft delete, so Undo works; purged at the next start
    current_leaf INTEGER        -- last message of the branch on screen
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    version INTEGER NOT NULL DEFAULT 1,     -- 1 + siblings that existed when it was made
    text TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finish TEXT,                -- NULL while streaming; stop/length/context/cancelled/crash/error/interrupted
    interrupted INTEGER NOT NULL DEFAULT 0,  -- the reply did not end normally (app or engine died)
    error TEXT,
    provenance TEXT,            -- JSON [[n_chars, source], ...]
    stats TEXT,                 -- JSON, see Message.stats
    model TEXT,                 -- JSON {"target", "draft", "mode"}
    chosen INTEGER NOT NULL DEFAULT 0  -- when it was last on the shown branch (per-conversation sequence)
);
CREATE INDEX messages_by_parent ON messages(conversation_id, parent_id);
CREATE INDEX conversations_by_update ON conversations(deleted_at, updated_at);
"""

def run_script(db: sqlite3.Connection, script: str) -> None:
    """Execute statements one by one: executescript() would COMMIT the migration's
    transaction halfway, and a failed migration must leave the old schema intact."""
    statement = ""
    for line in script.splitlines():
        statement += line.split("--", 1)[0] + "\n"
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        db.execute(statement)


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    lambda db: run_script(db, _V1),
]


def schema_version() -> int:
    return len(MIGRATIONS)


# ------------------------------------------------------------------ rows


@dataclass
class Conversation:
    id: int
    title: str
    system_prompt: str
    created_at: float
    updated_at: float
    opened_at: float | None
    current_leaf: int | None


@dataclass
class Message:
    id: int
    conversation_id: int
    parent_id: int | None
    role: str
    version: int
    text: str
    created_at: float
    updated_at: float
    finish: str | None
    interrupted: bool
    error: str | None
    provenance: list[list[Any]] = field(default_factory=list)  # [[n_chars, source], ...]
    stats: dict[str, Any] | None = None
    model: dict[str, Any] | None = None

    @property
    def streaming(self) -> bool:
        return self.finish is None


# ------------------------------------------------------------------ provenance runs


def add_run(runs: list[list[Any]], text: str, source: str) -> None:
    """Append `text` from `source` to run-length provenance, merging equal neighbours."""
    if not text:
        return
    if runs and runs[-1][1] == source:
        runs[-1][0] += len(text)
    else:
        runs.append([len(text), source])


def char_sources(runs: Iterable[list[Any]], length: int) -> list[str]:
    """Per-character source list of `length` chars (missing tail: target)."""
    out: list[str] = []
    for n, source in runs:
        out.extend([source] * int(n))
    if len(out) < length:
        out.extend(["target"] * (length - len(out)))
    return out[:length]


# ------------------------------------------------------------------ the store


class ChatStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we open transactions ourselves, so a streaming save is
        # exactly one short transaction
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise StoreError(f"cannot open the chat history {self.path}: {exc}") from exc
        self.recovered = self._recover()
        self._purge_deleted()

    def close(self) -> None:
        self.db.close()

    # ---------------------------------------------------------------- setup

    def version(self) -> int:
        row = self.db.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'"
        ).fetchone()
        if row is None:
            return 0
        got = self.db.execute("SELECT version FROM schema_version").fetchone()
        return int(got[0]) if got else 0

    def _migrate(self) -> None:
        current = self.version()
        target = schema_version()
        if current > target:
            raise StoreError(
                f"the chat history {self.path} was written by a newer Tandem (schema {current}, "
                f"this version knows {target}); update Tandem to open it"
            )
        for version in range(current, target):
            with self._tx():
                if version == 0:
                    self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                MIGRATIONS[version](self.db)
                self.db.execute("DELETE FROM schema_version")
                self.db.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))

    def _tx(self) -> _Transaction:
        return _Transaction(self.db)

    def _recover(self) -> list[int]:
        """Replies still streaming when the last run ended were cut off: mark them."""
        ids = [r[0] for r in self.db.execute("SELECT id FROM messages WHERE finish IS NULL")]
        if ids:
            with self._tx():
                self.db.execute(
                    "UPDATE messages SET finish='interrupted', interrupted=1 WHERE finish IS NULL"
                )
        return ids

    def _purge_deleted(self) -> None:
        with self._tx():
            self.db.execute("DELETE FROM conversations WHERE deleted_at IS NOT NULL")

    # ---------------------------------------------------------------- conversations

    def create_conversation(self, title: str = DEFAULT_TITLE, system_prompt: str = "") -> Conversation:
        now = time.time()
        with self._tx():
            cur = self.db.execute(
                "INSERT INTO conversations (title, system_prompt, created_at, updated_at, opened_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (title, system_prompt, now, now, now),
            )
        conv = self.conversation(int(cur.lastrowid))
        assert conv is not None
        return conv

    def conversation(self, conv_id: int) -> Conversation | None:
        row = self.db.execute(
            "SELECT * FROM conversations WHERE id=? AND deleted_at IS NULL", (conv_id,)
        ).fetchone()
        return _conversation(row) if row else None

    def conversations(self, search: str = "") -> list[Conversation]:
        """Most recently updated first; `search` matches titles and message text."""
        if search:
            like = f"%{_escape_like(search)}%"
            rows = self.db.execute(
                "SELECT * FROM conversations c WHERE deleted_at IS NULL AND (title LIKE ? ESCAPE '\\' "
                "OR system_prompt LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m "
                "WHERE m.conversation_id = c.id AND m.text LIKE ? ESCAPE '\\')) ORDER BY updated_at DESC, id DESC",
                (like, like, like),
            )
        else:
            rows = self.db.execute(
                "SELECT * FROM conversations WHERE deleted_at IS NULL ORDER BY updated_at DESC, id DESC"
            )
        return [_conversation(r) for r in rows]

    def last_opened(self) -> Conversation | None:
        row = self.db.execute(
            "SELECT * FROM conversations WHERE deleted_at IS NULL AND opened_at IS NOT NULL "
            "ORDER BY opened_at DESC, id DESC LIMIT 1"
        ).fetchone()
        return _conversation(row) if row else None

    def mark_opened(self, conv_id: int) -> None:
        with self._tx():
            self.db.execute("UPDATE conversations SET opened_at=? WHERE id=?", (time.time(), conv_id))

    def rename(self, conv_id: int, title: str) -> None:
        title = " ".join(title.split()) or DEFAULT_TITLE
        with self._tx():
            self.db.execute("UPDATE conversations SET title=? WHERE id=?", (title, conv_id))

    def set_system_prompt(self, conv_id: int, prompt: str) -> None:
        with self._tx():
            self.db.execute(
                "UPDATE conversations SET system_prompt=?, updated_at=? WHERE id=?", (prompt, time.time(), conv_id)
            )

    def delete_conversation(self, conv_id: int) -> None:
        """Soft delete: `undelete` brings it back until the store is opened again."""
        with self._tx():
            self.db.execute("UPDATE conversations SET deleted_at=? WHERE id=?", (time.time(), conv_id))

    def undelete_conversation(self, conv_id: int) -> None:
        with self._tx():
            self.db.execute("UPDATE conversations SET deleted_at=NULL WHERE id=?", (conv_id,))

    def _touch(self, conv_id: int, leaf: int | None = None) -> None:
        if leaf is None:
            self.db.execute("UPDATE conversations SET updated_at=? WHERE id=?", (time.time(), conv_id))
        else:
            self.db.execute(
                "UPDATE conversations SET updated_at=?, current_leaf=? WHERE id=?", (time.time(), leaf, conv_id)
            )

    # ---------------------------------------------------------------- messages

    def add_message(
        self,
        conv_id: int,
        role: str,
        text: str,
        parent_id: int | None,
        *,
        finish: str | None = "stop",
        model: dict[str, Any] | None = None,
    ) -> Message:
        """Add a message under `parent_id` and make it the end of the shown branch.
        An assistant reply starts with finish=None (streaming)."""
        now = time.time()
        with self._tx():
            siblings = self.db.execute(
                "SELECT COUNT(*) FROM messages WHERE conversation_id=? AND parent_id IS ? AND role=?",
                (conv_id, parent_id, role),
            ).fetchone()[0]
            cur = self.db.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, version, text, created_at, updated_at, "
                "finish, model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conv_id, parent_id, role, siblings + 1, text, now, now, finish, _dump(model)),
            )
            msg_id = int(cur.lastrowid)
            self._touch(conv_id, msg_id)
            self._mark_branch(conv_id, msg_id)
        msg = self.message(msg_id)
        assert msg is not None
        return msg

    def message(self, msg_id: int) -> Message | None:
        row = self.db.execute("SELECT * FROM messages WHERE id=?", (msg_id,)).fetchone()
        return _message(row) if row else None

    def save_partial(self, msg_id: int, text: str, provenance: list[list[Any]], stats: dict | None = None) -> None:
        """One short transaction while a reply streams (called at most every ~200 ms)."""
        with self._tx():
            self.db.execute(
                "UPDATE messages SET text=?, provenance=?, stats=COALESCE(?, stats), updated_at=? WHERE id=?",
                (text, json.dumps(provenance), _dump(stats), time.time(), msg_id),
            )

    def finish_message(
        self,
        msg_id: int,
        *,
        text: str,
        provenance: list[list[Any]],
        stats: dict | None,
        finish: str,
        interrupted: bool = False,
        error: str | None = None,
    ) -> None:
        with self._tx():
            self.db.execute(
                "UPDATE messages SET text=?, provenance=?, stats=COALESCE(?, stats), finish=?, interrupted=?, error=?, "
                "updated_at=? "
                "WHERE id=?",
                (text, json.dumps(provenance), _dump(stats), finish, int(interrupted), error, time.time(), msg_id),
            )
            row = self.db.execute("SELECT conversation_id FROM messages WHERE id=?", (msg_id,)).fetchone()
            if row:
                self._touch(row[0])

    def children(self, conv_id: int, parent_id: int | None) -> list[Message]:
        rows = self.db.execute(
            "SELECT * FROM messages WHERE conversation_id=? AND parent_id IS ? ORDER BY created_at, id",
            (conv_id, parent_id),
        )
        return [_message(r) for r in rows]

    def siblings(self, msg: Message) -> list[Message]:
        """The versions of `msg` (itself included), oldest first."""
        return [m for m in self.children(msg.conversation_id, msg.parent_id) if m.role == msg.role]

    def branch(self, conv_id: int) -> list[Message]:
        """The messages on screen: root to the conversation's current leaf."""
        conv = self.conversation(conv_id)
        if conv is None or conv.current_leaf is None:
            return []
        path: list[Message] = []
        node = self.message(conv.current_leaf)
        while node is not None:
            path.append(node)
            node = self.message(node.parent_id) if node.parent_id is not None else None
        return path[::-1]

    def select_version(self, msg_id: int) -> None:
        """Show the branch through `msg_id`, continuing down the children that were on
        screen most recently (so switching back restores the whole earlier branch)."""
        msg = self.message(msg_id)
        if msg is None:
            return
        leaf_id = msg.id
        while True:
            row = self.db.execute(
                "SELECT id FROM messages WHERE parent_id=? ORDER BY chosen DESC, id DESC LIMIT 1", (leaf_id,)
            ).fetchone()
            if row is None:
                break
            leaf_id = int(row[0])
        self.set_leaf(msg.conversation_id, leaf_id)

    def set_leaf(self, conv_id: int, msg_id: int | None) -> None:
        with self._tx():
            self.db.execute("UPDATE conversations SET current_leaf=? WHERE id=?", (msg_id, conv_id))
            if msg_id is not None:
                self._mark_branch(conv_id, msg_id)

    def _mark_branch(self, conv_id: int, leaf_id: int) -> None:
        """Stamp every message on the path to `leaf_id` as the most recently shown."""
        seq = self.db.execute(
            "SELECT COALESCE(MAX(chosen), 0) + 1 FROM messages WHERE conversation_id=?", (conv_id,)
        ).fetchone()[0]
        self.db.execute(
            "WITH RECURSIVE path(id, parent_id) AS ("
            " SELECT id, parent_id FROM messages WHERE id=?"
            " UNION ALL SELECT m.id, m.parent_id FROM messages m JOIN path p ON m.id = p.parent_id)"
            " UPDATE messages SET chosen=? WHERE id IN (SELECT id FROM path)",
            (leaf_id, seq),
        )

    def message_count(self, conv_id: int) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM messages WHERE conversation_id=?", (conv_id,)).fetchone()[0])

    # ---------------------------------------------------------------- export

    def export_markdown(self, conv_id: int) -> str:
        """The shown branch as Markdown (what the user sees, in order)."""
        conv = self.conversation(conv_id)
        if conv is None:
            raise StoreError(f"no conversation {conv_id}")
        lines = [f"# {conv.title}", ""]
        if conv.system_prompt.strip():
            lines += ["**System prompt**", "", *(f"> {ln}" for ln in conv.system_prompt.splitlines()), ""]
        for msg in self.branch(conv_id):
            who = "You" if msg.role == "user" else "Assistant"
            lines += [f"## {who}", "", msg.text.rstrip(), ""]
            notes = []
            if msg.interrupted:
                notes.append("interrupted: this reply was cut off")
            elif msg.finish == "cancelled":
                notes.append("stopped before the end")
            if msg.error:
                notes.append(f"error: {msg.error}")
            if msg.role == "assistant" and msg.stats:
                s = msg.stats
                part = f"{s.get('tokens', 0)} tokens, {s.get('tokens_per_s', 0):.1f} tok/s"
                if s.get("speedup"):
                    part += f", {s['speedup']:.2f}x plain"
                notes.append(part)
            if notes:
                lines += [f"*{'; '.join(notes)}*", ""]
        return "\n".join(lines).rstrip() + "\n"


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on error (the connection is in autocommit)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _load(value: str | None, default: Any = None) -> Any:
    if not value:
        return default
    try:
        return json.loads(value)
    except ValueError:
        return default  # a damaged JSON column must not make a whole conversation unreadable


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        id=row["id"],
        title=row["title"],
        system_prompt=row["system_prompt"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        opened_at=row["opened_at"],
        current_leaf=row["current_leaf"],
    )


def _message(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        parent_id=row["parent_id"],
        role=row["role"],
        version=row["version"],
        text=row["text"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finish=row["finish"],
        interrupted=bool(row["interrupted"]),
        error=row["error"],
        provenance=_load(row["provenance"], []),
        stats=_load(row["stats"]),
        model=_load(row["model"]),
    )


def title_from(text: str, limit: int = 48) -> str:
    """A conversation title from its first question: first line, shortened at a word."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if len(line) <= limit:
        return line or DEFAULT_TITLE
    cut = line[:limit].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else line[:limit]) + "…"
