"""Shared steps of the crash-isolation tests (tests/app/test_reliability_*.py): an earlier
committed conversation, a recorder of what the window asked the engine, the checks after
an engine crash, and "Restart, ask again, compare with a brand-new engine process"."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from app.store import ChatStore
from tests.app.helpers import send_and_wait, set_generation
from tests.helpers.engine_process import fresh_reply

EARLIER = [("user", "hello"), ("assistant", "Hello! What can I do for you today?")]
FOLLOW_UP = "And then?"


def seed_conversation(data_dir: Path) -> int:
    """A committed exchange from an earlier session: it must survive every crash."""
    store = ChatStore(data_dir / "chats.sqlite3")
    conv = store.create_conversation("before the crash")
    parent = None
    for role, text in EARLIER:
        parent = store.add_message(conv.id, role, text, parent).id
    store.mark_opened(conv.id)
    store.close()
    return conv.id


class Recorder:
    """What the window asked the engine (messages, settings) and what it answered (done events)."""

    def __init__(self, window: Any) -> None:
        self.requests: dict[str, tuple[list[dict[str, str]], Any]] = {}
        self.done: dict[str, dict[str, Any]] = {}
        client = window.client
        original = client.generate

        def generate(messages: list[dict[str, str]], settings: Any) -> str:
            req_id = original(messages, settings)
            self.requests[req_id] = (copy.deepcopy(messages), copy.deepcopy(settings))
            return req_id

        client.generate = generate  # the controller calls client.generate(...): the instance attribute wins
        client.done.connect(lambda req_id, event: self.done.__setitem__(req_id, event))

    def last(self) -> str:
        return list(self.requests)[-1]


def assert_survived(window: Any, conv_id: int, reply_id: int, question: str) -> Any:
    """After the kill: the window is up and idle, history intact, the partial reply kept."""
    assert window.isVisible() and not window.chat.busy
    branch = window.store.branch(conv_id)
    assert [(m.role, m.text) for m in branch[:2]] == EARLIER  # committed earlier: untouched
    assert all(not m.interrupted and m.finish == "stop" for m in branch[:2])
    assert window.store.message(branch[-1].parent_id).text == question  # committed when sent
    reply = window.store.message(reply_id)
    assert branch[-1].id == reply_id and reply.interrupted and reply.finish == "crash"
    widget = window.chat_view.message_widget(reply_id)
    assert widget is not None and widget.text == reply.text  # on screen exactly what is saved
    assert widget.state_chip.text() == "interrupted"
    assert window.banner.isVisibleTo(window) and window.banner.kind == "error"
    assert "SIGKILL" in window.banner.label.text() and "Restart engine" in window.banner.buttons
    assert not window.composer.button.isEnabled() and "Restart" in window.composer.hint.text()
    # the window still works: another conversation opens and this one comes back
    window.new_chat()
    window.chat.open_conversation(conv_id)
    assert window.chat_view.message_widget(reply_id).text == reply.text
    return reply


def restart_and_compare(qtbot, window: Any, recorder: Recorder, monkeypatch: pytest.MonkeyPatch,
                        crashed_pid: int | None, follow_up: str = FOLLOW_UP, max_tokens: int = 40,
                        timeout_s: float = 60) -> Any:
    """Restart through the banner, ask once more, and compare with a fresh engine process:
    greedy output must be token for token the same.  Returns the new reply."""
    monkeypatch.delenv("TANDEM_FAULT", raising=False)  # the restarted process starts clean
    window.banner.buttons["Restart engine"].click()
    qtbot.waitUntil(lambda: window.engine.ready, timeout=int(timeout_s * 1000))
    assert window.client.pid != crashed_pid
    set_generation(window, mode="chain", max_tokens=max_tokens)
    after = send_and_wait(qtbot, window, follow_up, timeout_s=timeout_s)
    assert after.finish in ("stop", "length") and not after.interrupted
    req_id = recorder.last()
    messages, settings = recorder.requests[req_id]
    assert messages[-1] == {"role": "user", "content": follow_up}
    assert settings.temperature == 0.0  # greedy: the comparison below must be exact
    fresh = fresh_reply(window.engine.load_settings, messages, settings)
    assert recorder.done[req_id]["tokens"] == fresh["tokens"], "the reply after a restart differs from a fresh engine"
    assert after.text == fresh["text"]
    roles = [(m.role, m.interrupted) for m in window.chat.branch()]
    assert roles[-2:] == [("user", False), ("assistant", False)]
    return after
