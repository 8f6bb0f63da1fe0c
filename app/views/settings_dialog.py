"""Settings: speculation, models, sampling, resources, appearance.

Every field maps to engine.settings (GenerationSettings / SpecSettings / LoadSettings
through app.settings_store.ModelChoice) or to a UI preference.  The draft picker
checks each draft against the chosen target from GGUF metadata alone
(engine.models.compat.incompatibility_from_files, off the GUI thread) and shows incompatible
drafts disabled, with the reason.
"""

from __future__ import annotations

import html
from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import model_choice
from app.jobs import Task
from app.settings_store import NO_DRAFT, PICKABLE_MODES, THEMES, ModelChoice, ServerPrefs, UiPrefs
from engine.errors import TandemError
from engine.llama.rpc import is_loopback, parse_endpoints
from engine.models import catalog, provision
from engine.models.compat import incompatibility_from_files
from engine.settings import GenerationSettings, SpecSettings

MODE_HELP = {
    "auto": "auto — picks per step from the costs measured on this computer and the acceptance learned so far",
    "staged": "staged — n-gram guesses checked by the draft model, the draft's tree checked by the target",
    "c2t": "c2t — draft tree pruned by a small classifier trained on this pair's own history",
    "tree": "tree — dynamic draft tree (EAGLE-2 style), best nodes verified in one pass",
    "chain": "chain — the draft guesses one line of tokens (llama.cpp style)",
    "ngram": "n-gram — prompt lookup only: no draft model, nearly free guesses from repeated text",
}
ID_ROLE = Qt.ItemDataRole.UserRole
CHECKING = "checking compatibility…"


