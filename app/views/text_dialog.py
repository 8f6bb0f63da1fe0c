"""A multi-line text editor with OK/Cancel (the system prompt), opened with open()
so nothing blocks the event loop."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QVBoxLayout, QWidget


class TextDialog(QDialog):
    def __init__(self, title: str, hint: str, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(560, 320)
        box = QVBoxLayout(self)
        label = QLabel(hint)
        label.setWordWrap(True)
        box.addWidget(label)
        self.edit = QPlainTextEdit(text)
        box.addWidget(self.edit, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        box.addWidget(buttons)

    def text(self) -> str:
        return self.edit.toPlainText()
