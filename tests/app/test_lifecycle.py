"""The window across restarts and engine crashes: history and settings survive a new
window on the same data, a killed engine process leaves the window, the conversation
and the partial reply intact, and Restart brings answers back."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.store import ChatStore
from tests.app.conftest import configure
from tests.app.helpers import send_and_wait, type_and_send

pytestmark = pytest.mark.gui

LONG_PROMPT = "Count to one hundred"


def test_history_and_settings_survive_an_app_restart(qtbot, tiny_env, open_window, data_dir) -> None:
    configure(mode="off", max_tokens=6)
    parts = open_window()
    window = parts.window
    screen = window.screen().availableGeometry()
    if screen.width() < 1200 or screen.height() < 900:  # a QApplication made elsewhere on an 800x600 screen
        pytest.skip(f"the offscreen screen is {screen.width()}x{screen.height()}; tests/app/offscreen.json not used")
    reply = send_and_wait(qtbot, window, "remember me")
    conv_id = window.chat.conv_id
    # settings through the UI: speculation on in n-gram mode, overlay off, max tokens and theme in the dialog
    window.set_spec_mode("ngram")
    window.act_overlay.trigger()
    dialog = window.open_settings()
    dialog.max_tokens.setValue(33)
    dialog.temperature.setValue(0.5)
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    dialog.accept()
    assert window.theme.colors.name == "dark"
    window.dock.hide()
    qtbot.waitUntil(lambda: window.minimumWidth() < 1111)  # the layout has let go of the dock's width
    window.resize(1111, 777)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == (1111, 777))
    size = (1111, 777)
    window.close()
    parts.store.close()

    window2 = open_window().window
    assert window2.chat.conv_id == conv_id  # the last conversation reopens
    texts = [m.text for m in window2.chat.branch()]
    assert texts == ["remember me", reply.text]
    assert window2.chat_view.message_widget(reply.id).text == reply.text
    assert window2.sidebar.ids() == [conv_id]
    gen = window2.settings.generation()
    assert gen.max_tokens == 33 and gen.temperature == 0.5 and gen.spec.mode == "ngram"
    assert window2.status.mode.text() == "Speculation: ngram" and window2.act_spec.isChecked()
    assert not window2.act_overlay.isChecked() and not window2.chat_view.overlay
    assert window2.theme.colors.name == "dark"
    assert not window2.dock.isVisible()
    assert (window2.width(), window2.height()) == size
    # and the conversation continues where it was
    more = send_and_wait(qtbot, window2, "and more")
    assert more.parent_id is not None and window2.store.message(more.parent_id).parent_id == reply.id


def test_reply_cut_off_by_an_app_kill_reopens_interrupted(qtbot, tiny_env, open_window, data_dir) -> None:
    # what a killed app leaves behind: a reply still marked streaming
    store = ChatStore(data_dir / "chats.sqlite3")
    conv = store.create_conversation("cut off")
    q = store.add_message(conv.id, "user", "tell me", None)
    a = store.add_message(conv.id, "assistant", "", q.id, finish=None)
    store.save_partial(a.id, "half an ans", [[11, "draft"]])
    store.mark_opened(conv.id)
    store.close()
    window = open_window(boot=False).window
    assert window.store.recovered == [a.id]
    widget = window.chat_view.message_widget(a.id)
    assert widget.text == "half an ans"
    assert widget.state_chip.text() == "interrupted" and widget.state_chip.isVisibleTo(window)


def test_engine_crash_mid_reply_keeps_window_and_text(qtbot, tiny_env, open_window) -> None:
    configure(mode="off", max_tokens=3000)
    window = open_window().window
    first_pid = window.client.pid
    type_and_send(qtbot, window, LONG_PROMPT)
    # the reply is long (hundreds of steps) and the engine blocks once its output pipe
    # is full, so killing it as soon as text shows is always mid-reply
    qtbot.waitUntil(lambda: window.chat.active is not None and bool(window.chat.active.text), timeout=60000)
    reply_id = window.chat.active.msg_id
    os.kill(first_pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: window.engine.state == "crashed", timeout=10000)

    assert window.isVisible()
    assert not window.chat.busy
    reply = window.store.message(reply_id)
    assert reply.interrupted and reply.finish == "crash"
    assert reply.text and reply.stats["tokens"] < 3000
    widget = window.chat_view.message_widget(reply_id)
    assert widget is not None and widget.text == reply.text
    assert widget.state_chip.text() == "interrupted"
    assert window.banner.isVisibleTo(window) and window.banner.kind == "error"
    assert "SIGKILL" in window.banner.label.text()
    assert "Restart engine" in window.banner.buttons
    assert not window.composer.button.isEnabled()  # nothing to send to
    assert "Restart" in window.composer.hint.text()

    window.banner.buttons["Restart engine"].click()
    qtbot.waitUntil(lambda: window.engine.ready, timeout=60000)
    assert window.client.pid != first_pid
    configure(mode="off", max_tokens=8)
    window.settings.qs.sync()
    after = send_and_wait(qtbot, window, "still there?")
    assert after.finish in ("stop", "length") and after.text and not after.interrupted
    # the conversation holds both: the interrupted reply and the new exchange
    roles = [(m.role, m.interrupted) for m in window.chat.branch()]
    assert roles == [("user", False), ("assistant", True), ("user", False), ("assistant", False)]


def test_engine_crash_while_idle_then_restart(qtbot, tiny_env, open_window) -> None:
    configure(mode="off", max_tokens=6)
    window = open_window().window
    reply = send_and_wait(qtbot, window, "hello")
    os.kill(window.client.pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: window.engine.state == "crashed", timeout=10000)
    assert not window.store.message(reply.id).interrupted  # a finished reply stays finished
    window.act_restart.trigger()
    qtbot.waitUntil(lambda: window.engine.ready, timeout=60000)
    assert send_and_wait(qtbot, window, "again").text


def test_streaming_reply_is_saved_while_it_grows(qtbot, tiny_env, open_window, data_dir) -> None:
    configure(mode="off", max_tokens=3000)
    window = open_window().window
    type_and_send(qtbot, window, LONG_PROMPT)
    reply_id = window.chat.active.msg_id
    reader = sqlite3.connect(data_dir / "chats.sqlite3")  # another connection, as after a crash

    def saved() -> str:
        return reader.execute("SELECT text FROM messages WHERE id=?", (reply_id,)).fetchone()[0]

    qtbot.waitUntil(lambda: window.chat.busy and len(saved()) > 0, timeout=30000)
    assert window.chat.busy  # saved before the reply finished
    assert window.chat.active.text.startswith(saved())
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=60000)
    assert saved() == window.store.message(reply_id).text
    reader.close()


def test_killing_the_whole_app_mid_reply_keeps_the_partial_reply(tiny_env, data_dir, tmp_path) -> None:
    """SIGKILL of the GUI process while a reply streams: the database opens, the reply
    is there (minus at most the last save interval) and marked interrupted, and the
    orphaned engine process exits by itself."""
    env = {**os.environ, "CHILD_QSETTINGS": str(tmp_path / "child-settings"), "QT_QPA_PLATFORM": "offscreen"}
    child = subprocess.Popen([sys.executable, str(Path(__file__).with_name("app_child.py")), LONG_PROMPT],
                             stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    engine_pid = msg_id = None
    shown = 0
    deadline = time.monotonic() + 120
    for line in child.stdout:
        kind, _, value = line.strip().partition(" ")
        if kind == "ENGINE":
            engine_pid = int(value)
        elif kind == "MSG":
            msg_id = int(value)
        elif kind == "LEN":
            shown = int(value)
            if shown > 300:
                break
        assert time.monotonic() < deadline, "the child app did not stream in time"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert engine_pid and msg_id

    store = ChatStore(data_dir / "chats.sqlite3")
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    reply = store.message(msg_id)
    assert reply.interrupted and reply.finish == "interrupted"
    assert reply.text and len(reply.text) <= shown + 2000
    question = store.message(reply.parent_id)
    assert question.text == LONG_PROMPT
    store.close()
    # the engine notices its parent is gone (stdin closes) and exits
    for _ in range(100):
        try:
            os.kill(engine_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(engine_pid, signal.SIGKILL)
        pytest.fail("the engine process outlived the killed app by more than 10 s")
