"""The model manager: catalog and local models with size, source and checksum status;
download (with progress, cancel, resume), import a local GGUF, verify, delete.

All provisioning runs in a background Task through engine.models.provision's public API;
the dialog only shows progress and results.  A cancelled download keeps its partial
file, and the next Download resumes it (engine.models.provision does the resuming).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.jobs import Task
from engine.models import catalog, provision
from engine.models.compat import incompatibility_from_files
from engine.models.paths import models_dir

ID_ROLE = Qt.ItemDataRole.UserRole
COLUMNS = ("Model", "Role", "Size", "Source", "Status", "With the target")
STATUS_COL, PAIR_COL = 4, 5
# file bytes per weight, as llama.cpp's quantisations come out in practice (embeddings included)
BITS_PER_WEIGHT = {"Q4_0": 4.6, "Q4_1": 5.0, "Q4_K_S": 4.6, "Q4_K_M": 4.9, "Q5_K_M": 5.7, "Q6_K": 6.6,
                   "Q8_0": 8.5, "F16": 16.0}
LEGEND = (
    "<b>(in use)</b>: loaded right now. <b>(base)</b>: a base model, not instruction-tuned: fine as a draft, "
    "not for chatting. <b>With the target</b>: whether a draft can speculate for the chosen target, which "
    "needs the same vocabulary. Sizes marked ≈ are estimates from the parameter count; the Hub gives the "
    "exact size when the download starts."
)
BASE_TIP = "(base): a base model, not instruction-tuned. It works as a draft (it only guesses ahead); " \
           "it is not meant to be chatted with."
STATE_TEXT = {
    "verified": "✓ verified",
    "unverified": "present (checksum not checked yet)",
    "mismatch": "✗ checksum mismatch",
    "missing": "not downloaded",
    "unknown": "present (no checksum known yet)",
}
STAGE_TEXT = {
    "source": "Finding a source",
    "download": "Downloading",
    "assemble": "Assembling",
    "verify": "Checking SHA-256",
    "done": "Done",
}


def optimized_draft_id() -> str | None:
    """The catalog's derived variant of the default pair's draft, if it has one and
    the source draft is installed (nothing to derive from otherwise)."""
    base = catalog.default_pair().draft
    derived = next((m.id for m in catalog.models()
                    if (src := m.source("derived")) is not None and src.base == base), None)
    if derived is None or not any(s.id == base and s.present for s in provision.list_models()):
        return None
    return derived


def human_size(n: int | None) -> str:
    if not n:
        return "unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}" if unit == "GB" else f"{n / scale:.1f} {unit}"
    return f"{n} B"


def estimated_size(params: str, quant: str) -> int | None:
    """Bytes a GGUF of `params` ("7B", "270M") at `quant` takes, roughly: for catalog
    entries whose exact size only the Hub knows."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([BM])\s*", params or "")
    bits = BITS_PER_WEIGHT.get((quant or "").upper())
    if m is None or bits is None:
        return None
    count = float(m.group(1)) * (1e9 if m.group(2) == "B" else 1e6)
    return int(count * bits / 8)


def size_text(model_id: str, size: int | None, path: Any) -> tuple[str, str]:
    """(cell text, tooltip): the catalog's or the file's exact size, else an estimate."""
    if size:
        return human_size(size), "exact size (from the catalog, or the file on disk)"
    if path is not None:
        try:
            return human_size(path.stat().st_size), "size of the file on disk"
        except OSError:
            pass
    entry = catalog.find(model_id)
    guess = estimated_size(entry.params, entry.quant) if entry is not None else None
    if guess:
        return f"≈ {human_size(guess)}", (f"estimated from {entry.params} parameters at {entry.quant}; the Hub "
                                          "gives the exact size when the download starts")
    return "unknown", "the Hub gives the size when the download starts"


def pairing(draft_id: str, target_id: str | None) -> tuple[str | None, bool]:
    """(why this draft cannot pair with the target, or None if it can; whether the
    answer is final): from the catalog's tokenizer tags; files are checked later."""
    if not target_id:
        return None, False
    draft, target = catalog.find(draft_id), catalog.find(target_id)
    if draft is None or target is None:
        return None, False  # an imported file: only its vocabulary can tell
    if draft.tokenizer != target.tokenizer:
        return f"different tokenizer ({draft.tokenizer} vs {target.tokenizer})", True
    return None, False


def describe_progress(stage: str, done: int | None, total: int | None, message: str) -> str:
    what = STAGE_TEXT.get(stage, stage.capitalize())
    if total:
        return f"{what}: {human_size(done or 0)} of {human_size(total)} — {message}".rstrip(" —")
    return f"{what} — {message}".rstrip(" —")


