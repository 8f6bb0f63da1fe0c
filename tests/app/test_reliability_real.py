"""Crash isolation and odd text on the real default pair (Qwen2.5-Coder 1.5B + 0.5B):
the engine process SIGKILLed inside the target's verification pass (llama_decode) and
inside model loading, Restart, then a question in emoji, CJK and right-to-left text whose
answer is token for token what a brand-new engine process gives (issue 6, items 1, 4)."""

from __future__ import annotations

import random

import pytest

from app.settings_store import ModelChoice, SettingsStore
from tests.app.conftest import configure
from tests.app.helpers import type_and_send
from tests.app.reliability_helpers import Recorder, assert_survived, restart_and_compare, seed_conversation
from tests.helpers.engine_process import fresh_reply

pytestmark = [pytest.mark.gui, pytest.mark.models, pytest.mark.slow]

QUESTION = "Write a Python function that reverses a string, with a docstring."
ODD = "Réponds en une phrase : que veut dire « 你好，世界 » 🌍👋🏽 et « שָׁלוֹם עוֹלָם » (مرحبا)?"
LOAD_S = 300  # the first load in a session measures this machine's decode costs


def test_real_pair_killed_inside_decode_and_loading_then_restart_answers_like_a_fresh_engine(
        qtbot, default_pair, open_window, wait_ready, data_dir, monkeypatch) -> None:
    prefs = SettingsStore()
    prefs.set_model_choice(ModelChoice(threads=1))  # 2-core machine: see tests/app/conftest.py
    prefs.sync()
    configure(mode="chain", max_tokens=48)
    conv_id = seed_conversation(data_dir)
    nth = random.Random("real-verify").randint(2, 6)
    # 30 ms into the nth verification pass: a 1.5B tree decode takes 100+ ms here, so the
    # SIGKILL lands inside llama_decode
    monkeypatch.setenv("TANDEM_FAULT", f"verify@{nth}:kill=0.03")
    parts = open_window(wait_ready=False)
    window = parts.window
    wait_ready(parts, timeout_s=LOAD_S)
    recorder = Recorder(window)
    pid = window.client.pid
    type_and_send(qtbot, window, QUESTION)
    reply_id = window.chat.active.msg_id
    qtbot.waitUntil(lambda: window.engine.state == "crashed", timeout=120000)
    assert f"[tandem-fault] verify#{nth} kill=0.03" in window.client.stderr_tail()
    reply = assert_survived(window, conv_id, reply_id, QUESTION)
    messages, settings = recorder.requests[recorder.last()]
    assert fresh_reply(window.engine.load_settings, messages, settings)["text"].startswith(reply.text)

    # killed again while loading the pair (0.3 s into the load request: mmap and weight
    # repacking take ~2 s here)
    monkeypatch.setenv("TANDEM_FAULT", "load:kill=0.3")
    window.banner.buttons["Restart engine"].click()
    qtbot.waitUntil(lambda: window.engine.state == "crashed", timeout=60000)
    assert window.engine.crashed_while == "loading"
    assert "while loading the models" in window.banner.label.text()
    assert window.store.message(reply_id).text == reply.text and window.isVisible()

    # Restart; the next question is in five scripts with emoji, answered exactly like a fresh engine
    after = restart_and_compare(qtbot, window, recorder, monkeypatch, pid, follow_up=ODD, max_tokens=24,
                                timeout_s=LOAD_S)
    question = window.store.message(after.parent_id)
    assert question.text == ODD
    assert window.chat_view.message_widget(question.id).text == ODD
    assert after.text.strip() and "\ufffd" not in after.text