class SettingsDialog(QDialog):
    applied = Signal(object, object, object)  # GenerationSettings, ModelChoice, UiPrefs
    server_applied = Signal(object)  # ServerPrefs
    forget_history = Signal()  # the user asked to delete the speculation history

    def __init__(
        self,
        gen: GenerationSettings,
        spec_enabled: bool,
        spec_mode: str,
        choice: ModelChoice,
        ui: UiPrefs,
        parent: QWidget | None = None,
        server: ServerPrefs | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(560)
        self.original_choice = choice
        self.ui = ui
        self._compat_task: Task | None = None
        self.incompatible: dict[str, str] = {}  # draft id -> reason, for the chosen target
        self._paths = {m.id: m.path for m in provision.list_models() if m.present and m.state != "mismatch"}
        box = QVBoxLayout(self)
        tabs = QTabWidget()
        box.addWidget(tabs)
        tabs.addTab(self._speculation_tab(gen.spec, spec_enabled, spec_mode), "Speculation")
        tabs.addTab(self._models_tab(choice), "Models")
        tabs.addTab(self._generation_tab(gen), "Generation")
        tabs.addTab(self._appearance_tab(ui), "Appearance")
        tabs.addTab(self._server_tab(server or ServerPrefs()), "Local server")
        self.tabs = tabs
        self.reload_note = QLabel()
        self.reload_note.setObjectName("hint")
        self.reload_note.setWordWrap(True)
        box.addWidget(self.reload_note)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        box.addWidget(buttons)
        self.buttons = buttons
        self._update_reload_note()
        self.check_drafts()

    # ---------------------------------------------------------------- tabs

    def _speculation_tab(self, spec: SpecSettings, enabled: bool, mode: str) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.spec_enabled = QCheckBox("Speculate (guess ahead with the draft model and the n-gram stage)")
        self.spec_enabled.setChecked(enabled)
        self.spec_enabled.setToolTip("Off: plain decoding, one target pass per token. The answer is the same "
                                     "either way (greedy), speculation only changes how fast it arrives.")
        form.addRow(self.spec_enabled)
        self.mode = QComboBox()
        for m in PICKABLE_MODES:
            self.mode.addItem(m, m)
            self.mode.setItemData(self.mode.count() - 1, MODE_HELP.get(m, m), Qt.ItemDataRole.ToolTipRole)
        self.mode.setCurrentIndex(max(0, self.mode.findData(mode)))
        form.addRow("Mode", self.mode)
        self.mode_help = QLabel()
        self.mode_help.setObjectName("hint")
        self.mode_help.setWordWrap(True)
        form.addRow("", self.mode_help)
        self.mode.currentIndexChanged.connect(
            lambda _i: self.mode_help.setText(MODE_HELP.get(self.mode.currentData(), "").split(" — ", 1)[-1])
        )
        self.mode_help.setText(MODE_HELP.get(self.mode.currentData(), "").split(" — ", 1)[-1])
        self.n_max = _spin(1, 256, spec.n_max, "Chain: the most tokens the draft guesses per step.")
        form.addRow("Max draft tokens", self.n_max)
        self.p_min = _dspin(0.0, 1.0, 0.05, spec.p_min, "Chain: stop guessing when the draft is less sure than this.")
        form.addRow("Min draft probability", self.p_min)
        self.budget = _spin(1, 512, spec.budget, "The most candidate tokens sent to the target in one pass.")
        form.addRow("Tree budget", self.budget)
        self.top_k_children = _spin(1, 32, spec.top_k_children, "Tree: children expanded per node.")
        form.addRow("Tree: children per node", self.top_k_children)
        self.beam = _spin(1, 64, spec.beam, "Tree: nodes expanded per depth (EAGLE-2).")
        form.addRow("Tree: beam", self.beam)
        self.max_depth = _spin(1, 64, spec.max_depth, "Tree: deepest draft level.")
        form.addRow("Tree: max depth", self.max_depth)
        self.spec_enabled.toggled.connect(self._sync_spec_enabled)
        self._sync_spec_enabled(enabled)
        self.forget_button = QPushButton("Forget speculation history")
        self.forget_button.setToolTip(
            "The engine keeps your earlier prompts and replies (as tokens, on this computer only, never sent "
            "anywhere) to guess text that repeats. This deletes them; your chats stay.")
        self.forget_button.clicked.connect(self._forget_history)
        form.addRow("History", self.forget_button)
        return page

    def _forget_history(self) -> None:
        answer = QMessageBox.question(
            self, "Forget speculation history",
            "Delete the earlier prompts and replies the engine keeps to guess repeated text? Your chats stay.")
        if answer == QMessageBox.StandardButton.Yes:
            self.forget_history.emit()
            self.forget_button.setEnabled(False)
            self.forget_button.setText("Speculation history forgotten")

    def _models_tab(self, choice: ModelChoice) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        target_id, draft_id = model_choice.pair_ids(choice)
        self.target = QComboBox()
        self.target.setModel(QStandardItemModel(self.target))
        self.draft = QComboBox()
        self.draft.setModel(QStandardItemModel(self.draft))
        self._fill_models(self.target, "target", target_id, with_none=False)
        self._fill_models(self.draft, "draft", draft_id or NO_DRAFT, with_none=True)
        self.target.currentIndexChanged.connect(lambda _i: (self.check_drafts(), self._update_reload_note()))
        self.draft.currentIndexChanged.connect(lambda _i: self._update_reload_note())
        form.addRow("Target model", self.target)
        form.addRow("Draft model", self.draft)
        self.draft_reason = QLabel()
        self.draft_reason.setObjectName("hint")
        self.draft_reason.setWordWrap(True)
        form.addRow("", self.draft_reason)
        manage = QPushButton("Model manager…")
        manage.setToolTip("Download, import, verify or delete models")
        manage.clicked.connect(self._open_manager)
        self.manage_button = manage
        form.addRow("", manage)
        self.n_ctx = _spin(256, 131072, choice.n_ctx, "Tokens the model can see at once (prompt + reply).", step=256)
        form.addRow("Context size", self.n_ctx)
        self.threads = _spin(0, 256, choice.threads, "CPU threads for decoding; auto = physical cores.")
        self.threads.setSpecialValueText("auto")
        form.addRow("Threads", self.threads)
        self.gpu_layers = _spin(0, 999, choice.gpu_layers, "Layers of the target model offloaded to the GPU.")
        form.addRow("GPU layers (target)", self.gpu_layers)
        self.draft_gpu_layers = _spin(0, 999, choice.draft_gpu_layers, "Layers of the draft model on the GPU.")
        form.addRow("GPU layers (draft)", self.draft_gpu_layers)
        for w in (self.n_ctx, self.threads, self.gpu_layers, self.draft_gpu_layers):
            w.valueChanged.connect(lambda _v: self._update_reload_note())
        self.remote = QLineEdit(choice.remote)
        self.remote.setPlaceholderText("none: everything runs on this computer")
        self.remote.setToolTip(
            "Put the target's layers on other machines running `tandem rpc-server` (host:port, comma-separated).\n"
            "The draft stays here. The RPC protocol has no authentication: use it only on a trusted network.")
        form.addRow("Remote devices", self.remote)
        self.remote_hint = QLabel()
        self.remote_hint.setObjectName("hint")
        self.remote_hint.setWordWrap(True)
        form.addRow("", self.remote_hint)
        self.remote.textChanged.connect(lambda _t: self._update_remote_hint())
        self.remote.textChanged.connect(lambda _t: self._update_reload_note())
        self._update_remote_hint()
        return page

    def _update_remote_hint(self) -> None:
        try:
            endpoints = parse_endpoints(self.remote.text())
        except TandemError as exc:
            self.remote_hint.setText(str(exc))
            return
        public = [e for e in endpoints if not is_loopback(e.rpartition(":")[0])]
        self.remote_hint.setText(
            f"The target runs on {', '.join(endpoints)}; the draft on this computer. "
            + ("The connection is not authenticated or encrypted: only use servers on a network you trust."
               if public else "") if endpoints else "")

    def _generation_tab(self, gen: GenerationSettings) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.temperature = _dspin(0.0, 5.0, 0.05, gen.temperature,
                                  "0 = greedy: always the most likely token (replies are repeatable).")
        form.addRow("Temperature", self.temperature)
        self.top_k = _spin(0, 100000, gen.top_k, "Sample among the k most likely tokens (0 = no limit).")
        form.addRow("Top-k", self.top_k)
        self.top_p = _dspin(0.01, 1.0, 0.01, gen.top_p, "Sample among the most likely tokens covering this mass.")
        form.addRow("Top-p", self.top_p)
        self.seed = _spin(-1, 2**31 - 1, -1 if gen.seed is None else gen.seed,
                          "Random seed for sampling; random = a new one for every reply.")
        self.seed.setSpecialValueText("random")
        form.addRow("Seed", self.seed)
        self.max_tokens = _spin(1, 131072, gen.max_tokens, "The longest reply, in tokens.")
        form.addRow("Max new tokens", self.max_tokens)
        return page

    def _appearance_tab(self, ui: UiPrefs) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.theme = QComboBox()
        for value, label in zip(THEMES, ("Follow the system", "Light", "Dark"), strict=True):
            self.theme.addItem(label, value)
        self.theme.setCurrentIndex(max(0, self.theme.findData(ui.theme)))
        form.addRow("Theme", self.theme)
        self.overlay = QCheckBox("Colour each piece of a reply by where it came from (provenance overlay)")
        self.overlay.setChecked(ui.overlay)
        form.addRow(self.overlay)
        return page

    def _server_tab(self, prefs: ServerPrefs) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.server_enabled = QCheckBox("Local server: an OpenAI-compatible API for editors and scripts")
        self.server_enabled.setChecked(prefs.enabled)
        self.server_enabled.setToolTip("Other programs use this window's models, speculation and settings through "
                                       "the API; their requests take turns with this window's replies.")
        form.addRow(self.server_enabled)
        self.server_port = _spin(1, 65535, prefs.port, "TCP port of the server.")
        form.addRow("Port", self.server_port)
        self.server_network = QCheckBox("Let other computers on the network connect (not only this computer)")
        self.server_network.setChecked(prefs.network)
        form.addRow(self.server_network)
        self.server_key = QLineEdit(prefs.api_key)
        self.server_key.setPlaceholderText("none")
        self.server_key.setToolTip("When set, every request needs 'Authorization: Bearer <key>'.")
        form.addRow("API key", self.server_key)
        self.server_hint = QLabel()
        self.server_hint.setObjectName("hint")
        self.server_hint.setWordWrap(True)
        self.server_hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.server_hint)
        for signal in (self.server_enabled.toggled, self.server_network.toggled):
            signal.connect(lambda _on: self._update_server_hint())
        self.server_port.valueChanged.connect(lambda _v: self._update_server_hint())
        self.server_key.textChanged.connect(lambda _t: self._update_server_hint())
        self._update_server_hint()
        return page

    def server_prefs(self) -> ServerPrefs:
        return ServerPrefs(enabled=self.server_enabled.isChecked(), port=self.server_port.value(),
                           network=self.server_network.isChecked(), api_key=self.server_key.text().strip())

    def _update_server_hint(self) -> None:
        p = self.server_prefs()
        for w in (self.server_port, self.server_network, self.server_key):
            w.setEnabled(p.enabled)
        key = "your key" if p.api_key else "none"
        text = (f"Base URL: http://127.0.0.1:{p.port}/v1 — for example <code>OpenAI(base_url="
                f"\"http://127.0.0.1:{p.port}/v1\", api_key=\"{key}\")</code>. "
                "The status bar shows the address while it runs.")
        if p.network:
            text += ("<br><b>Warning:</b> every computer that can reach this one can use the models"
                     + (" (with the API key)." if p.api_key else " — and no API key is set."))
        self.server_hint.setText(text)

    # ---------------------------------------------------------------- models

    def _fill_models(self, combo: QComboBox, role: str, current: str, *, with_none: bool) -> None:
        model: QStandardItemModel = combo.model()  # type: ignore[assignment]
        model.clear()
        if with_none:
            item = QStandardItem("None — n-gram stage only")
            item.setData(NO_DRAFT, ID_ROLE)
            model.appendRow(item)
        for status in provision.list_models():
            if role not in status.roles:
                continue
            label = status.name
            size = f" ({status.size / 1e9:.2f} GB)" if status.size else ""
            item = QStandardItem(label + size)
            item.setData(status.id, ID_ROLE)
            if not status.present or status.state == "mismatch":
                item.setEnabled(False)
                why = "not downloaded" if not status.present else "failed its checksum"
                item.setText(f"{label} — {why}")
                item.setToolTip(f"{why}: open the model manager to get it")
            model.appendRow(item)
        index = combo.findData(current, ID_ROLE)
        if index < 0 and current:
            # chosen before but unknown now (deleted?): keep it visible rather than silently switch
            item = QStandardItem(f"{current} — not found")
            item.setData(current, ID_ROLE)
            model.appendRow(item)
            index = combo.count() - 1
        combo.setCurrentIndex(max(0, index))

    def check_drafts(self) -> None:
        """Re-check every present draft against the selected target, off the GUI thread."""
        target_path = self._paths.get(self.target.currentData(ID_ROLE))
        drafts = {}
        model: QStandardItemModel = self.draft.model()  # type: ignore[assignment]
        for row in range(model.rowCount()):
            item = model.item(row)
            draft_id = item.data(ID_ROLE)
            if draft_id != NO_DRAFT and draft_id in self._paths:
                drafts[draft_id] = self._paths[draft_id]
                item.setToolTip(CHECKING)
        if self._compat_task is not None:
            self._compat_task.cancel()
        if target_path is None or not drafts:
            self._show_draft_reason()
            return

        def work(_progress, cancel) -> dict[str, str]:
            out = {}
            for draft_id, path in drafts.items():
                if cancel.is_set():
                    break
                try:
                    reason = incompatibility_from_files(str(target_path), str(path))
                except Exception as exc:  # an unreadable header is a reason too
                    reason = f"cannot read its metadata ({exc})"
                if reason:
                    out[draft_id] = reason
            return out

        task = Task(work, "check drafts")
        task.succeeded.connect(lambda result, t=task: self._on_checked(t, result, set(drafts)))
        self._compat_task = task
        self.draft_reason.setText(CHECKING)
        task.start()

    def _on_checked(self, task: Task, incompatible: dict[str, str], checked: set[str]) -> None:
        if task is not self._compat_task:
            return
        self._compat_task = None
        self.incompatible = incompatible
        model: QStandardItemModel = self.draft.model()  # type: ignore[assignment]
        for row in range(model.rowCount()):
            item = model.item(row)
            draft_id = item.data(ID_ROLE)
            if draft_id not in checked:
                continue
            base = model_choice.display_name(draft_id)
            if draft_id in incompatible:
                item.setEnabled(False)
                item.setText(f"{base} — incompatible: {incompatible[draft_id]}")
                item.setToolTip(f"Cannot speculate for this target: {incompatible[draft_id]}")
            else:
                item.setEnabled(True)
                item.setText(base)
                item.setToolTip("Compatible with the chosen target (same vocabulary)")
        if self.draft.currentData(ID_ROLE) in incompatible:
            self.draft.setCurrentIndex(0)  # "None": never leave an incompatible draft selected
        self._show_draft_reason()

    def _show_draft_reason(self) -> None:
        """Say which drafts cannot be used and why, without opening the list."""
        if not self.incompatible:
            self.draft_reason.setText("A draft must share the target's vocabulary; drafts that do not are "
                                      "greyed out in the list, with the reason.")
            return
        rows = "".join(f"<br>✗ <b>{html.escape(model_choice.display_name(i))}</b>: {html.escape(reason)}"
                       for i, reason in sorted(self.incompatible.items()))
        self.draft_reason.setText("Greyed out: these drafts do not share the target's vocabulary." + rows)

    def draft_item_enabled(self, draft_id: str) -> bool | None:
        model: QStandardItemModel = self.draft.model()  # type: ignore[assignment]
        for row in range(model.rowCount()):
            if model.item(row).data(ID_ROLE) == draft_id:
                return model.item(row).isEnabled()
        return None

    def _open_manager(self) -> None:
        parent = self.parent()
        if parent is not None and hasattr(parent, "open_model_manager"):
            parent.open_model_manager()

    # ---------------------------------------------------------------- results

    def _sync_spec_enabled(self, on: bool) -> None:
        for w in (self.mode, self.n_max, self.p_min, self.budget, self.top_k_children, self.beam, self.max_depth):
            w.setEnabled(on)

    def generation(self) -> GenerationSettings:
        mode = self.mode.currentData() if self.spec_enabled.isChecked() else "off"
        spec = SpecSettings(
            mode=mode,
            n_max=self.n_max.value(),
            p_min=round(self.p_min.value(), 4),
            budget=self.budget.value(),
            top_k_children=self.top_k_children.value(),
            beam=self.beam.value(),
            max_depth=self.max_depth.value(),
        )
        return GenerationSettings(
            max_tokens=self.max_tokens.value(),
            temperature=round(self.temperature.value(), 4),
            top_k=self.top_k.value(),
            top_p=round(self.top_p.value(), 4),
            seed=None if self.seed.value() < 0 else self.seed.value(),
            spec=spec,
        )

    def chosen_mode(self) -> str:
        return str(self.mode.currentData())

    def model_choice(self) -> ModelChoice:
        target = str(self.target.currentData(ID_ROLE) or "")
        draft = str(self.draft.currentData(ID_ROLE) or NO_DRAFT)
        return replace(
            self.original_choice,
            target=target,
            draft=draft,
            n_ctx=self.n_ctx.value(),
            threads=self.threads.value(),
            gpu_layers=self.gpu_layers.value(),
            draft_gpu_layers=self.draft_gpu_layers.value(),
            remote=", ".join(_endpoints_or_text(self.remote.text())),
        )

    def ui_prefs(self) -> UiPrefs:
        return replace(self.ui, theme=str(self.theme.currentData()), overlay=self.overlay.isChecked())

    def needs_reload(self) -> bool:
        before = model_choice.pair_ids(self.original_choice)
        after = self.model_choice()
        same_models = before == (after.target, None if after.draft == NO_DRAFT else after.draft)
        o = self.original_choice
        same_resources = (o.n_ctx, o.threads, o.gpu_layers, o.draft_gpu_layers, o.remote) == (
            after.n_ctx, after.threads, after.gpu_layers, after.draft_gpu_layers, after.remote)
        return not (same_models and same_resources)

    def _update_reload_note(self) -> None:
        if not hasattr(self, "draft_gpu_layers"):
            return
        self.reload_note.setText(
            "These changes reload the models when you press OK (a few seconds; your chat stays as it is)."
            if self.needs_reload() else
            "Speculation and generation changes apply to the next reply."
        )

    def restore_defaults(self) -> None:
        gen = GenerationSettings()
        spec = gen.spec
        self.spec_enabled.setChecked(True)
        self.mode.setCurrentIndex(max(0, self.mode.findData(spec.mode)))
        for w, v in ((self.n_max, spec.n_max), (self.budget, spec.budget), (self.top_k_children, spec.top_k_children),
                     (self.beam, spec.beam), (self.max_depth, spec.max_depth), (self.top_k, gen.top_k),
                     (self.max_tokens, gen.max_tokens), (self.seed, -1)):
            w.setValue(v)
        for w, v in ((self.p_min, spec.p_min), (self.temperature, gen.temperature), (self.top_p, gen.top_p)):
            w.setValue(v)
        d = ModelChoice()
        for w, v in ((self.n_ctx, d.n_ctx), (self.threads, d.threads), (self.gpu_layers, d.gpu_layers),
                     (self.draft_gpu_layers, d.draft_gpu_layers)):
            w.setValue(v)
        self.remote.setText(d.remote)
        default = catalog.default_pair()
        for combo, model_id in ((self.target, default.target), (self.draft, default.draft)):
            index = combo.findData(model_id, ID_ROLE)
            if index >= 0:
                combo.setCurrentIndex(index)
        self.theme.setCurrentIndex(0)
        self.overlay.setChecked(True)
        d_server = ServerPrefs()
        self.server_enabled.setChecked(d_server.enabled)
        self.server_port.setValue(d_server.port)
        self.server_network.setChecked(d_server.network)
        self.server_key.setText(d_server.api_key)

    def accept(self) -> None:
        if self._compat_task is not None:
            self._compat_task.cancel()
        self.applied.emit(self.generation(), self.model_choice(), self.ui_prefs())
        self.server_applied.emit(self.server_prefs())
        super().accept()


def _endpoints_or_text(text: str) -> list[str]:
    """Normalised endpoints; text that does not parse is kept as typed (the hint says why,
    and loading the models reports it again rather than silently dropping a server)."""
    try:
        return parse_endpoints(text)
    except TandemError:
        return [text.strip()] if text.strip() else []


def _spin(lo: int, hi: int, value: int, tip: str, step: int = 1) -> QSpinBox:
    w = QSpinBox()
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setValue(value)
    w.setToolTip(tip)
    return w


def _dspin(lo: float, hi: float, step: float, value: float, tip: str) -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setDecimals(2)
    w.setValue(value)
    w.setToolTip(tip)
    return w