def source_text(model_id: str, source: str) -> str:
    if source == "local":
        local = next((m for m in provision.local_models() if m.id == model_id), None)
        return f"your file: {local.path}" if local else "your file"
    entry = catalog.find(model_id)
    if entry is None:
        return "catalog"
    kinds = [s.kind for s in entry.sources]
    return " or ".join({"hub": "Hugging Face Hub", "pypi": "PyPI"}.get(k, k) for k in kinds)


class ProgressPanel(QWidget):
    """A progress bar with a line of text and a Cancel button, for one Task at a time."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setTextVisible(False)  # "0%" on an idle bar reads like a stalled download
        row.addWidget(self.bar, 1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.cancel_button)
        box.addLayout(row)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.addWidget(self.label)

    def on_progress(self, stage: str, done: Any, total: Any, message: str) -> None:
        self.bar.setTextVisible(bool(total))
        if total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * min(1.0, (done or 0) / total)))
        else:
            self.bar.setRange(0, 0)  # busy: size unknown
        self.label.setText(describe_progress(stage, done, total, message))

    def set_idle(self, text: str = "", *, error: bool = False) -> None:
        self.bar.setRange(0, 1000)
        self.cancel_button.setEnabled(False)
        self.label.setText(text)
        self.label.setStyleSheet("color: palette(bright-text);" if error else "")

    def show_running(self, running: bool) -> None:
        """The bar and Cancel only while a job runs (an idle empty bar looks stalled);
        the last result's line stays."""
        self.bar.setVisible(running)
        self.cancel_button.setVisible(running)


