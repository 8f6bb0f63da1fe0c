"""The chat history store: schema and migrations, the interrupted flag, branches and
versions, soft delete with undo, search, Markdown export, and durability when the
process writing a streaming reply is killed."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app import store as store_mod
from app.store import ChatStore, StoreError, add_run, char_sources, title_from

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "chats.sqlite3"


def test_new_database_has_current_schema_and_wal(db_path: Path) -> None:
    s = ChatStore(db_path)
    assert s.version() == store_mod.schema_version() >= 1
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    tables = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "conversations", "messages"} <= tables
    s.close()


def test_migration_upgrades_old_database_and_keeps_data(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = ChatStore(db_path)
    conv = s.create_conversation("kept")
    s.add_message(conv.id, "user", "hello", None)
    s.close()

    def v2(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, v2])
    s = ChatStore(db_path)
    assert s.version() == len(store_mod.MIGRATIONS)
    cols = {r[1] for r in s.db.execute("PRAGMA table_info(conversations)")}
    assert "pinned" in cols
    assert [m.text for m in s.branch(conv.id)] == ["hello"]
    s.close()


def test_failed_migration_rolls_back(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = ChatStore(db_path)
    conv = s.create_conversation("safe")
    s.close()
    before = store_mod.schema_version()

    def broken(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE conversations ADD COLUMN half_done INTEGER")
        raise sqlite3.OperationalError("disk full halfway")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, broken])
    with pytest.raises(StoreError, match="disk full halfway"):
        ChatStore(db_path)
    monkeypatch.undo()
    s = ChatStore(db_path)
    assert s.version() == before
    assert "half_done" not in {r[1] for r in s.db.execute("PRAGMA table_info(conversations)")}
    assert s.conversation(conv.id) is not None
    s.close()


def test_database_from_a_newer_tandem_is_refused_untouched(db_path: Path) -> None:
    ChatStore(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="newer Tandem"):
        ChatStore(db_path)
    raw = sqlite3.connect(db_path)
    assert raw.execute("SELECT version FROM schema_version").fetchone()[0] == 99
    raw.close()


def test_streaming_reply_reopens_marked_interrupted(db_path: Path) -> None:
    s = ChatStore(db_path)
    conv = s.create_conversation()
    user = s.add_message(conv.id, "user", "question", None)
    reply = s.add_message(conv.id, "assistant", "", user.id, finish=None)
    runs: list = []
    add_run(runs, "partial ", "target")
    add_run(runs, "answer", "draft")
    s.save_partial(reply.id, "partial answer", runs, {"tokens": 3})
    s.close()  # no finish_message: as if the app died

    s = ChatStore(db_path)
    assert s.recovered == [reply.id]
    msg = s.message(reply.id)
    assert msg is not None
    assert msg.interrupted and msg.finish == "interrupted"
    assert msg.text == "partial answer"
    assert msg.provenance == [[8, "target"], [6, "draft"]]
    assert msg.stats == {"tokens": 3}
    s.close()
    assert ChatStore(db_path).recovered == []  # recovered once, not again


def test_killed_writer_loses_at_most_the_last_save(db_path: Path) -> None:
    """A separate process streams a reply through the store and is SIGKILLed: the
    database opens, the conversation is intact, the reply is there and interrupted."""
    ChatStore(db_path).close()
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from app.store import ChatStore
        s = ChatStore({str(db_path)!r})
        conv = s.create_conversation("killed")
        user = s.add_message(conv.id, "user", "go", None)
        reply = s.add_message(conv.id, "assistant", "", user.id, finish=None)
        text = ""
        for i in range(100000):
            text += f"w{{i}} "
            s.save_partial(reply.id, text, [[len(text), "target"]])
            print(len(text), flush=True)
            time.sleep(0.002)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    saved = 0
    for line in proc.stdout:
        saved = int(line)
        if saved > 2000:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s = ChatStore(db_path)
    assert s.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conv = next(c for c in s.conversations() if c.title == "killed")
    user, reply = s.branch(conv.id)
    assert user.text == "go"
    assert reply.interrupted
    # every committed save survives: at least what the writer had reported
    assert len(reply.text) >= saved
    assert reply.text.startswith("w0 w1 w2 ")
    s.close()


def test_versions_and_branches(db_path: Path) -> None:
    s = ChatStore(db_path)
    conv = s.create_conversation()
    q1 = s.add_message(conv.id, "user", "first question", None)
    a1 = s.add_message(conv.id, "assistant", "answer one", q1.id)
    a2 = s.add_message(conv.id, "assistant", "answer two", q1.id)  # regenerate
    assert [m.text for m in s.branch(conv.id)] == ["first question", "answer two"]
    assert [m.id for m in s.siblings(a2)] == [a1.id, a2.id]
    assert (a1.version, a2.version) == (1, 2)
    s.select_version(a1.id)
    assert [m.text for m in s.branch(conv.id)] == ["first question", "answer one"]

    q2 = s.add_message(conv.id, "user", "follow-up", a1.id)
    s.add_message(conv.id, "assistant", "follow-up answer", q2.id)
    q1b = s.add_message(conv.id, "user", "edited question", None)  # edit of the first question
    s.add_message(conv.id, "assistant", "answer to edit", q1b.id)
    assert [m.text for m in s.branch(conv.id)] == ["edited question", "answer to edit"]
    assert [m.id for m in s.siblings(q1b)] == [q1.id, q1b.id]
    # back to the first version of the question: its most recent branch comes back whole
    s.select_version(q1.id)
    assert [m.text for m in s.branch(conv.id)] == ["first question", "answer one", "follow-up", "follow-up answer"]
    s.close()


def test_soft_delete_undo_and_purge(db_path: Path) -> None:
    s = ChatStore(db_path)
    keep = s.create_conversation("keep")
    gone = s.create_conversation("gone")
    s.add_message(gone.id, "user", "bye", None)
    s.delete_conversation(gone.id)
    assert [c.title for c in s.conversations()] == ["keep"]
    s.undelete_conversation(gone.id)
    assert {c.title for c in s.conversations()} == {"keep", "gone"}
    s.delete_conversation(gone.id)
    s.close()
    s = ChatStore(db_path)  # a delete is final once the app restarts
    assert [c.id for c in s.conversations()] == [keep.id]
    assert s.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    s.close()


def test_search_titles_and_text_and_last_opened(db_path: Path) -> None:
    s = ChatStore(db_path)
    a = s.create_conversation("Python sorting")
    b = s.create_conversation("Groceries")
    s.add_message(b.id, "user", "Need 100% oat milk_and bread", None)
    assert [c.id for c in s.conversations("sorting")] == [a.id]
    assert [c.id for c in s.conversations("oat milk")] == [b.id]
    assert [c.id for c in s.conversations("100%")] == [b.id]  # LIKE wildcards are literal
    assert s.conversations("t_m") == []  # would match "oat milk" if _ were a wildcard
    s.mark_opened(a.id)
    assert s.last_opened().id == a.id
    s.close()


def test_export_markdown(db_path: Path) -> None:
    s = ChatStore(db_path)
    conv = s.create_conversation("Export me", system_prompt="Be brief.")
    q = s.add_message(conv.id, "user", "What is 2+2?", None)
    a = s.add_message(conv.id, "assistant", "", q.id, finish=None)
    s.finish_message(a.id, text="**4**", provenance=[[5, "target"]], finish="cancelled",
                     stats={"tokens": 2, "tokens_per_s": 20.0, "speedup": 1.5})
    md = s.export_markdown(conv.id)
    assert md.startswith("# Export me\n")
    assert "> Be brief." in md
    assert "## You\n\nWhat is 2+2?" in md
    assert "## Assistant\n\n**4**" in md
    assert "stopped before the end" in md and "1.50x plain" in md
    s.close()


def test_provenance_runs_and_titles() -> None:
    runs: list = []
    for text, source in (("ab", "target"), ("cd", "target"), ("e", "draft"), ("", "ngram"), ("fg", "ngram")):
        add_run(runs, text, source)
    assert runs == [[4, "target"], [1, "draft"], [2, "ngram"]]
    assert char_sources(runs, 9) == ["target"] * 4 + ["draft"] + ["ngram"] * 2 + ["target"] * 2
    assert title_from("\n\n  How do I   sort a list?\nMore") == "How do I sort a list?"
    long = title_from("word " * 40)
    assert long.endswith("…") and len(long) <= 49


def test_writes_are_quick_enough_for_the_gui_thread(db_path: Path) -> None:
    """A streaming save runs on the GUI thread every ~200 ms: it must take milliseconds."""
    s = ChatStore(db_path)
    conv = s.create_conversation()
    reply = s.add_message(conv.id, "assistant", "", None, finish=None)
    text = "x" * 20000
    start = time.perf_counter()
    for _ in range(50):
        s.save_partial(reply.id, text, [[len(text), "target"]], {"steps_detail": [[1, 0, 0, 0.02, "plain"]] * 500})
    per_save = (time.perf_counter() - start) / 50
    assert per_save < 0.02, f"{per_save * 1000:.1f} ms per save"
    s.close()
