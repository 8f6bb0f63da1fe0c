"""Crash isolation through the window (issue 6, item 1): the engine process is SIGKILLed
while it loads the models, while it drafts, while the target verifies, and at random
moments of a streaming reply.  Each time the window stays up, no committed message is
lost, the partial reply is kept (marked interrupted) and is the start of the real
answer, Restart brings the engine back, and the next reply is token for token what a
brand-new engine process answers to the same conversation.

The precise phases use the fault hook of engine/faults.py (TANDEM_FAULT, read by the
engine process when it starts); the random kills come from outside with os.kill.
"""

from __future__ import annotations

import os
import random
import signal

import pytest

from tests.app.conftest import configure
from tests.app.helpers import type_and_send
from tests.app.reliability_helpers import EARLIER, Recorder, assert_survived, restart_and_compare, seed_conversation
from tests.helpers.engine_process import fresh_reply

pytestmark = pytest.mark.gui

QUESTION = "Count to one hundred"  # the tiny models answer with ~370 tokens in ~180 chain steps


@pytest.mark.parametrize("phase", ["draft", "verify"])
def test_engine_killed_while_drafting_or_verifying(qtbot, tiny_env, open_window, data_dir, monkeypatch,
                                                   phase: str) -> None:
    nth = random.Random(f"crash-{phase}").randint(3, 60)  # which step of the reply: reproducible, varied
    conv_id = seed_conversation(data_dir)
    configure(mode="chain", max_tokens=3000)
    monkeypatch.setenv("TANDEM_FAULT", f"{phase}@{nth}:kill")  # read by the engine process at its start
    window = open_window().window
    recorder = Recorder(window)
    pid = window.client.pid
    assert window.chat.conv_id == conv_id  # the earlier conversation reopened
    type_and_send(qtbot, window, QUESTION)
    reply_id = window.chat.active.msg_id
    qtbot.waitUntil(lambda: window.engine.state == "crashed", timeout=60000)

    assert f"[tandem-fault] {phase}#{nth} kill" in window.client.stderr_tail()  # killed in that phase
    reply = assert_survived(window, conv_id, reply_id, QUESTION)
    assert reply.text  # the steps before the kill streamed (nth >= 3)
    # the partial reply is the beginning of the real answer, not garbage
    crashed_messages, crashed_settings = recorder.requests[recorder.last()]
    assert fresh_reply(window.engine.load_settings, crashed_messages, crashed_settings)["text"].startswith(reply.text)
    restart_and_compare(qtbot, window, recorder, monkeypatch, pid)


def test_engine_killed_while_loading(qtbot, tiny_env, open_window, data_dir, monkeypatch) -> None:
    conv_id = seed_conversation(data_dir)
    configure(mode="chain", max_tokens=40)
    monkeypatch.setenv("TANDEM_FAULT", "load:kill")
    parts = open_window(wait_ready=False)
    window = parts.window
    qtbot.waitUntil(lambda: window.engine.state == "crashed", timeout=60000)
    assert window.engine.crashed_while == "loading"
    assert window.chat.conv_id == conv_id
    assert "[tandem-fault] load#1 kill" in window.client.stderr_tail()
    assert window.isVisible()
    assert "while loading the models" in window.banner.label.text() and "SIGKILL" in window.banner.label.text()
    assert [(m.role, m.text) for m in window.chat.branch()] == EARLIER  # readable without an engine
    assert not window.composer.button.isEnabled()
    recorder = Recorder(window)
    restart_and_compare(qtbot, window, recorder, monkeypatch, None)
    assert [(m.role, m.text) for m in window.chat.branch()][:2] == EARLIER


def test_engine_killed_at_random_moments_again_and_again(qtbot, tiny_env, open_window, data_dir, monkeypatch) -> None:
    """Three SIGKILLs from outside at random moments of streaming replies, each followed
    by Restart; then the next reply equals a fresh engine's."""
    rng = random.Random(int(os.environ.get("TANDEM_CRASH_SEED", "7")))
    conv_id = seed_conversation(data_dir)
    configure(mode="chain", max_tokens=3000)
    monkeypatch.setenv("TANDEM_FAULT", "verify:sleep=0.02")  # a real model's pace: ~4 s per tiny reply
    window = open_window().window
    recorder = Recorder(window)
    kept: list[tuple[int, str]] = []
    pid = None
    for round_no in range(3):
        pid = window.client.pid
        type_and_send(qtbot, window, QUESTION)
        reply_id = window.chat.active.msg_id
        qtbot.waitUntil(lambda: window.chat.active is not None and bool(window.chat.active.text), timeout=60000)
        qtbot.wait(int(rng.uniform(0, 1500)))
        os.kill(pid, signal.SIGKILL)
        qtbot.waitUntil(lambda: window.engine.state == "crashed", timeout=30000)
        assert window.isVisible() and not window.chat.busy
        reply = window.store.message(reply_id)
        assert reply.interrupted and reply.finish == "crash" and reply.text
        assert window.chat_view.message_widget(reply_id).text == reply.text
        kept.append((reply_id, reply.text))
        for msg_id, text in kept:  # earlier partial replies are untouched by later crashes
            assert window.store.message(msg_id).text == text
        assert [(m.role, m.text) for m in window.store.branch(conv_id)[:2]] == EARLIER
        if round_no < 2:
            window.banner.buttons["Restart engine"].click()
            qtbot.waitUntil(lambda: window.engine.ready, timeout=60000)
    # each question went under the last reply: the branch holds every exchange, in order
    branch = window.store.branch(conv_id)
    assert [m.id for m in branch if m.role == "assistant"][1:] == [msg_id for msg_id, _ in kept]
    restart_and_compare(qtbot, window, recorder, monkeypatch, pid)
