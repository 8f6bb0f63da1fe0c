"""The main window: sidebar | chat (or first-run screen) | statistics dock, with the
toolbar, menus, status bar and shortcuts.

It owns no logic of its own beyond wiring: ChatController (conversations, replies)
and EngineController (models, process) do the work; the views show it.
"""

from __future__ import annotations

import os
from dataclasses import replace

from PySide6.QtCore import QStandardPaths, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QGuiApplication, QResizeEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app import icons, jobs, model_choice, speed
from app.chat_controller import ChatController
from app.engine_client import EngineClient
from app.engine_controller import EngineController
from app.model_choice import Resolved
from app.settings_store import ModelChoice, SettingsStore, UiPrefs
from app.store import ChatStore, Message
from app.theme import Colors, ThemeManager
from app.views.actions import setup_actions
from app.views.banner import Banner
from app.views.chat_view import ChatView
from app.views.composer import Composer
from app.views.first_run import FirstRunPage
from app.views.model_manager import ModelManager
from app.views.settings_dialog import SettingsDialog
from app.views.sidebar import Sidebar
from app.views.stats_dock import StatsPanel
from app.views.status_bar import StatusLabels
from app.views.text_dialog import TextDialog
from engine.settings import GenerationSettings, SpecSettings


def depth_axis(spec: SpecSettings) -> int:
    """The deepest guess the speculation settings allow: the acceptance-by-depth chart
    keeps this many bars for every reply, so its axis does not jump between replies."""
    return max(1, min(max(spec.n_max, spec.max_depth), spec.budget))


# the sidebar, chat and dock minimums add up to less than a 900 px window
SIDEBAR_MIN_PX = 170
DOCK_MIN_PX = 300
DOCK_START_PX = 350
STATS_REFRESH_MS = 50  # the dock redraws at most 20 times a second, whatever the step rate
SAFE_SCHEMES = ("http", "https", "mailto")


