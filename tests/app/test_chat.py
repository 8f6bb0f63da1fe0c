"""Chatting through the real widgets with a real engine process on tiny models:
streaming, speculation settings reflected in the statistics, stop, regenerate,
edit, conversations, system prompt, export, and inert rendering of hostile text."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl

from app.store import ChatStore
from app.theme import LIGHT
from tests.app.conftest import configure
from tests.app.helpers import send_and_wait, set_generation, type_and_send

pytestmark = pytest.mark.gui

REPETITIVE = "hello hello hello hello hello world hello"
LONG_PROMPT = "Count to one hundred"  # the tiny target writes ~500 tokens before its end token


def test_send_shows_the_reply_as_it_streams(qtbot, tiny_env, open_window) -> None:
    configure(mode="off", max_tokens=40)
    window = open_window().window
    seen: list[int] = []

    def on_update(msg_id: int) -> None:
        widget = window.chat_view.message_widget(msg_id)
        assert widget is not None  # the reply is on screen while it streams
        seen.append(len(widget.text))

    window.chat.reply_updated.connect(on_update)
    reply = send_and_wait(qtbot, window, "hello there")

    assert len(set(seen)) > 1, "the text should grow in several steps"
    assert seen == sorted(seen)
    assert reply.finish in ("length", "stop") and not reply.interrupted
    assert reply.text and len(reply.text) == seen[-1]
    widget = window.chat_view.message_widget(reply.id)
    widget.flush_render()
    assert widget.browser.toPlainText().strip()
    assert f"{reply.stats['tokens']} tokens" in widget.footer.text()
    # the conversation was created, titled and saved
    conv = window.store.conversation(window.chat.conv_id)
    assert conv.title == "hello there"
    assert [m.role for m in window.store.branch(conv.id)] == ["user", "assistant"]
    assert window.composer.text() == ""
    assert window.sidebar.list.count() == 1
    # the statistics panel shows this reply: plain decoding drafted nothing
    counters = window.stats.counters()
    assert counters["total"]["drafted"] == 0
    assert window.stats.tiles["tokens"].value.text() == str(reply.stats["tokens"])


def test_shift_enter_adds_a_line_and_enter_sends(qtbot, tiny_env, open_window) -> None:
    configure(mode="off", max_tokens=8)
    window = open_window().window
    edit = window.composer.edit
    edit.setPlainText("first line")
    edit.moveCursor(edit.textCursor().MoveOperation.End)
    qtbot.keyClick(edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(edit, "second line")
    assert edit.toPlainText() == "first line\nsecond line"
    assert not window.chat.busy
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    assert window.chat.busy
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=60000)
    assert window.chat.branch()[0].text == "first line\nsecond line"


def test_speculation_settings_change_the_next_replys_statistics(qtbot, tiny_env, open_window) -> None:
    configure(mode="off", max_tokens=40)
    window = open_window().window
    assert window.status.mode.text() == "Speculation: off"
    assert not window.act_spec.isChecked()

    plain = send_and_wait(qtbot, window, REPETITIVE)
    assert sum(plain.stats["drafted"].values()) == 0
    assert set(plain.stats["modes"]) == {"plain"}
    assert window.stats.counters()["total"]["drafted"] == 0
    assert not window.chat_view.message_widget(plain.id).prov_bar.isVisibleTo(window)  # nothing was guessed

    # Settings: speculation on, n-gram mode
    dialog = window.open_settings()
    assert not dialog.spec_enabled.isChecked()
    dialog.spec_enabled.setChecked(True)
    dialog.mode.setCurrentIndex(dialog.mode.findData("ngram"))
    dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()
    assert window.status.mode.text() == "Speculation: ngram"
    assert window.act_spec.isChecked()
    assert window.engine.state == "ready"  # a mode change needs no reload

    ngram = send_and_wait(qtbot, window, REPETITIVE)
    assert ngram.stats["drafted"].get("ngram", 0) > 0
    assert "draft" not in ngram.stats["drafted"]
    assert window.stats.counters()["ngram"]["drafted"] == ngram.stats["drafted"]["ngram"]

    # chain mode from the toolbar's mode menu: the draft (same weights) is always right
    window.set_spec_mode("chain")
    assert window.status.mode.text() == "Speculation: chain"
    chain = send_and_wait(qtbot, window, REPETITIVE)
    assert chain.stats["accepted"]["draft"] > 0
    assert chain.stats["tau"] > 1.0
    assert any(source == "draft" for _n, source in chain.provenance)
    assert window.stats.counters()["draft"]["accepted"] == chain.stats["accepted"]["draft"]
    # the overlay colours the draft model's tokens
    widget = window.chat_view.message_widget(chain.id)
    widget.flush_render()
    assert window.act_overlay.isChecked()
    assert window.theme.colors.prov_draft_bg in widget.rendered.html
    assert widget.prov_bar.isVisibleTo(window) and widget.prov_bar.counts["draft"] == chain.stats["provenance"]["draft"]
    window.toggle_overlay(False)
    assert window.theme.colors.prov_draft_bg not in widget.rendered.html
    # and the toolbar switch turns it all off again
    window.act_spec.trigger()
    assert window.status.mode.text() == "Speculation: off"
    off = send_and_wait(qtbot, window, "and again")
    assert sum(off.stats["drafted"].values()) == 0


def test_stop_keeps_the_partial_reply(qtbot, tiny_env, open_window) -> None:
    configure(mode="off", max_tokens=3000)
    window = open_window().window
    shown: dict[str, str] = {}
    window.chat.busy_changed.connect(lambda busy: busy or shown.setdefault("at_stop", window.chat_view.message_widget(
        window.chat.branch()[-1].id).text))
    type_and_send(qtbot, window, LONG_PROMPT)
    qtbot.waitUntil(lambda: window.chat.active is not None and bool(window.chat.active.text), timeout=60000)
    shown["req"] = window.chat.active.req_id
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Escape)  # Esc, as a user would
    assert not window.chat.busy  # stopped at once, not when the engine gets round to it

    reply = window.chat.branch()[-1]
    assert reply.finish == "cancelled" and not reply.interrupted
    assert reply.text == shown["at_stop"] and reply.text  # exactly what was on screen
    widget = window.chat_view.message_widget(reply.id)
    assert widget.state_chip.text() == "stopped"
    assert window.composer.button.text() == "Send"  # usable again at once
    # the engine really stopped early: its final counts arrive and are far below the limit
    qtbot.waitUntil(lambda: shown["req"] not in window.chat._stopped, timeout=30000)
    stats = window.store.message(reply.id).stats
    assert 0 < stats["tokens"] < 400

    # the same question answered in full starts with the kept text
    window.new_chat()
    full = send_and_wait(qtbot, window, LONG_PROMPT)
    assert full.text.startswith(reply.text) and len(full.text) > len(reply.text)


def test_regenerate_keeps_versions(qtbot, tiny_env, open_window) -> None:
    configure(mode="off", max_tokens=6)
    window = open_window().window
    first = send_and_wait(qtbot, window, "hello")
    set_generation(window, max_tokens=14)  # a longer second version, so the two differ
    widget = window.chat_view.message_widget(first.id)
    widget.regenerate_button.click()
    assert window.chat.busy
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=60000)

    branch = window.chat.branch()
    second = branch[-1]
    assert second.id != first.id and second.parent_id == first.parent_id
    assert len(second.text) > len(first.text)
    assert [m.text for m in window.store.siblings(second)] == [first.text, second.text]
    w2 = window.chat_view.message_widget(second.id)
    assert w2.version_label.text() == "2 / 2" and w2.version_label.isVisibleTo(window)
    w2.prev_button.click()
    assert [m.id for m in window.chat.branch()] == [first.parent_id, first.id]
    w1 = window.chat_view.message_widget(first.id)
    assert w1.version_label.text() == "1 / 2"
    assert w1.text == first.text
    w1.next_button.click()
    assert window.chat.branch()[-1].id == second.id


def test_edit_makes_a_branch(qtbot, tiny_env, open_window) -> None:
    configure(mode="off", max_tokens=8)
    window = open_window().window
    a = send_and_wait(qtbot, window, "first question")
    question_a = window.chat.branch()[0]
    widget = window.chat_view.message_widget(question_a.id)
    widget.edit_button.click()
    assert widget.editor.isVisibleTo(window)
    widget.editor.setPlainText("second question")
    widget.submit_edit_button.click()
    assert window.chat.busy
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=60000)

    question_b, b = window.chat.branch()
    assert question_b.text == "second question" and question_b.parent_id is None
    assert b.parent_id == question_b.id and b.id != a.id
    wq = window.chat_view.message_widget(question_b.id)
    assert wq.version_label.text() == "2 / 2"
    wq.prev_button.click()  # the old branch is kept whole
    assert [m.id for m in window.chat.branch()] == [question_a.id, a.id]


def test_conversations_rename_search_delete_undo(qtbot, tiny_env, open_window) -> None:
    configure(mode="off", max_tokens=4)
    window = open_window().window
    send_and_wait(qtbot, window, "alpha topic")
    first = window.chat.conv_id
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.chat.conv_id is None and window.chat_view.empty.isVisibleTo(window)
    send_and_wait(qtbot, window, "beta topic")
    second = window.chat.conv_id
    assert window.sidebar.ids() == [second, first]

    item = window.sidebar.list.item(1)
    item.setText("Renamed alpha")  # what finishing an inline edit does
    assert window.store.conversation(first).title == "Renamed alpha"

    window.sidebar.search.setText("beta")
    qtbot.waitUntil(lambda: window.sidebar.ids() == [second], timeout=3000)
    window.sidebar.search.clear()
    qtbot.waitUntil(lambda: len(window.sidebar.ids()) == 2, timeout=3000)

    window.sidebar.list.setCurrentRow(1)  # opens the renamed conversation
    assert window.chat.conv_id == first
    window.delete_conversation(first)
    assert window.sidebar.ids() == [second]
    assert window.chat.conv_id == second  # the remaining conversation, not an empty new chat
    assert "Undo" in window.banner.buttons
    window.banner.buttons["Undo"].click()
    assert set(window.sidebar.ids()) == {first, second}
    assert window.chat.conv_id == first


def test_system_prompt_and_export(qtbot, tiny_env, open_window, tmp_path: Path) -> None:
    configure(mode="off", max_tokens=6)
    window = open_window().window
    window.edit_system_prompt()
    window.text_dialog.edit.setPlainText("Answer in French.")
    window.text_dialog.accept()  # before the first message: kept for the new chat
    assert window.chat_view.system_button.text().endswith("✓")
    reply = send_and_wait(qtbot, window, "bonjour")
    conv = window.store.conversation(window.chat.conv_id)
    assert conv.system_prompt == "Answer in French."
    sent = window.chat._messages_for(window.store.message(reply.parent_id))
    assert sent[0] == {"role": "system", "content": "Answer in French."}

    path = window.export_conversation(str(tmp_path / "chat.md"))
    text = Path(path).read_text(encoding="utf-8")
    assert text.startswith("# bonjour")
    assert "> Answer in French." in text and "## You\n\nbonjour" in text
    assert reply.text.strip()[:5] in text


def test_hostile_output_is_inert(qtbot, tiny_env, open_window, data_dir: Path, monkeypatch) -> None:
    store = ChatStore(data_dir / "chats.sqlite3")
    conv = store.create_conversation("hostile")
    q = store.add_message(conv.id, "user", "<b>not bold</b>", None)
    text = ("<script>alert(1)</script><img src='file:///etc/hostname'> "
            "[site](https://example.org/x) [local](file:///etc/passwd) ![px](http://tracker.example/p.gif)")
    store.add_message(conv.id, "assistant", text, q.id, finish="stop")
    store.mark_opened(conv.id)
    store.close()
    opened: list[str] = []
    monkeypatch.setattr("app.views.main_window.QDesktopServices.openUrl",
                        lambda url: opened.append(url.toString()) or True)

    window = open_window(boot=False).window
    user_widget, reply_widget = (window.chat_view.message_widget(m.id) for m in window.chat.branch())
    assert "<b>not bold</b>" in user_widget.browser.toPlainText()
    doc_html = reply_widget.browser.toHtml()
    assert "<img" not in doc_html and "<script" not in doc_html
    assert "<script>alert(1)</script>" in reply_widget.browser.toPlainText()
    assert reply_widget.browser.loadResource(2, QUrl("file:///etc/hostname")) is None

    links = reply_widget.rendered.links
    monkeypatch.setattr(window, "confirm_link", lambda url: False)
    reply_widget.browser.anchorClicked.emit(QUrl(f"link:{links.index('https://example.org/x')}"))
    assert opened == []  # declined: nothing opens
    monkeypatch.setattr(window, "confirm_link", lambda url: True)
    reply_widget.browser.anchorClicked.emit(QUrl(f"link:{links.index('https://example.org/x')}"))
    assert opened == ["https://example.org/x"]
    assert window.open_link("file:///etc/passwd") is False and len(opened) == 1
    assert LIGHT.prov_draft_bg not in reply_widget.rendered.html  # no provenance recorded: no colours


def test_copy_button_copies_the_code_block(qtbot, tiny_env, open_window, data_dir: Path) -> None:
    from PySide6.QtGui import QGuiApplication

    store = ChatStore(data_dir / "chats.sqlite3")
    conv = store.create_conversation("code")
    q = store.add_message(conv.id, "user", "code please", None)
    text = "Two blocks:\n\n```python\nprint('one')\n```\n\nand\n\n```bash\necho two\n```\n"
    store.add_message(conv.id, "assistant", text, q.id, finish="stop")
    store.mark_opened(conv.id)
    store.close()
    window = open_window(boot=False).window
    widget = window.chat_view.message_widget(window.chat.branch()[-1].id)
    assert 'href="copy:1"' in widget.rendered.html
    widget.browser.anchorClicked.emit(QUrl("copy:1"))
    assert QGuiApplication.clipboard().text() == "echo two\n"
    assert "Copied the code block" in window.statusBar().currentMessage()
    widget.copy_button.click()  # the whole message, as Markdown
    assert QGuiApplication.clipboard().text() == text


def test_oversized_message_gives_a_clear_error_and_the_app_goes_on(qtbot, tiny_env, open_window) -> None:
    configure(mode="off", max_tokens=6)
    window = open_window().window
    huge = ("Ünïcödé 日本語 שלום 😀 " * 5000)[:100_000]
    reply = send_and_wait(qtbot, window, huge)
    assert reply.finish == "error" and "context" in reply.error
    assert window.banner.kind == "error" and "context" in window.banner.label.text()
    assert window.chat_view.message_widget(reply.id).state_chip.text() == "error"
    assert window.store.message(reply.parent_id).text == huge  # the question is kept as typed
    window.new_chat()
    assert send_and_wait(qtbot, window, "short one").finish in ("stop", "length")
