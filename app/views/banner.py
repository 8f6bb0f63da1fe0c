"""A message strip above the input: loading progress, notices, errors, the engine
crash report — each with the buttons that fix it."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QToolButton, QWidget

from app import icons
from app.theme import LIGHT, Colors


class Banner(QFrame):
    def __init__(self, colors: Colors = LIGHT, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.colors = colors
        self.kind = "info"
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 6, 6, 6)
        row.setSpacing(8)
        self.icon = QLabel()
        row.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.label, 1)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # busy indicator
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(False)
        self.progress.setVisible(False)
        row.addWidget(self.progress)
        self.buttons_row = QHBoxLayout()
        row.addLayout(self.buttons_row)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Dismiss")
        self.close_button.clicked.connect(self.hide)
        row.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.buttons: dict[str, QPushButton] = {}
        self.hide()

    def show_message(
        self,
        text: str,
        kind: str = "info",
        *,
        busy: bool = False,
        actions: list[tuple[str, Callable[[], None]]] | None = None,
        closable: bool = True,
    ) -> None:
        self.kind = kind
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(text)
        name = {"info": "info", "warn": "warning", "error": "warning"}[kind]
        colour = {"info": self.colors.muted, "warn": self.colors.warn_text, "error": self.colors.error_text}[kind]
        self.icon.setPixmap(icons.icon(name, colour).pixmap(18, 18))
        self.progress.setRange(0, 0)  # busy indicator; set_progress makes it count
        self.progress.setVisible(busy)
        while self.buttons_row.count():
            widget = self.buttons_row.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        self.buttons = {}
        for label, callback in actions or []:
            button = QPushButton(label)
            button.clicked.connect(callback)
            self.buttons_row.addWidget(button)
            self.buttons[label] = button
        self.close_button.setVisible(closable)
        self.show()

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(min(done, total))
        self.progress.setVisible(True)

    def set_colors(self, colors: Colors) -> None:
        self.colors = colors