class MainWindow(QMainWindow):
    def __init__(
        self,
        store: ChatStore,
        settings: SettingsStore,
        theme: ThemeManager,
        client: EngineClient | None = None,
        *,
        boot: bool = True,
    ) -> None:
        super().__init__()
        self.store = store
        self.settings = settings
        self.theme = theme
        self.colors: Colors = theme.colors
        self.client = client or EngineClient(self)
        self.engine = EngineController(self.client, settings, self)
        self.chat = ChatController(store, self.engine, settings, self)
        self.settings_dialog: SettingsDialog | None = None
        self.model_manager: ModelManager | None = None
        self.text_dialog: TextDialog | None = None
        self.last_export: str | None = None
        self.selected_stats_msg: int | None = None
        self.icon_actions: list[tuple[QAction, str]] = []  # re-tinted on theme changes
        ui = settings.ui()

        self.setWindowTitle("Tandem")
        self.setWindowIcon(icons.app_icon())
        self.setObjectName("mainWindow")
        self.resize(1320, 860)
        self._build_views(ui)
        setup_actions(self, ui)
        self.toolbar_compact = False
        self.status = StatusLabels(self.statusBar())
        self._update_mode_label()
        self._update_engine_label()
        self._connect()
        self._restore_geometry(ui)
        theme.on_change(self._apply_colors)
        self._apply_colors(theme.colors)
        self.refresh_conversations()
        self.chat.reopen_last()
        self._sync_can_send()
        if boot:
            self.engine.boot()

    # ================================================================ construction

    def _build_views(self, ui: UiPrefs) -> None:
        c = self.colors
        self.sidebar = Sidebar(c)
        self.chat_view = ChatView(c)
        self.chat_view.set_overlay(ui.overlay)
        self.composer = Composer(c)
        self.banner = Banner(c)
        self.first_run = FirstRunPage()

        chat_page = QWidget()
        column = QVBoxLayout(chat_page)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.chat_view, 1)
        bottom = QWidget()
        bottom_box = QVBoxLayout(bottom)
        bottom_box.setContentsMargins(16, 6, 16, 12)
        bottom_box.setSpacing(6)
        bottom_box.addWidget(self.banner)
        bottom_box.addWidget(self.composer)
        column.addWidget(bottom)

        self.stack = QStackedWidget()
        self.stack.addWidget(chat_page)
        self.stack.addWidget(self.first_run)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(self.stack)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([250, 800])
        self.splitter.setChildrenCollapsible(False)
        self.sidebar.setMinimumWidth(SIDEBAR_MIN_PX)
        self.setCentralWidget(self.splitter)

        self.stats = StatsPanel(c)
        self.dock = QDockWidget("Statistics", self)
        self.dock.setObjectName("statsDock")
        self.dock.setWidget(self.stats)
        self.dock.setMinimumWidth(DOCK_MIN_PX)
        self.dock.setAllowedAreas(Qt.DockWidgetArea.LeftDockWidgetArea | Qt.DockWidgetArea.RightDockWidgetArea)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.setVisible(ui.stats_visible)

    def _connect(self) -> None:
        s, cv, cc, ec = self.sidebar, self.chat_view, self.chat, self.engine
        s.new_requested.connect(self.new_chat)
        s.open_requested.connect(cc.open_conversation)
        s.rename_requested.connect(cc.rename)
        s.delete_requested.connect(self.delete_conversation)
        s.search_changed.connect(lambda _t: self.refresh_conversations())
        cv.regenerate_requested.connect(cc.regenerate)
        cv.edit_submitted.connect(cc.edit)
        cv.version_requested.connect(cc.switch_version)
        cv.link_activated.connect(self.open_link)
        cv.copied.connect(lambda what: self.statusBar().showMessage(f"Copied the {what} to the clipboard", 3000))
        cv.system_prompt_requested.connect(self.edit_system_prompt)
        cv.example_chosen.connect(self.composer.set_text)
        cv.message_selected.connect(self.show_message_stats)
        self.composer.send_requested.connect(self.send)
        self.composer.stop_requested.connect(cc.stop)

        cc.conversations_changed.connect(self.refresh_conversations)
        cc.conversation_opened.connect(self._on_conversation_opened)
        cc.branch_changed.connect(self.show_branch)
        cc.reply_updated.connect(self._on_reply_updated)
        cc.reply_step.connect(self._on_reply_step)
        cc.reply_started.connect(self._on_reply_started)
        cc.reply_progress.connect(self._on_reply_progress)
        cc.reply_finished.connect(self._on_reply_finished)
        cc.busy_changed.connect(self._on_busy)
        cc.notice.connect(self._on_reply_notice)
        cc.error.connect(lambda m: self.banner.show_message(f"The engine could not answer: {m}", "error"))

        ec.state_changed.connect(self._on_engine_state)
        ec.progress.connect(self._on_engine_progress)
        ec.loaded.connect(self._on_loaded)
        ec.load_failed.connect(self._on_load_failed)
        ec.crashed.connect(self._on_crashed)
        ec.models_missing.connect(self._on_models_missing)
        ec.baseline_changed.connect(self._on_baseline)
        ec.measure_result.connect(self._on_measure_result)
        ec.measure_started.connect(self._on_measure_started)
        self._server_warning = ""  # see _on_server_changed
        ec.server_changed.connect(self._on_server_changed)

        self.first_run.provisioned.connect(lambda: self.engine.boot())
        self.first_run.open_model_manager.connect(self.open_model_manager)
        self.first_run.open_settings.connect(self.open_settings)
        self.first_run.use_default_pair.connect(self._use_default_pair)

        self._reading = False  # the "Reading the conversation" banner is up
        self._reply_notice = ""  # the engine's last notice about the reply being written
        self._stats_timer = QTimer(self)
        self._stats_timer.setSingleShot(True)
        self._stats_timer.timeout.connect(self._refresh_live_stats)

    def _fit_toolbar(self) -> None:
        """Short toolbar labels when the full ones do not fit the window (at 900 px
        "Export to Markdown" fell off the end); anything still too wide goes to the
        toolbar's » menu."""
        full = {self.act_overlay: "Provenance overlay", self.act_stats: "Statistics panel",
                self.act_models: "Model manager", self.act_export: "Export to Markdown"}
        short = {self.act_overlay: "Overlay", self.act_stats: "Statistics", self.act_models: "Models",
                 self.act_export: "Export"}
        for act, text in full.items():
            act.setIconText(text)
        if self.toolbar.sizeHint().width() > self.width():
            for act, text in short.items():
                act.setIconText(text)
        self.toolbar_compact = self.act_export.iconText() == short[self.act_export]

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if hasattr(self, "toolbar"):
            self._fit_toolbar()

    def _restore_geometry(self, ui: UiPrefs) -> None:
        geometry, state, splitter = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        else:  # first start: room for the stage table's three columns
            self.resizeDocks([self.dock], [DOCK_START_PX], Qt.Orientation.Horizontal)
        if splitter is not None:
            self.splitter.restoreState(splitter)
        self.dock.setVisible(ui.stats_visible)

    # ================================================================ conversations

    def refresh_conversations(self) -> None:
        self.sidebar.refresh(self.store.conversations(self.sidebar.search.text().strip()), self.chat.conv_id)
        self._update_header()  # a rename in the sidebar shows in the header at once

    def _update_header(self) -> None:
        conv = self.store.conversation(self.chat.conv_id) if self.chat.conv_id is not None else None
        self.chat_view.set_title(conv.title if conv else "New chat", bool(self.chat.system_prompt().strip()))
        self.act_export.setEnabled(conv is not None)

    def new_chat(self) -> None:
        self.chat.new_conversation()
        self.stack.setCurrentIndex(0 if self.engine.state != "missing" else 1)
        self.composer.edit.setFocus()

    def _on_conversation_opened(self, conv_id: int | None) -> None:
        self.sidebar.select(conv_id)
        self.selected_stats_msg = None
        if self.stack.currentWidget() is self.first_run and conv_id is not None:
            self.stack.setCurrentIndex(0)  # reading old chats works without models
        self.show_branch()
        self._show_last_stats()

    def show_branch(self) -> None:
        branch = self.chat.branch()
        versions = {}
        for msg in branch:
            siblings = self.store.siblings(msg)
            index = next((i for i, m in enumerate(siblings) if m.id == msg.id), 0)
            versions[msg.id] = (index + 1, len(siblings))
        live = {}
        active = self.chat.active
        if active is not None and active.conv_id == self.chat.conv_id:
            live[active.msg_id] = (active.text, active.runs, active.snapshot or None)
        self.chat_view.set_busy(self.chat.busy)
        self.chat_view.show_branch(branch, versions, live)
        self._update_header()

    def delete_conversation(self, conv_id: int) -> None:
        conv = self.store.conversation(conv_id)
        shown = self.sidebar.ids()
        then_open = None
        if conv_id == self.chat.conv_id and conv_id in shown:
            # the neighbour in the list (the one below, else above), as a file manager does
            i = shown.index(conv_id)
            rest = shown[i + 1:] + shown[:i][::-1]
            then_open = rest[0] if rest else None
        self.chat.delete(conv_id, then_open)
        self.act_undo.setEnabled(True)
        title = conv.title if conv else "conversation"
        self.banner.show_message(f"Deleted “{title}”.", "info", actions=[("Undo", self.undo_delete)])

    def undo_delete(self) -> None:
        if self.chat.undo_delete() is not None:
            self.banner.hide()
        self.act_undo.setEnabled(self.chat.can_undo_delete())

    def edit_system_prompt(self) -> None:
        dialog = TextDialog(
            "System prompt",
            "Instructions the model reads before this conversation (for example: “Answer briefly. Use Python 3.12.”). "
            "They apply to the next reply.",
            self.chat.system_prompt(),
            self,
        )
        dialog.accepted.connect(lambda: self._set_system_prompt(dialog.text()))
        self.text_dialog = dialog
        dialog.open()

    def _set_system_prompt(self, text: str) -> None:
        self.chat.set_system_prompt(text)
        self.show_branch()

    def export_conversation(self, path: str | None = None) -> str | None:
        text = self.chat.export_markdown()
        if text is None:
            return None
        if path is None:
            conv = self.store.conversation(self.chat.conv_id or -1)
            name = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in (conv.title if conv else "chat"))
            start = os.path.join(self.export_dir(), f"{name.strip() or 'chat'}.md")
            path, _ = QFileDialog.getSaveFileName(self, "Export conversation", start, "Markdown (*.md)")
            if not path:
                return None
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            self.banner.show_message(f"Could not export: {exc}", "error")
            return None
        self.last_export = path
        self.statusBar().showMessage(f"Exported to {path}", 5000)
        return path

    def export_dir(self) -> str:
        """Where the export dialog opens: the last export's folder, else Documents, else home
        (never the folder the app happened to be started from)."""
        if self.last_export and os.path.isdir(os.path.dirname(self.last_export)):
            return os.path.dirname(self.last_export)
        docs = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
        if docs and os.path.isdir(docs):
            return docs
        return QStandardPaths.writableLocation(QStandardPaths.StandardLocation.HomeLocation) or os.path.expanduser("~")

    # ================================================================ sending

    def send(self, text: str) -> None:
        if self.chat.send(text):
            self.composer.clear()
            if self.banner.kind != "error":
                self.banner.hide()  # old notices belong to the previous reply

    def _on_busy(self, busy: bool) -> None:
        self.composer.set_busy(busy)
        self.chat_view.set_busy(busy)
        self.act_regenerate.setEnabled(not busy)
        self._sync_can_send()
        self._update_engine_label()

    def _on_reply_updated(self, msg_id: int) -> None:
        live = self.chat.live_text(msg_id)
        if live is not None:
            self.chat_view.update_live(msg_id, live[0], live[1], self.chat.active.snapshot if self.chat.active
                                       else None)

    def _on_reply_started(self, _msg_id: int) -> None:
        """The previous reply's figures must not stand in for this one's while the
        engine reads the conversation."""
        self._reply_notice = ""  # a new reply: earlier notices are not about it
        self.selected_stats_msg = None
        active = self.chat.active
        self.stats.show_stats({}, [], live=True, heading=self._stats_heading(None, True),
                              mode=active.mode if active else "")

    def _on_reply_progress(self, _msg_id: int, done: int, total: int) -> None:
        """Reading a long conversation (after a restart: tens of seconds) is shown with
        its progress; Stop works throughout."""
        if done >= total and not self._reading:
            return  # read in one go: nothing to wait for
        if done >= total:
            self._end_reading()
            return
        text = f"Reading the conversation: {done:,} of {total:,} tokens"
        if not self._reading or not self.banner.isVisible():
            self.banner.show_message(text + "…", "info", busy=True, closable=False,
                                     actions=[("Stop", self.chat.stop)])
            self._reading = True
        else:
            self.banner.label.setText(text + "…")
        self.banner.set_progress(done, total)
        self.stats.heading.setText(f"This reply — {text[0].lower()}{text[1:]}…")

    def _on_reply_notice(self, message: str) -> None:
        """What the engine says about a reply (turns left out to fit the context, ...).
        The "Reading the conversation" banner may replace it a moment later, so it is
        kept and shown again when reading ends."""
        self._reply_notice = message
        self.banner.show_message(message, "warn")

    def _end_reading(self) -> None:
        if self._reading:
            self._reading = False
            if self.banner.kind == "info" and self.banner.progress.isVisible():
                self.banner.hide()
                if self._reply_notice:
                    self.banner.show_message(self._reply_notice, "warn")

    def _on_reply_step(self, _msg_id: int, _step: dict, _snapshot: dict) -> None:
        self._end_reading()
        if not self._stats_timer.isActive():
            self._stats_timer.start(STATS_REFRESH_MS)

    def _refresh_live_stats(self) -> None:
        active = self.chat.active
        if active is None:
            return
        self.selected_stats_msg = None
        self.stats.show_stats(active.snapshot, active.steps, live=True, heading=self._stats_heading(None, True),
                              mode=active.mode)

    def _on_reply_finished(self, msg_id: int) -> None:
        self._stats_timer.stop()
        self._end_reading()
        msg = self.store.message(msg_id)
        if msg is None:
            return
        est = speed.live_estimate(msg.stats)
        if est is not None and est.get("source") != "start-up measurement":
            self.status.set_baseline(float(est["tps"]), "last reply", bool(est.get("uncertain")))
        if msg.conversation_id == self.chat.conv_id:
            widget = self.chat_view.message_widget(msg_id)
            if widget is not None:
                siblings = self.store.siblings(msg)
                index = next((i for i, m in enumerate(siblings) if m.id == msg.id), 0)
                widget.set_message(msg, (index + 1, len(siblings)))
            self.show_message_stats(msg_id, heading_override=None)
        self._sync_can_send()

    def _show_last_stats(self) -> None:
        last = next((m for m in reversed(self.chat.branch()) if m.role == "assistant" and m.stats), None)
        if last is None:
            self.stats.clear()
            self.stats.set_baseline(self.engine.baseline_tps())
        else:
            self.show_message_stats(last.id)

    def show_message_stats(self, msg_id: int, heading_override: str | None = None) -> None:
        msg = self.store.message(msg_id)
        if msg is None or not msg.stats:
            return
        self.selected_stats_msg = msg_id
        stats = msg.stats
        mode = (msg.model or {}).get("mode") or stats.get("mode_requested") or ""
        self.stats.show_stats(stats, stats.get("steps_detail") or [], live=False,
                              heading=heading_override or self._stats_heading(msg, False), mode=mode)

    def _stats_heading(self, msg: Message | None, live: bool) -> str:
        if live:
            active = self.chat.active
            mode = active.mode if active else self.settings.effective_mode()
            return f"This reply — writing… (speculation {'off' if mode == 'off' else mode})"
        assert msg is not None
        mode = (msg.model or {}).get("mode", "")
        last = next((m for m in reversed(self.chat.branch()) if m.role == "assistant"), None)
        which = "Last reply" if last is not None and last.id == msg.id else "Selected reply"
        return f"{which} (speculation {'off' if mode == 'off' else mode})"

    # ================================================================ engine

    def _sync_can_send(self) -> None:
        state = self.engine.state
        why = {
            "checking": "Looking for the models…",
            "missing": "The models are not on this computer yet.",
            "loading": "Loading the models…",
            "load_failed": "The models could not be loaded — see the message above.",
            "crashed": "The engine stopped — press Restart engine.",
        }.get(state, "")
        if state == "ready" and not self.client.is_ready:
            why = "Starting the engine…"
        self.composer.set_can_send(self.chat.can_send(), why)

    def _on_engine_state(self, state: str) -> None:
        self._sync_can_send()
        self._update_engine_label()
        if state == "ready":
            self.stack.setCurrentIndex(0)
            if self.banner.progress.isVisible():
                self.banner.hide()
        if state in ("checking", "loading"):
            self.banner.show_message("Loading…", "info", busy=True, closable=False)

    def _on_engine_progress(self, message: str) -> None:
        if self.engine.state in ("checking", "loading"):
            self.banner.show_message(message, "info", busy=True, closable=False)
        self.statusBar().showMessage(message, 4000)

    def _on_loaded(self, info: dict) -> None:
        self.statusBar().clearMessage()
        self.status.pair.setText(self.engine.pair_label())
        self.stats.time_bar.set_remote(info.get("remote"))
        self._on_baseline(float(info.get("baseline_tps") or 0))
        # what the user should know about this load: an unusable draft, GPU layers not honoured, ...
        notes = [str(n) for n in info.get("notices") or []]
        problem = info.get("draft_problem")
        if problem:
            notes.insert(0, f"The draft model cannot speculate for this target ({problem}); Tandem uses the "
                            "n-gram stage only. Pick a compatible draft in Settings.")
        if self._server_warning:  # the loading banners replaced it: say it again
            notes.append(self._server_warning)
        if notes:
            self.banner.show_message("\n".join(notes), "warn", actions=[("Settings…", self.open_settings)])
        self._sync_can_send()

    def _on_baseline(self, tps: float) -> None:
        self.status.set_baseline(tps or None)
        self.stats.set_baseline(tps or None)

    def _on_measure_started(self) -> None:
        self.banner.show_message("Measuring plain decoding speed on this computer (about 10 s)…", "info",
                                 busy=True, closable=False)

    def _on_measure_result(self, message: str, kind: str) -> None:
        """"Re-measure plain speed" always answers, in the banner and the status bar."""
        self.banner.show_message(message, kind)
        self.statusBar().showMessage(message.split(". ")[0], 8000)

    def _on_server_changed(self, url: str, message: str) -> None:
        self.status.set_server(url)
        # a warning about a running server (reachable from the network) must outlive the
        # load notices that may replace the banner a moment later
        self._server_warning = message if url else ""
        if message:
            self.banner.show_message(message, "warn" if url else "error", actions=[("Settings…", self.open_settings)])

    def _on_load_failed(self, message: str) -> None:
        actions = [("Settings…", self.open_settings), ("Model manager…", self.open_model_manager)]
        if self.engine.good_choice is not None and self.engine.good_choice != self.engine.choice:
            actions.insert(0, ("Use the previous models", self.engine.revert))
        self.banner.show_message(f"Could not load the models: {message}", "error", actions=actions)
        self.status.pair.setText("no models loaded")

    def _on_crashed(self, what: str, tail: str) -> None:
        during = "while loading the models" if self.engine.crashed_while == "loading" else ""
        kept = " Your conversation is safe; a reply that was being written is kept and marked interrupted."
        actions = [("Restart engine", self.restart_engine), ("Details…", lambda: self.show_crash_details(what, tail))]
        if self.engine.crashed_while == "loading" and self.engine.good_choice not in (None, self.engine.choice):
            actions.insert(1, ("Use the previous models", self.engine.revert))
        if self.engine.choice is not None and self.engine.choice.remote:
            # the target's server went away: this computer can take over if the pair fits here
            actions.insert(0, ("Run on this computer", self.run_locally))
        self.banner.show_message(f"The engine process stopped unexpectedly {during} ({what}).{kept}".replace("  ", " "),
                                 "error", actions=actions, closable=False)
        self.show_branch()

    def run_locally(self) -> None:
        """Forget the remote devices and load the whole pair here (the memory check
        before loading says so clearly if it does not fit)."""
        self.banner.hide()
        choice = replace(self.engine.choice, remote="")
        self.settings.set_model_choice(choice)
        self.engine.apply_choice(choice)

    def restart_engine(self) -> None:
        self.banner.hide()
        self.engine.restart()

    def show_crash_details(self, what: str, tail: str) -> None:
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Engine stopped")
        box.setText(f"The engine process {what}.")
        box.setInformativeText("The last lines it wrote are below. Restart the engine to go on chatting.")
        box.setDetailedText(tail or "(it wrote nothing)")
        box.open()

    def _on_models_missing(self, resolved: Resolved) -> None:
        self.statusBar().clearMessage()
        self.first_run.show_missing(resolved)
        self.stack.setCurrentIndex(1)
        self.banner.hide()
        self.status.pair.setText("models missing")

    def _use_default_pair(self) -> None:
        from dataclasses import replace

        self.engine.apply_choice(replace(self.engine.choice, target="", draft=""))

    # ================================================================ speculation & overlay

    def toggle_speculation(self, on: bool | None = None) -> None:
        on = self.act_spec.isChecked() if on is None or not isinstance(on, bool) else on
        self.act_spec.setChecked(on)
        self.settings.set_spec_enabled(on)
        self._update_mode_label()
        self.engine.sync_server_settings(self.settings.generation())
        self.statusBar().showMessage(f"Speculation {'on' if on else 'off'} for the next reply", 3000)

    def set_spec_mode(self, mode: str) -> None:
        self.settings.set_spec_mode(mode)
        self.settings.set_spec_enabled(True)
        self.act_spec.setChecked(True)
        self._update_mode_label()
        self.engine.sync_server_settings(self.settings.generation())

    def toggle_overlay(self, on: bool | None = None) -> None:
        on = self.act_overlay.isChecked() if on is None or not isinstance(on, bool) else on
        self.act_overlay.setChecked(on)
        self.settings.update_ui(overlay=on)
        self.chat_view.set_overlay(on)

    def _update_mode_label(self) -> None:
        mode = self.settings.effective_mode()
        self.status.set_mode(mode)
        self.chat_view.set_speculation(mode != "off")
        self.stats.depth_chart.set_axis(depth_axis(self.settings.generation().spec))
        for act in self.mode_group.actions():
            act.setChecked(act.data() == self.settings.spec_mode())
        self.act_spec.setText(f"Speculation: {mode}" if mode != "off" else "Speculation: off")

    def _update_engine_label(self) -> None:
        self.status.set_engine(self.engine.state, self.chat.busy, self.colors)

    # ================================================================ dialogs

    def open_settings(self) -> SettingsDialog:
        if self.settings_dialog is not None and self.settings_dialog.isVisible():
            self.settings_dialog.raise_()
            return self.settings_dialog
        s = self.settings
        dialog = SettingsDialog(s.generation(), s.spec_enabled(), s.spec_mode(), self.engine.choice, s.ui(), self,
                                server=self.engine.server_prefs)
        dialog.applied.connect(self.apply_settings)
        dialog.server_applied.connect(self.engine.apply_server)
        dialog.forget_history.connect(self.engine.client.forget_history)
        self.settings_dialog = dialog
        dialog.open()
        return dialog

    def apply_settings(self, gen: GenerationSettings, choice: ModelChoice, ui: UiPrefs) -> None:
        mode = gen.spec.mode
        self.settings.set_generation(gen)
        if mode == "off" and self.settings_dialog is not None:
            self.settings.set_spec_mode(self.settings_dialog.chosen_mode())  # remembered for switching back on
        self.act_spec.setChecked(self.settings.spec_enabled())
        self._update_mode_label()
        self.engine.sync_server_settings(self.settings.generation())
        old = self.settings.ui()
        self.settings.set_ui(UiPrefs(theme=ui.theme, overlay=ui.overlay, stats_visible=self.dock.isVisible()))
        if ui.overlay != old.overlay:
            self.toggle_overlay(ui.overlay)
        if ui.theme != old.theme:
            self.theme.set_pref(ui.theme)
        self.settings.sync()
        dialog = self.settings_dialog
        if dialog.needs_reload() if dialog is not None else choice != self.engine.choice:
            self.engine.apply_choice(choice)
        else:
            self.settings.set_model_choice(choice)
            self.engine.choice = choice

    def open_model_manager(self) -> ModelManager:
        if self.model_manager is None:
            self.model_manager = ModelManager(self._models_in_use, self,
                                              target=lambda: model_choice.pair_ids(self.engine.choice)[0])
            self.model_manager.models_changed.connect(self._on_models_changed)
            self.model_manager.use_draft.connect(self._use_draft)
        self.model_manager.refresh()
        self.model_manager.show()
        self.model_manager.raise_()
        return self.model_manager

    def _use_draft(self, model_id: str) -> None:
        from dataclasses import replace

        self.engine.apply_choice(replace(self.engine.choice, draft=model_id))

    def _models_in_use(self) -> set[str]:
        r = self.engine.resolved
        return {i for i in ((r.target_id, r.draft_id) if r else ()) if i} if self.engine.info else set()

    def _on_models_changed(self) -> None:
        if self.engine.state == "missing":
            self.engine.boot()  # the missing models may be here now

    def open_link(self, url: str) -> bool:
        """Links in answers open only after a click and a confirmation, and only web/mail links."""
        scheme = QUrl(url).scheme().lower()
        if scheme not in SAFE_SCHEMES:
            QGuiApplication.clipboard().setText(url)
            self.statusBar().showMessage(f"Not opened ({scheme or 'relative'} link); copied to the clipboard: {url}",
                                         6000)
            return False
        if not self.confirm_link(url):
            return False
        return QDesktopServices.openUrl(QUrl(url))

    def confirm_link(self, url: str) -> bool:
        answer = QMessageBox.question(self, "Open link", f"Open this link in your browser?\n\n{url}")
        return answer == QMessageBox.StandardButton.Yes

    # ================================================================ theme & lifecycle

    def _apply_colors(self, colors: Colors) -> None:
        self.colors = colors
        for view in (self.sidebar, self.chat_view, self.composer, self.banner, self.stats):
            view.set_colors(colors)
        for act, name in self.icon_actions:
            act.setIcon(icons.icon(name, colors.text))
        self._update_engine_label()

    def save_window_state(self) -> None:
        self.settings.set_window_state(self.saveGeometry(), self.saveState(), self.splitter.saveState())
        self.settings.update_ui(stats_visible=self.dock.isVisible())
        self.settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_window_state()
        self.theme.remove_listener(self._apply_colors)
        if self.chat.busy:
            self.chat.stop()  # keep the partial reply, as Stop does
        if self.model_manager is not None:
            self.model_manager.close()
        self.engine.shutdown()
        jobs.wait_all(3000)
        super().closeEvent(event)
