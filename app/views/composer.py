"""The input box: Enter sends, Shift+Enter starts a new line; the button is Send while
idle and Stop while a reply streams."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from app import icons
from app.theme import LIGHT, Colors

MAX_LINES = 10
PLACEHOLDER = "Message Tandem…  (Enter sends, Shift+Enter adds a line)"
SHORT_PLACEHOLDER = "Message Tandem…"


class ComposerEdit(QPlainTextEdit):
    submit = Signal()
    focus_changed = Signal(bool)

    def keyPressEvent(self, event: Any) -> None:
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not (event.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.submit.emit()
            return
        if enter:
            self.insertPlainText("\n")  # Shift+Enter: a new line, never a send
            return
        super().keyPressEvent(event)

    def focusInEvent(self, event: Any) -> None:
        super().focusInEvent(event)
        self.focus_changed.emit(True)

    def focusOutEvent(self, event: Any) -> None:
        super().focusOutEvent(event)
        self.focus_changed.emit(False)


class Composer(QFrame):
    send_requested = Signal(str)
    stop_requested = Signal()

    def __init__(self, colors: Colors = LIGHT, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("composer")
        self.colors = colors
        self.busy = False
        self.can_send = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(10, 6, 8, 6)
        outer.setSpacing(2)
        row = QHBoxLayout()
        self.edit = ComposerEdit()
        self.edit.setObjectName("composerEdit")
        self.edit.setPlaceholderText(PLACEHOLDER)
        self.edit.setToolTip("Enter sends, Shift+Enter adds a line")
        self.edit.setTabChangesFocus(True)
        self.edit.submit.connect(self._submit)
        self.edit.textChanged.connect(self._fit)
        self.edit.focus_changed.connect(self._on_focus)
        row.addWidget(self.edit, 1)
        self.button = QPushButton("Send")
        self.button.setObjectName("sendButton")
        self.button.clicked.connect(self._on_button)
        self.button.setCursor(Qt.CursorShape.PointingHandCursor)
        row.addWidget(self.button, 0, Qt.AlignmentFlag.AlignBottom)
        outer.addLayout(row)
        self.hint = QLabel()
        self.hint.setObjectName("hint")
        outer.addWidget(self.hint)
        self._fit()
        self._refresh()

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        self._refresh()

    def set_can_send(self, ok: bool, why_not: str = "") -> None:
        self.can_send = ok
        self.hint.setText("" if ok else why_not)
        self.hint.setVisible(bool(why_not) and not ok)
        self._refresh()

    def set_colors(self, colors: Colors) -> None:
        self.colors = colors
        self._refresh()

    def clear(self) -> None:
        self.edit.clear()

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        self.edit.setPlainText(text)
        self.edit.setFocus()

    def _refresh(self) -> None:
        if self.busy:
            self.button.setText("Stop")
            self.button.setToolTip("Stop the reply now and keep what has been written (Esc)")
            self.button.setIcon(icons.icon("stop", self.colors.accent_text))
            self.button.setEnabled(True)
        else:
            self.button.setText("Send")
            self.button.setToolTip("Send (Enter)")
            self.button.setIcon(icons.icon("send", self.colors.accent_text))
            self.button.setEnabled(self.can_send)
        self.button.setProperty("stop", self.busy)
        self.button.style().unpolish(self.button)
        self.button.style().polish(self.button)

    def _on_button(self) -> None:
        if self.busy:
            self.stop_requested.emit()
        else:
            self._submit()

    def _submit(self) -> None:
        text = self.text()
        if self.busy or not self.can_send or not text.strip():
            return
        self.send_requested.emit(text)  # the window clears the box once the message is accepted

    def _fit(self) -> None:
        # grow with the text up to MAX_LINES, then scroll
        lines = max(1, min(MAX_LINES, self.edit.document().blockCount()))
        line = self.edit.fontMetrics().lineSpacing()
        self.edit.setFixedHeight(lines * line + 14)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        # a narrow box gets the short placeholder rather than one cut off mid-word
        room = self.edit.viewport().width() - 2 * self.edit.document().documentMargin()
        fits = self.edit.fontMetrics().horizontalAdvance(PLACEHOLDER) <= room
        self.edit.setPlaceholderText(PLACEHOLDER if fits else SHORT_PLACEHOLDER)

    def _on_focus(self, focused: bool) -> None:
        self.setProperty("focused", focused)
        self.style().unpolish(self)
        self.style().polish(self)