class ModelManager(QDialog):
    models_changed = Signal()
    use_draft = Signal(str)  # the user accepted the optimized draft: make it the draft setting

    def __init__(self, in_use: Callable[[], set[str]] | None = None, parent: QWidget | None = None,
                 target: Callable[[], str | None] | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(1060, 540)
        self.in_use = in_use or (lambda: set())
        self.target = target or (lambda: None)
        self.pair_problems: dict[str, str | None] = {}  # model id -> why it cannot pair (None: it can)
        self._compat_task: Task | None = None
        self._pair_target: str | None = None
        self.task: Task | None = None
        self.task_kind = ""
        self.last_result: Any = None
        box = QVBoxLayout(self)
        intro = QLabel(
            f"Models live in <b>{models_dir()}</b>. Downloads are checked against their SHA-256 before use; a file "
            "that fails is moved to quarantine and never loaded. A cancelled download resumes where it stopped."
        )
        intro.setWordWrap(True)
        box.addWidget(intro)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(30)  # room around each row's text
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setStyleSheet("QTableWidget::item { padding: 0 8px; } QHeaderView::section { padding: 4px 8px; }")
        header = self.table.horizontalHeader()
        for col in range(len(COLUMNS) - 1):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(PAIR_COL, QHeaderView.ResizeMode.Stretch)  # the longest text, last
        header.setMinimumSectionSize(70)
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.table.horizontalHeaderItem(PAIR_COL).setToolTip(
            "Can this draft speculate for the chosen target? It needs the target's vocabulary.")
        self.table.itemSelectionChanged.connect(self._sync_buttons)
        box.addWidget(self.table, 1)
        self.legend = QLabel(LEGEND)
        self.legend.setObjectName("hint")
        self.legend.setWordWrap(True)
        box.addWidget(self.legend)

        row = QHBoxLayout()
        self.download_button = QPushButton("Download")
        self.download_button.setToolTip("Download and verify the selected model (resumes a cancelled download)")
        self.download_button.clicked.connect(self.download_selected)
        self.verify_button = QPushButton("Verify")
        self.verify_button.setToolTip("Read the whole file again and compare its SHA-256")
        self.verify_button.clicked.connect(self.verify_selected)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_selected)
        self.import_button = QPushButton("Import GGUF…")
        self.import_button.setToolTip("Use a GGUF file you already have (it stays where it is)")
        self.import_button.clicked.connect(self.import_file)
        self.optimize_button = QPushButton("Optimize draft for this computer")
        self.optimize_button.setToolTip(
            "Re-quantize the installed draft model into a variant that decodes faster here (seconds, no download); "
            "the result is checked against the catalog's SHA-256. The draft never changes answers, only speed.")
        self.optimize_button.clicked.connect(self.optimize_draft)
        for b in (self.download_button, self.verify_button, self.delete_button, self.import_button,
                  self.optimize_button):
            row.addWidget(b)
        row.addStretch(1)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        row.addWidget(close)
        box.addLayout(row)
        self.progress = ProgressPanel()
        self.progress.cancel_button.clicked.connect(self.cancel)
        self.progress.show_running(False)
        box.addWidget(self.progress)
        self.refresh()

    # ---------------------------------------------------------------- table

    def refresh(self) -> None:
        selected = self.selected_id()
        self.table.setRowCount(0)
        in_use = self.in_use()
        target_id = self.target()
        if target_id != self._pair_target:  # another target: every answer changes
            self.pair_problems.clear()
            self._pair_target = target_id
        to_check: dict[str, str] = {}  # draft id -> file, checked against the target's file
        target_path = None
        statuses = provision.list_models()
        for status in statuses:
            if status.id == target_id and status.present:
                target_path = status.path
        for status in statuses:
            row = self.table.rowCount()
            self.table.insertRow(row)
            name = status.name + ("  (in use)" if status.id in in_use else "")
            size, size_tip = size_text(status.id, status.size, status.path)
            pair, pair_tip = self._pair_cell(status, target_id)
            values = (
                name,
                " / ".join(status.roles) or "draft or target",
                size,
                source_text(status.id, status.source),
                STATE_TEXT.get(status.state, status.state),
                pair,
            )
            tip = f"{status.id}\n{status.path or ''}\nlicence: {status.license or 'see the file'}"
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setData(ID_ROLE, status.id)
                item.setToolTip({2: size_tip, PAIR_COL: pair_tip}.get(col, tip))
                self.table.setItem(row, col, item)
            if "(base)" in status.name:
                self.table.item(row, 0).setToolTip(f"{BASE_TIP}\n\n{tip}")
            if (status.id != target_id and status.present and status.path is not None and target_path is not None
                    and ("draft" in status.roles or status.source == "local") and status.id not in self.pair_problems):
                to_check[status.id] = str(status.path)
            if status.id == selected:
                self.table.selectRow(row)
        self._sync_buttons()
        if to_check and target_path is not None:
            self._check_pairs(str(target_path), to_check)

    def _pair_cell(self, status: Any, target_id: str | None) -> tuple[str, str]:
        """The "With the target" cell: can this model draft for the chosen target?"""
        target_name = catalog.find(target_id).name if target_id and catalog.find(target_id) else (target_id or "")
        if not target_id:
            return "", "no target chosen"
        if status.id == target_id:
            return "the target", "the chosen target model (Settings → Models)"
        if "draft" not in status.roles and status.source != "local":
            return "—", "a target model, not a draft"
        if status.id in self.pair_problems:  # the files' vocabularies were compared
            reason = self.pair_problems[status.id]
        else:
            reason, final = pairing(status.id, target_id)
            if reason is None and not final and status.source == "local" and not status.present:
                return "?", "the file is missing, so its vocabulary cannot be read"
        if reason is not None:
            return f"✗ cannot pair: {reason}", f"Cannot speculate for {target_name}: {reason}"
        return "✓ can pair", f"Shares the vocabulary of {target_name}, so it can draft for it"

    def _check_pairs(self, target_path: str, drafts: dict[str, str]) -> None:
        """Compare each present draft's vocabulary with the target's, off the GUI thread
        (the rule engine/models/compat.py applies when the models load)."""
        if self._compat_task is not None:
            return  # the running check refreshes the table when it ends

        def work(_progress: Any, cancel: Any) -> dict[str, str | None]:
            out: dict[str, str | None] = {}
            for draft_id, path in drafts.items():
                if cancel.is_set():
                    break
                try:
                    out[draft_id] = incompatibility_from_files(target_path, path)
                except Exception as exc:  # an unreadable header is a reason too
                    out[draft_id] = f"cannot read its metadata ({exc})"
            return out

        task = Task(work, "check pairs")
        task.succeeded.connect(lambda result, t=task: self._on_pairs_checked(t, result))
        task.finished.connect(lambda t=task: self._end_pair_check(t))
        self._compat_task = task
        task.start()

    def _on_pairs_checked(self, task: Task, result: dict[str, str | None]) -> None:
        if task is not self._compat_task:
            return
        self._compat_task = None
        if self._pair_target == self.target():
            self.pair_problems.update(result)
        self.refresh()

    def _end_pair_check(self, task: Task) -> None:
        if task is self._compat_task:
            self._compat_task = None

    def pair_of(self, model_id: str) -> str:
        """The "With the target" column's text for a model (what the user sees)."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(ID_ROLE) == model_id:
                return self.table.item(row, PAIR_COL).text()
        return ""

    def selected_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return str(item.data(ID_ROLE)) if item else None

    def select(self, model_id: str) -> None:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(ID_ROLE) == model_id:
                self.table.selectRow(row)
                return

    def status_of(self, model_id: str) -> str:
        """The Status column's text for a model (what the user sees)."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(ID_ROLE) == model_id:
                return self.table.item(row, STATUS_COL).text()
        return ""

    def _sync_buttons(self) -> None:
        model_id = self.selected_id()
        status = next((m for m in provision.list_models() if m.id == model_id), None) if model_id else None
        idle = self.task is None
        self.download_button.setEnabled(idle and status is not None and status.source == "catalog"
                                        and status.state != "verified")
        self.verify_button.setEnabled(idle and status is not None and status.present)
        self.delete_button.setEnabled(idle and status is not None and (status.present or status.source == "local"))
        self.import_button.setEnabled(idle)
        self.optimize_button.setEnabled(idle and optimized_draft_id() is not None)

    # ---------------------------------------------------------------- actions

    def _run(self, kind: str, fn: Callable[..., Any], done_text: Callable[[Any], str]) -> Task:
        task = Task(fn, kind)
        self.task, self.task_kind = task, kind
        task.progress.connect(self.progress.on_progress)
        task.succeeded.connect(lambda result: self._finished(result, done_text(result), error=False))
        task.failed.connect(lambda message, _kind: self._finished(None, message, error=True))
        task.cancelled.connect(lambda: self._finished(
            None, "Cancelled. The partial download is kept; press Download to resume.", error=False))
        self.progress.cancel_button.setEnabled(True)
        self.progress.show_running(True)
        self.progress.label.setText("Starting…")
        self._sync_buttons()
        return task.start()

    def _finished(self, result: Any, text: str, *, error: bool) -> None:
        self.task = None
        self.last_result = result
        self.progress.set_idle(text, error=error)
        self.progress.show_running(False)
        if not error and result is not None:
            self.progress.bar.setValue(1000)
        self.pair_problems.clear()  # a new or replaced file: compare its vocabulary again
        self.refresh()
        self.models_changed.emit()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.progress.label.setText("Cancelling…")

    def download_selected(self) -> Task | None:
        model_id = self.selected_id()
        if model_id is None or self.task is not None:
            return None
        return self._run(
            "download",
            lambda progress, cancel: provision.pull(model_id, progress, cancel),
            lambda path: f"Downloaded and verified: {path}",
        )

    def optimize_draft(self) -> Task | None:
        """Derive the catalog's optimized draft from the installed one (a background job
        like a download), then offer to use it."""
        model_id = optimized_draft_id()
        if model_id is None or self.task is not None:
            return None
        self.select(model_id)
        task = self._run(
            "derive",
            lambda progress, cancel: provision.pull(model_id, progress, cancel),
            lambda path: f"Optimized draft ready and verified: {path}",
        )
        task.succeeded.connect(lambda _path: self._offer_draft(model_id))
        return task

    def _offer_draft(self, model_id: str) -> None:
        name = catalog.get(model_id).name
        if self.confirm("Use the optimized draft?",
                        f"Use {name} as the draft model? Answers stay exactly the same; `auto` uses the draft "
                        "only where its measured cost says it pays."):
            self.use_draft.emit(model_id)

    def verify_selected(self) -> Task | None:
        model_id = self.selected_id()
        if model_id is None or self.task is not None:
            return None
        return self._run(
            "verify",
            lambda progress, cancel: provision.verify(model_id, rehash=True, progress=progress, cancel=cancel),
            lambda result: result.message,
        )

    def delete_selected(self) -> None:
        model_id = self.selected_id()
        if model_id is None or self.task is not None:
            return
        warning = " It is loaded right now; the engine keeps using it until the models are reloaded." \
            if model_id in self.in_use() else ""
        local = model_id.startswith("local:")
        question = ("Forget this imported model? Your file stays where it is." if local
                    else "Delete this model's file from this computer?") + warning
        if not self.confirm("Delete model", question):
            return
        try:
            removed = provision.delete(model_id)
        except Exception as exc:  # a locked file on Windows, permissions: say so, keep the dialog usable
            self.progress.set_idle(f"Could not delete: {exc}", error=True)
            return
        self.progress.set_idle("Forgotten." if local else f"Deleted {len(removed)} file(s).")
        self.refresh()
        self.models_changed.emit()

    def import_file(self, path: str | None = None) -> Task | None:
        if self.task is not None:
            return None
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF model", "", "GGUF models (*.gguf)")
            if not path:
                return None
        return self._run(
            "import",
            lambda progress, cancel: provision.add_local(path, progress, cancel),
            lambda model: f"Imported {model.name} as {model.id}. Pick it in Settings → Models.",
        )

    def confirm(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: Any) -> None:
        # closing the manager cancels its job; a download resumes next time
        if self.task is not None:
            self.task.cancel()
        if self._compat_task is not None:
            self._compat_task.cancel()
        super().closeEvent(event)
