"""The model manager: catalog and local models with size, source and checksum status;
download (with progress, cancel, resume), import a local GGUF, verify, delete.

All provisioning runs in a background Task through engine.models.provision's public API;
the dialog only shows progress and results.  A cancelled download keeps its partial
file, and the next Download resumes it (engine.models.provision does the resuming).
"""

from __future__ import annotations

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
from engine.models.paths import models_dir

ID_ROLE = Qt.ItemDataRole.UserRole
COLUMNS = ("Model", "Role", "Size", "Source", "Status")
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


class ModelManager(QDialog):
    models_changed = Signal()
    use_draft = Signal(str)  # the user accepted the optimized draft: make it the draft setting

    def __init__(self, in_use: Callable[[], set[str]] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(900, 460)
        self.in_use = in_use or (lambda: set())
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
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._sync_buttons)
        box.addWidget(self.table, 1)

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
        box.addWidget(self.progress)
        self.refresh()

    # ---------------------------------------------------------------- table

    def refresh(self) -> None:
        selected = self.selected_id()
        self.table.setRowCount(0)
        in_use = self.in_use()
        for status in provision.list_models():
            row = self.table.rowCount()
            self.table.insertRow(row)
            name = status.name + ("  (in use)" if status.id in in_use else "")
            values = (
                name,
                " / ".join(status.roles),
                human_size(status.size),
                source_text(status.id, status.source),
                STATE_TEXT.get(status.state, status.state),
            )
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setData(ID_ROLE, status.id)
                item.setToolTip(f"{status.id}\n{status.path or ''}\nlicence: {status.license or 'see the file'}")
                self.table.setItem(row, col, item)
            if status.id == selected:
                self.table.selectRow(row)
        self._sync_buttons()

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
                return self.table.item(row, 4).text()
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
        self.progress.label.setText("Starting…")
        self._sync_buttons()
        return task.start()

    def _finished(self, result: Any, text: str, *, error: bool) -> None:
        self.task = None
        self.last_result = result
        self.progress.set_idle(text, error=error)
        if not error and result is not None:
            self.progress.bar.setValue(1000)
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
        super().closeEvent(event)
