"""The main window's actions, menus and toolbar (its `setupUi`), and the shortcut list.

Every action is also added to the window itself, so its shortcut works wherever the
focus is, menu or not.  Icon names are remembered so a theme change can re-tint them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QMessageBox, QToolButton, QWidget

from app.settings_store import PICKABLE_MODES, UiPrefs
from app.views.settings_dialog import MODE_HELP

SHORTCUTS = (
    ("Enter", "Send the message"),
    ("Shift+Enter", "New line in the message"),
    ("Esc", "Stop the reply (the text so far is kept)"),
    ("Ctrl+N", "New chat"),
    ("Ctrl+R", "Regenerate the last answer"),
    ("Ctrl+F", "Search conversations"),
    ("Ctrl+L", "Go to the message box"),
    ("F2", "Rename the selected conversation"),
    ("Del", "Delete the selected conversation (in the list)"),
    ("Ctrl+Z", "Undo the last delete"),
    ("Ctrl+E", "Export the conversation to Markdown"),
    ("Ctrl+Shift+S", "Speculation on/off"),
    ("Ctrl+Shift+O", "Provenance overlay on/off"),
    ("F9", "Show/hide the statistics panel"),
    ("Ctrl+,", "Settings"),
    ("Ctrl+Shift+M", "Model manager"),
    ("Ctrl+Q", "Quit"),
)


def setup_actions(w: QMainWindow, ui: UiPrefs) -> None:
    """Create w.act_* actions, the menu bar, the mode menu and the toolbar.  `w` is the
    MainWindow (app/views/main_window.py), which calls this from its constructor; it is
    typed as QMainWindow so that this module does not import the module importing it."""

    def a(text: str, slot: Callable[..., Any], shortcut: str | QKeySequence | QKeySequence.StandardKey | None = None,
          icon: str | None = None, tip: str | None = None, checkable: bool = False) -> QAction:
        action = QAction(text, w)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if icon:
            w.icon_actions.append((action, icon))
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.setCheckable(checkable)
        action.triggered.connect(slot)
        w.addAction(action)
        return action

    w.act_new = a("New chat", w.new_chat, "Ctrl+N", "new-chat", "Start a new conversation")
    w.act_export = a("Export to Markdown…", lambda: w.export_conversation(), "Ctrl+E", "export",
                     "Save this conversation as a Markdown file")
    w.act_quit = a("Quit", w.close, QKeySequence.StandardKey.Quit)
    w.act_undo = a("Undo delete", w.undo_delete, QKeySequence.StandardKey.Undo)
    w.act_undo.setEnabled(False)
    w.act_regenerate = a("Regenerate answer", lambda: w.chat.regenerate(), "Ctrl+R", "regenerate",
                         "Write the last answer again (earlier versions are kept)")
    w.act_stop = a("Stop", w.chat.stop, "Esc", "stop", "Stop the reply and keep its text")
    w.act_search = a("Search conversations", w.sidebar.focus_search, "Ctrl+F", "search")
    w.act_focus = a("Go to message box", lambda: w.composer.edit.setFocus(), "Ctrl+L")
    w.act_rename = a("Rename conversation", w.sidebar.rename_current, "F2")
    w.act_system = a("System prompt…", w.edit_system_prompt, None, "system-prompt")
    w.act_spec = a("Speculation", w.toggle_speculation, "Ctrl+Shift+S", "bolt",
                   "Speculative decoding on/off (the answer is the same; only the speed changes)", True)
    w.act_spec.setChecked(w.settings.spec_enabled())
    w.act_overlay = a("Provenance overlay", w.toggle_overlay, "Ctrl+Shift+O", "overlay",
                      "Colour each piece of an answer by where it came from", True)
    w.act_overlay.setChecked(ui.overlay)
    w.act_stats = w.dock.toggleViewAction()
    w.act_stats.setText("Statistics panel")
    w.act_stats.setShortcut(QKeySequence("F9"))
    w.act_stats.setToolTip("Live statistics of the reply (F9)")
    w.icon_actions.append((w.act_stats, "chart"))
    w.act_settings = a("Settings…", w.open_settings, QKeySequence("Ctrl+,"), "settings", "Settings")
    w.act_models = a("Model manager…", w.open_model_manager, "Ctrl+Shift+M", "models",
                     "Download, import, verify and delete models")
    w.act_restart = a("Restart engine", w.restart_engine, None, "restart")
    w.act_measure = a("Re-measure plain speed", w.engine.remeasure)
    w.act_shortcuts = a("Keyboard shortcuts", lambda: show_shortcuts(w), QKeySequence.StandardKey.HelpContents)
    w.act_about = a("About Tandem", lambda: show_about(w))

    w.mode_group = QActionGroup(w)
    w.mode_menu = QMenu("Speculation mode", w)
    for mode in PICKABLE_MODES:
        act = QAction(MODE_HELP.get(mode, mode), w.mode_group, checkable=True)
        act.setData(mode)
        act.setChecked(mode == w.settings.spec_mode())
        act.triggered.connect(lambda _checked=False, m=mode: w.set_spec_mode(m))
        w.mode_menu.addAction(act)

    bar = w.menuBar()
    m = bar.addMenu("&File")
    m.addActions([w.act_new, w.act_export])
    m.addSeparator()
    m.addAction(w.act_quit)
    m = bar.addMenu("&Edit")
    m.addActions([w.act_undo, w.act_rename, w.act_search])
    m = bar.addMenu("&Chat")
    m.addActions([w.act_stop, w.act_regenerate, w.act_system, w.act_focus])
    m = bar.addMenu("&View")
    m.addActions([w.act_stats, w.act_overlay])
    m = bar.addMenu("&Models")
    m.addAction(w.act_spec)
    m.addMenu(w.mode_menu)
    m.addSeparator()
    m.addActions([w.act_settings, w.act_models])
    m.addSeparator()
    m.addActions([w.act_restart, w.act_measure])
    m = bar.addMenu("&Help")
    m.addActions([w.act_shortcuts, w.act_about])

    tb = w.addToolBar("Main")
    tb.setObjectName("mainToolbar")
    tb.setMovable(False)
    tb.setIconSize(QSize(18, 18))
    tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    tb.addAction(w.act_new)
    tb.addSeparator()
    tb.addAction(w.act_spec)
    spec_button = tb.widgetForAction(w.act_spec)
    if isinstance(spec_button, QToolButton):  # the switch, with the mode menu beside it
        spec_button.setMenu(w.mode_menu)
        spec_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
    tb.addAction(w.act_overlay)
    tb.addAction(w.act_stats)
    tb.addSeparator()
    tb.addAction(w.act_settings)
    tb.addAction(w.act_models)
    tb.addAction(w.act_export)
    w.toolbar = tb


def show_shortcuts(parent: QWidget) -> None:
    rows = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{v}</td></tr>" for k, v in SHORTCUTS)
    QMessageBox.information(parent, "Keyboard shortcuts", f"<table>{rows}</table>")


def show_about(parent: QWidget) -> None:
    QMessageBox.about(
        parent,
        "About Tandem",
        "<b>Tandem</b> — offline chat with staged speculative decoding on llama.cpp.<br><br>"
        "A small draft model and an n-gram table guess ahead; the large model checks the guesses in one pass "
        "and keeps those it agrees with. The answer is the large model's own; speculation only makes it "
        "arrive sooner. The statistics panel shows what it buys on this computer.",
    )
