"""Conversations and replies: the glue between the store, the engine and the views.

One reply streams at a time (one engine).  While it streams, its text and
provenance are committed to the store at most every SAVE_INTERVAL_MS, so killing
the app loses at most that much; the store marks such a reply interrupted when it
opens again.  Stop keeps the partial reply at once (the engine finishes its current
step in the background; its late events are ignored, except the final statistics).
An engine crash keeps the partial reply too, marked interrupted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.engine_client import EngineClient
from app.engine_controller import EngineController
from app.settings_store import SettingsStore
from app.store import ChatStore, Message, add_run, title_from

SAVE_INTERVAL_MS = 200


@dataclass
class ActiveReply:
    req_id: str
    msg_id: int
    conv_id: int
    mode: str
    parts: list[str] = field(default_factory=list)
    runs: list[list[Any]] = field(default_factory=list)
    steps: list[list[Any]] = field(default_factory=list)  # [emitted, acc draft, acc ngram, seconds, mode]
    snapshot: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    progress: tuple[int, int] | None = None  # prompt tokens read, of total, until the first token
    started: float = field(default_factory=time.monotonic)
    last_save: float = 0.0
    dirty: bool = False

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def stats(self) -> dict[str, Any]:
        out = dict(self.snapshot)
        out["steps_detail"] = self.steps
        out["mode_requested"] = self.mode
        if self.notices:
            out["notices"] = list(self.notices)
        return out


def compact_step(step: dict[str, Any]) -> list[Any]:
    acc = step.get("accepted") or {}
    seconds = float(step.get("t_draft", 0)) + float(step.get("t_verify", 0)) + float(step.get("t_overhead", 0))
    return [int(step.get("emitted", 0)), int(acc.get("draft", 0)), int(acc.get("ngram", 0)), seconds,
            str(step.get("mode", ""))]


class ChatController(QObject):
    conversations_changed = Signal()
    conversation_opened = Signal(object)  # conversation id or None (a new, unsaved chat)
    branch_changed = Signal()  # the messages on screen changed shape
    reply_started = Signal(int)  # message id
    reply_updated = Signal(int)  # message id (text grew)
    reply_step = Signal(int, dict, dict)  # message id, step, reply snapshot
    reply_progress = Signal(int, int, int)  # message id, prompt tokens read, of how many
    reply_finished = Signal(int)  # message id
    busy_changed = Signal(bool)
    notice = Signal(str)
    error = Signal(str)

    def __init__(
        self,
        store: ChatStore,
        engine: EngineController,
        settings: SettingsStore,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.engine = engine
        self.client: EngineClient = engine.client
        self.settings = settings
        self.conv_id: int | None = None
        self.draft_system_prompt = ""  # for a new chat not saved yet
        self.active: ActiveReply | None = None
        self._stopped: dict[str, int] = {}  # cancelled request id -> its message id
        self._deleted: list[int] = []  # undo stack of soft-deleted conversations
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.timeout.connect(self._save_partial)
        self.client.text.connect(self._on_text)
        self.client.step.connect(self._on_step)
        self.client.progress.connect(self._on_progress)
        self.client.notice.connect(self._on_notice)
        self.client.done.connect(self._on_done)
        self.client.error.connect(self._on_error)
        self.client.crashed.connect(self._on_crashed)

    # ---------------------------------------------------------------- queries

    @property
    def busy(self) -> bool:
        return self.active is not None

    def can_send(self) -> bool:
        return not self.busy and self.engine.ready

    def branch(self) -> list[Message]:
        return self.store.branch(self.conv_id) if self.conv_id is not None else []

    def active_message_id(self) -> int | None:
        return self.active.msg_id if self.active else None

    def live_text(self, msg_id: int) -> tuple[str, list[list[Any]]] | None:
        """The streaming text of `msg_id` (fresher than the store between saves)."""
        if self.active is not None and self.active.msg_id == msg_id:
            return self.active.text, self.active.runs
        return None

    def live_stats(self) -> dict[str, Any] | None:
        return self.active.stats() if self.active is not None else None

    def system_prompt(self) -> str:
        if self.conv_id is None:
            return self.draft_system_prompt
        conv = self.store.conversation(self.conv_id)
        return conv.system_prompt if conv else ""

    # ---------------------------------------------------------------- conversations

    def new_conversation(self) -> None:
        """An empty chat; it is saved when the first message is sent."""
        self.conv_id = None
        self.draft_system_prompt = ""
        self.conversation_opened.emit(None)

    def open_conversation(self, conv_id: int) -> None:
        if self.store.conversation(conv_id) is None:
            return
        self.conv_id = conv_id
        self.store.mark_opened(conv_id)
        self.conversation_opened.emit(conv_id)

    def reopen_last(self) -> None:
        last = self.store.last_opened()
        if last is not None:
            self.open_conversation(last.id)
        else:
            self.new_conversation()

    def rename(self, conv_id: int, title: str) -> None:
        self.store.rename(conv_id, title)
        self.conversations_changed.emit()

    def set_system_prompt(self, text: str) -> None:
        if self.conv_id is None:
            self.draft_system_prompt = text
        else:
            self.store.set_system_prompt(self.conv_id, text)
            self.conversations_changed.emit()

    def delete(self, conv_id: int, then_open: int | None = None) -> None:
        """Soft-delete; if it was on screen, show `then_open` (else the most recently
        opened one left), and an empty new chat only when none is left."""
        if self.active is not None and self.active.conv_id == conv_id:
            self.stop()
        self.store.delete_conversation(conv_id)
        self.client.forget_warm()  # its cache may be the one saved for a fast restart
        self._deleted.append(conv_id)
        if conv_id == self.conv_id:
            self.conv_id = None
            nxt = then_open if then_open is not None and self.store.conversation(then_open) is not None else None
            if nxt is None:
                last = self.store.last_opened() or next(iter(self.store.conversations()), None)
                nxt = last.id if last is not None else None
            self.conversations_changed.emit()
            if nxt is not None:
                self.open_conversation(nxt)
            else:
                self.new_conversation()
            return
        self.conversations_changed.emit()

    def can_undo_delete(self) -> bool:
        return bool(self._deleted)

    def undo_delete(self) -> int | None:
        if not self._deleted:
            return None
        conv_id = self._deleted.pop()
        self.store.undelete_conversation(conv_id)
        self.conversations_changed.emit()
        self.open_conversation(conv_id)
        return conv_id

    def export_markdown(self) -> str | None:
        return self.store.export_markdown(self.conv_id) if self.conv_id is not None else None

    # ---------------------------------------------------------------- sending

    def send(self, text: str) -> bool:
        """A new question at the end of the shown branch."""
        text = text.strip("\n")
        if not text.strip() or not self.can_send():
            return False
        if self.conv_id is None:
            conv = self.store.create_conversation(title_from(text), self.draft_system_prompt)
            self.conv_id = conv.id
            self.draft_system_prompt = ""
            self.conversation_opened.emit(conv.id)
        branch = self.branch()
        parent = branch[-1].id if branch else None
        user = self.store.add_message(self.conv_id, "user", text, parent)
        self._start_reply(user)
        return True

    def regenerate(self, msg_id: int | None = None) -> bool:
        """Another version of an answer (default: the last one on screen)."""
        if not self.can_send():
            return False
        branch = self.branch()
        target = next((m for m in reversed(branch) if m.role == "assistant" and (msg_id is None or m.id == msg_id)),
                      None)
        if target is None or target.parent_id is None:
            return False
        user = self.store.message(target.parent_id)
        if user is None:
            return False
        self._start_reply(user)
        return True

    def edit(self, msg_id: int, new_text: str) -> bool:
        """Ask an edited question: a new version of the user message, a new branch."""
        new_text = new_text.strip("\n")
        original = self.store.message(msg_id)
        if original is None or original.role != "user" or not new_text.strip() or not self.can_send():
            return False
        user = self.store.add_message(original.conversation_id, "user", new_text, original.parent_id)
        self._start_reply(user)
        return True

    def switch_version(self, msg_id: int, delta: int) -> None:
        msg = self.store.message(msg_id)
        if msg is None or self.busy:
            return
        versions = self.store.siblings(msg)
        index = next(i for i, m in enumerate(versions) if m.id == msg.id)
        new_index = max(0, min(len(versions) - 1, index + delta))
        if new_index != index:
            self.store.select_version(versions[new_index].id)
            self.branch_changed.emit()

    def stop(self) -> None:
        """End the reply now, keeping what arrived."""
        active = self.active
        if active is None:
            return
        self.client.cancel(active.req_id)
        self._stopped[active.req_id] = active.msg_id
        self._finish(active, "cancelled")

    # ---------------------------------------------------------------- the reply

    def _messages_for(self, upto: Message) -> list[dict[str, str]]:
        path: list[Message] = []
        node: Message | None = upto
        while node is not None:
            path.append(node)
            node = self.store.message(node.parent_id) if node.parent_id is not None else None
        messages = [{"role": m.role, "content": m.text} for m in reversed(path) if m.text.strip()]
        system = self.system_prompt().strip()
        if system:
            messages.insert(0, {"role": "system", "content": system})
        return messages

    def _start_reply(self, user: Message) -> None:
        gen = self.settings.generation()
        mode = gen.spec.mode
        reply = self.store.add_message(
            user.conversation_id, "assistant", "", user.id, finish=None, model=self.engine.model_tag(mode)
        )
        req_id = self.client.generate(self._messages_for(user), gen)
        self.active = ActiveReply(req_id=req_id, msg_id=reply.id, conv_id=user.conversation_id, mode=mode)
        self.conversations_changed.emit()
        self.branch_changed.emit()
        self.busy_changed.emit(True)
        self.reply_started.emit(reply.id)

    def _mine(self, req_id: str) -> ActiveReply | None:
        return self.active if self.active is not None and self.active.req_id == req_id else None

    def _on_text(self, req_id: str, pieces: list) -> None:
        active = self._mine(req_id)
        if active is None:
            return
        for text, source in pieces:
            active.parts.append(text)
            add_run(active.runs, text, source)
        active.dirty = True
        self._schedule_save(active)
        self.reply_updated.emit(active.msg_id)

    def _on_progress(self, req_id: str, stage: str, done: int, total: int) -> None:
        active = self._mine(req_id)
        if active is None or stage != "prompt":
            return
        active.progress = (done, total)
        self.reply_progress.emit(active.msg_id, done, total)

    def _on_step(self, req_id: str, step: dict, snapshot: dict) -> None:
        active = self._mine(req_id)
        if active is None:
            return
        active.progress = None
        active.steps.append(compact_step(step))
        active.snapshot = snapshot
        self.reply_step.emit(active.msg_id, step, snapshot)

    def _on_notice(self, req_id: str, message: str) -> None:
        active = self._mine(req_id)
        if active is not None:
            active.notices.append(message)
        self.notice.emit(message)

    def _on_done(self, req_id: str, event: dict) -> None:
        active = self._mine(req_id)
        if active is not None:
            active.snapshot = event.get("stats") or active.snapshot
            self._finish(active, str(event.get("reason") or "stop"))
            return
        msg_id = self._stopped.pop(req_id, None)
        if msg_id is not None:
            # a stopped reply: keep its text as it was on screen, take the final counts
            msg = self.store.message(msg_id)
            if msg is not None and event.get("stats"):
                stats = dict(msg.stats or {})
                stats.update(event["stats"])
                self.store.finish_message(msg_id, text=msg.text, provenance=msg.provenance, stats=stats,
                                          finish=msg.finish or "cancelled")
                self.reply_finished.emit(msg_id)

    def _on_error(self, req_id: str, message: str, _kind: str) -> None:
        self._stopped.pop(req_id, None)
        active = self._mine(req_id)
        if active is None:
            return
        self._finish(active, "error", error=message)
        self.error.emit(message)

    def _on_crashed(self, _what: str, _tail: str) -> None:
        self._stopped.clear()
        if self.active is not None:
            self._finish(self.active, "crash", interrupted=True, error="the engine process stopped")

    def _schedule_save(self, active: ActiveReply) -> None:
        elapsed_ms = (time.monotonic() - active.last_save) * 1000
        if elapsed_ms >= SAVE_INTERVAL_MS:
            self._save_partial()
        elif not self._save_timer.isActive():
            self._save_timer.start(max(1, int(SAVE_INTERVAL_MS - elapsed_ms)))

    def _save_partial(self) -> None:
        active = self.active
        if active is None or not active.dirty:
            return
        self.store.save_partial(active.msg_id, active.text, active.runs, active.stats())
        active.last_save = time.monotonic()
        active.dirty = False

    def _finish(self, active: ActiveReply, finish: str, *, interrupted: bool = False, error: str | None = None) -> None:
        self._save_timer.stop()
        self.active = None
        self.store.finish_message(
            active.msg_id,
            text=active.text,
            provenance=active.runs,
            stats=active.stats(),
            finish=finish,
            interrupted=interrupted,
            error=error,
        )
        self.busy_changed.emit(False)
        self.reply_finished.emit(active.msg_id)
        self.conversations_changed.emit()
