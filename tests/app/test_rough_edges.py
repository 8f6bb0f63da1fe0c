"""The rough edges a new user hit in the desktop app (issue 12, items 4-13), each
checked through the real widgets, offscreen, without an engine process: the chats
are written to the store before the window opens, as a previous session would have."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import QStandardPaths, QUrl
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from app.store import ChatStore
from app.views.main_window import depth_axis
from app.views.model_manager import ModelManager
from engine.models import catalog
from tests.app.helpers import DRAFT, OTHER, TARGET

pytestmark = pytest.mark.gui

LONG_TITLE = "Write a Python function is_prime(n) with a docs…"
LONG_LINE = "result = " + " + ".join(f"compute_value_number_{i}(argument)" for i in range(12))
CODE_REPLY = f"Here it is:\n\n```python\n{LONG_LINE}\nprint(result)\n```\n\nDone."


def seed(data_dir: Path, *titles: str, reply: str = "An answer.") -> list[int]:
    """Conversations with one question and answer each; the first one is reopened."""
    store = ChatStore(data_dir / "chats.sqlite3")
    ids = []
    for title in titles:
        conv = store.create_conversation(title)
        q = store.add_message(conv.id, "user", f"question of {title}", None)
        store.add_message(conv.id, "assistant", reply, q.id, finish="stop")
        ids.append(conv.id)
    store.mark_opened(ids[0])
    store.close()
    return ids


def settle(qtbot, ms: int = 50) -> None:
    QApplication.processEvents()
    qtbot.wait(ms)


def assistant_widget(window):
    msg = next(m for m in window.chat.branch() if m.role == "assistant")
    return window.chat_view.message_widget(msg.id)


# ---------------------------------------------------------------- 4: long code lines


def test_long_code_lines_wrap_inside_the_block_and_copy_takes_them_whole(qtbot, data_dir, open_window) -> None:
    seed(data_dir, "code", reply=CODE_REPLY)
    window = open_window(boot=False).window
    window.resize(1100, 800)
    settle(qtbot, 100)
    widget = assistant_widget(window)
    browser = widget.browser
    assert browser.fontMetrics().horizontalAdvance(LONG_LINE) > browser.viewport().width()  # the line is long
    # nothing runs past the message's right edge, where no scroll bar could reach it
    assert browser.document().size().width() <= browser.viewport().width() + 1
    assert LONG_LINE in browser.toPlainText().replace("\u2028", "\n").replace("\n", "")
    widget._on_anchor(QUrl("copy:0"))
    assert QGuiApplication.clipboard().text() == f"{LONG_LINE}\nprint(result)\n"


# ---------------------------------------------------------------- 5: rename


def test_renaming_in_the_sidebar_updates_the_header_at_once(qtbot, data_dir, open_window) -> None:
    first, _second = seed(data_dir, "alpha", "beta")
    window = open_window(boot=False).window
    assert window.chat.conv_id == first and window.chat_view.title.full_text() == "alpha"
    item = next(window.sidebar.list.item(i) for i in range(window.sidebar.list.count())
                if window.sidebar.list.item(i).data(256) == first)
    item.setText("Renamed alpha")  # what finishing the inline edit does
    assert window.store.conversation(first).title == "Renamed alpha"
    assert window.chat_view.title.full_text() == "Renamed alpha"
    assert window.chat_view.title.toolTip() == "Renamed alpha"


# ---------------------------------------------------------------- 6: welcome text


def test_welcome_text_is_whole_and_follows_the_overlay_and_speculation(qtbot, open_window) -> None:
    window = open_window(boot=False).window
    window.resize(1600, 1000)
    window.toggle_overlay(True)
    settle(qtbot, 100)
    text = window.chat_view.empty.text
    assert window.chat_view.empty.isVisibleTo(window)
    assert "Turn on" not in text.text() and "overlay is on" in text.text()
    # tall enough for its wrapped lines at the width it has (it was cut at top and bottom)
    assert text.height() >= text.heightForWidth(text.width())
    window.toggle_overlay(False)
    settle(qtbot)
    assert "Turn on the provenance overlay" in text.text()
    assert text.height() >= text.heightForWidth(text.width())
    window.toggle_speculation(False)
    assert "Speculation is off" in text.text()
    window.toggle_speculation(True)
    assert "Speculation is off" not in text.text()


# ---------------------------------------------------------------- 7: the window keeps its size


def test_window_and_sidebar_keep_their_width_when_toggling_overlay_and_search(qtbot, data_dir, open_window) -> None:
    seed(data_dir, LONG_TITLE, "beta topic")
    window = open_window(boot=False).window
    window.resize(1320, 860)
    settle(qtbot, 100)
    widths = {(window.width(), window.sidebar.width())}
    for _ in range(2):
        window.toggle_overlay(not window.act_overlay.isChecked())
        settle(qtbot)
        widths.add((window.width(), window.sidebar.width()))
        window.sidebar.search.setText("beta")
        qtbot.waitUntil(lambda: window.sidebar.list.count() == 1, timeout=3000)
        settle(qtbot)
        widths.add((window.width(), window.sidebar.width()))
        window.sidebar.search.clear()
        qtbot.waitUntil(lambda: window.sidebar.list.count() == 2, timeout=3000)
        settle(qtbot)
        widths.add((window.width(), window.sidebar.width()))
    assert widths == {(1320, widths.copy().pop()[1])}, f"(window, sidebar) widths seen: {sorted(widths)}"


# ---------------------------------------------------------------- 8: a small window


def test_small_window_keeps_every_control_whole(qtbot, data_dir, open_window) -> None:
    seed(data_dir, LONG_TITLE)
    window = open_window(boot=False).window
    window.toggle_overlay(True)
    window.resize(900, 650)
    settle(qtbot, 100)
    assert window.width() == 900
    right = window.mapToGlobal(window.rect().topRight()).x()
    for act in (window.act_new, window.act_spec, window.act_overlay, window.act_stats, window.act_settings,
                window.act_models, window.act_export):
        button = window.toolbar.widgetForAction(act)
        assert button is not None and button.isVisible(), f"{act.text()} is not on the toolbar"
        assert button.mapToGlobal(button.rect().topRight()).x() <= right, f"{act.text()} is off the window"
    assert window.toolbar_compact and window.act_export.iconText() == "Export"
    for chip in window.chat_view.legend.chips.values():
        assert chip.width() >= chip.sizeHint().width(), f"legend chip {chip.text()!r} is cut"
    title = window.chat_view.title
    assert title.full_text() == LONG_TITLE
    shown = title.text()
    assert shown == LONG_TITLE or shown.endswith("…")
    assert title.fontMetrics().horizontalAdvance(shown) <= title.contentsRect().width()
    edit = window.composer.edit
    assert edit.fontMetrics().horizontalAdvance(edit.placeholderText()) <= edit.viewport().width()
    window.resize(1600, 1000)
    settle(qtbot, 100)
    assert not window.toolbar_compact and window.act_export.iconText() == "Export to Markdown"
    assert "Shift+Enter" in edit.placeholderText()


# ---------------------------------------------------------------- 9: model manager


def test_model_manager_shows_sizes_pairing_and_base(qtbot, tmp_path, monkeypatch) -> None:
    """The real catalog, no model files: sizes come from the catalog (exact) or its
    parameter count (estimated); SmolLM2 cannot pair with the Qwen target."""
    monkeypatch.setenv("TANDEM_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("TANDEM_CATALOG", raising=False)
    target = catalog.default_pair().target
    manager = ModelManager(target=lambda: target)
    qtbot.addWidget(manager)
    rows = {manager.table.item(r, 0).data(256): r for r in range(manager.table.rowCount())}
    size = {model_id: manager.table.item(row, 2).text() for model_id, row in rows.items()}
    assert "unknown" not in size.values(), size
    assert size["qwen2.5-coder-1.5b-instruct-q4_k_m"] == "1.12 GB"
    assert size["qwen2.5-coder-7b-instruct-q4_k_m"].startswith("≈ ")
    assert "estimated" in manager.table.item(rows["qwen2.5-coder-7b-instruct-q4_k_m"], 2).toolTip()
    assert manager.pair_of("smollm2-135m-instruct-q4_1").startswith("✗ cannot pair")
    assert "tokenizer" in manager.pair_of("smollm2-135m-instruct-q4_1")
    assert manager.pair_of("qwen2.5-coder-0.5b-instruct-q4_k_m") == "✓ can pair"
    assert manager.pair_of(target) == "the target"
    base = next(m.id for m in catalog.models() if "(base)" in m.name)
    assert "not instruction-tuned" in manager.table.item(rows[base], 0).toolTip()
    assert "(base)" in manager.legend.text()
    assert manager.table.verticalHeader().defaultSectionSize() >= 28


def test_model_manager_checks_files_and_shows_progress_only_while_working(qtbot, tiny_env, tmp_path) -> None:
    manager = ModelManager(target=lambda: TARGET)
    qtbot.addWidget(manager)
    manager.show()
    assert not manager.progress.bar.isVisibleTo(manager)
    assert not manager.progress.cancel_button.isVisibleTo(manager)
    # OTHER's catalog tokenizer tag differs; the files' vocabularies are compared too
    qtbot.waitUntil(lambda: manager._compat_task is None and OTHER in manager.pair_problems, timeout=10000)
    assert manager.pair_of(OTHER).startswith("✗ cannot pair")
    assert manager.pair_problems[DRAFT] is None and manager.pair_of(DRAFT) == "✓ can pair"
    imported = tmp_path / "copy.gguf"
    imported.write_bytes((tiny_env[0] / f"{OTHER}.gguf").read_bytes())
    manager.import_file(str(imported))
    assert manager.progress.bar.isVisibleTo(manager) and manager.progress.cancel_button.isVisibleTo(manager)
    qtbot.waitUntil(lambda: manager.task is None, timeout=30000)
    assert "Imported" in manager.progress.label.text()
    assert not manager.progress.bar.isVisibleTo(manager)
    assert not manager.progress.cancel_button.isVisibleTo(manager)
    local = next(manager.table.item(r, 0).data(256) for r in range(manager.table.rowCount())
                 if str(manager.table.item(r, 0).data(256)).startswith("local:"))
    qtbot.waitUntil(lambda: local in manager.pair_problems, timeout=10000)
    assert "vocab sizes differ" in manager.pair_of(local)  # an imported file is judged by its vocabulary


# ---------------------------------------------------------------- 10: copy feedback


def test_copy_says_copied_where_it_was_clicked(qtbot, data_dir, open_window) -> None:
    seed(data_dir, "code", reply=CODE_REPLY)
    window = open_window(boot=False).window
    widget = assistant_widget(window)
    widget._copied_timer.setInterval(300)
    widget.copy_button.click()
    assert QGuiApplication.clipboard().text() == CODE_REPLY
    assert widget.copy_button.text() == "Copied"
    qtbot.waitUntil(lambda: widget.copy_button.text() == "", timeout=3000)
    assert "Copied" not in widget.browser.toPlainText()
    widget._on_anchor(QUrl("copy:0"))
    assert "Copied ✓" in widget.browser.toPlainText()
    qtbot.waitUntil(lambda: "Copied" not in widget.browser.toPlainText(), timeout=3000)
    assert "Copy" in widget.browser.toPlainText()


# ---------------------------------------------------------------- 11: export folder


def test_export_dialog_opens_in_documents_or_home(qtbot, data_dir, open_window, monkeypatch, tmp_path) -> None:
    seed(data_dir, "exported chat")
    started = tmp_path / "started-here"
    started.mkdir()
    monkeypatch.chdir(started)
    asked: list[str] = []
    monkeypatch.setattr("app.views.main_window.QFileDialog.getSaveFileName",
                        lambda _parent, _caption, start, _filter: (asked.append(start), ("", ""))[1])
    window = open_window(boot=False).window
    assert window.export_conversation() is None  # cancelled
    folder = os.path.dirname(asked[0])
    docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    home = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.HomeLocation)
    assert folder == (docs if os.path.isdir(docs) else home)
    assert folder != str(started) and os.path.basename(asked[0]) == "exported chat.md"
    out = tmp_path / "out"
    out.mkdir()
    assert window.export_conversation(str(out / "x.md"))
    window.export_conversation()
    assert os.path.dirname(asked[-1]) == str(out)  # then where the user last saved one


# ---------------------------------------------------------------- 12: delete


def test_deleting_the_open_conversation_shows_a_remaining_one(qtbot, data_dir, open_window) -> None:
    first, second = seed(data_dir, "alpha", "beta")
    window = open_window(boot=False).window
    assert window.chat.conv_id == first
    window.delete_conversation(first)
    assert window.chat.conv_id == second
    assert window.chat_view.title.full_text() == "beta"
    assert window.chat.branch()[0].text == "question of beta"
    assert len(window.chat_view.widgets) == 2 and not window.chat_view.empty.isVisibleTo(window)
    assert window.sidebar.list.currentItem().data(256) == second
    window.delete_conversation(second)  # none left: now a new chat
    assert window.chat.conv_id is None and window.chat_view.empty.isVisibleTo(window)
    window.undo_delete()
    assert window.chat.conv_id == second


# ---------------------------------------------------------------- 13: acceptance by depth


def test_acceptance_by_depth_keeps_one_axis_from_reply_to_reply(qtbot, open_window) -> None:
    window = open_window(boot=False).window
    chart = window.stats.depth_chart
    axis = depth_axis(window.settings.generation().spec)
    seen = set()
    for rates in ([0.9, 0.5, 0.2], [0.8, 0.7, 0.6, 0.4, 0.1], [0.9] * 12):
        window.stats.show_stats({"acceptance_by_depth": rates, "steps": 3, "tokens": 9}, [], live=False,
                                heading="reply", mode="auto")
        seen.add(len(chart.rates))
        assert chart.rates[:len(rates)] == rates[:axis]
    assert seen == {axis}
    assert f"1–{axis}" in chart.caption()
    gen = window.settings.generation()
    gen.spec.n_max, gen.spec.max_depth = 6, 5
    window.settings.set_generation(gen)
    window.toggle_speculation(True)  # what applying settings refreshes
    assert chart.axis == 6 and "1–6" in chart.caption()
    window.stats.show_stats({"acceptance_by_depth": [0.5] * 9, "steps": 3, "tokens": 9}, [], live=False,
                            heading="reply", mode="auto")
    assert len(chart.rates) == 6 and "3 deeper" in chart.caption()
