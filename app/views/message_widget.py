"""One message on screen: header (who, versions, actions), the rendered text, and for
answers a footer with the reply's statistics.

Text is rendered in an auto-height QTextBrowser that never loads anything: links are
`link:N` anchors handed to the window (which asks before opening), `copy:N` anchors
copy a code block, and loadResource refuses every resource.
"""

from __future__ import annotations

import math
import time
from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QTextOption
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import icons
from app.render import Rendered, render_markdown, render_plain
from app.speed import speedup_text
from app.store import Message, char_sources
from app.theme import LIGHT, Colors

RENDER_INTERVAL_MS = 50  # streaming text is re-rendered at most this often...
RENDER_BUDGET = 0.2  # ...and rendering may take at most this share of the time: on a 2-core machine
# every millisecond the GUI spends re-rendering Markdown is taken from the engine's decoding
COPIED_MS = 1500  # how long a Copy control says "Copied"

FOOTER_TOOLTIP = (
    "tokens: tokens in this reply\n"
    "tok/s: generation speed of this reply (prompt processing excluded)\n"
    "× plain: speed divided by plain decoding measured on this computer with the same model\n"
    "acceptance: accepted ÷ tested guesses\n"
    "τ: tokens emitted per target-model pass, its own bonus token included (plain decoding: 1)\n"
    "guessed: share of the reply's tokens that were accepted guesses (draft model or n-gram)"
)


class MessageBrowser(QTextBrowser):
    """A QTextBrowser as tall as its text, inert to resources, scrolling its parent."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.viewport().setAutoFillBackground(False)
        self.setStyleSheet("QTextBrowser { background: transparent; }")
        self.document().setDocumentMargin(2)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)

    def loadResource(self, _type: int, _name: QUrl) -> Any:
        return None  # nothing is ever fetched: not images, not stylesheets, not file: URLs

    def _fit(self, size: Any = None) -> None:
        height = self.document().size().height() if size is None else size.height()
        self.setFixedHeight(math.ceil(height) + 4)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._fit()

    def wheelEvent(self, event: Any) -> None:
        event.ignore()  # let the chat's scroll area scroll

    def sizeHint(self) -> QSize:
        return QSize(200, self.height())


class ProvenanceBar(QWidget):
    """A thin bar under an answer: the share of its tokens from each source, at a glance."""

    ORDER = ("draft", "ngram", "recycle", "history", "target")

    def __init__(self, colors: Colors, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colors = colors
        self.counts: dict[str, int] = {}
        self.setFixedHeight(5)

    def set_counts(self, counts: dict[str, int] | None) -> None:
        self.counts = {k: int(v) for k, v in (counts or {}).items() if v}
        total = sum(self.counts.values())
        guessed = total - self.counts.get("target", 0)
        self.setVisible(total > 0 and guessed > 0)  # plain decoding: nothing to show
        self.setToolTip(
            f"{self.counts.get('draft', 0)} tokens accepted from the draft model, "
            f"{self.counts.get('ngram', 0) + self.counts.get('recycle', 0)} from the n-gram stage, "
            f"{self.counts.get('history', 0)} from your earlier replies, "
            f"{self.counts.get('target', 0)} written by the target itself"
        )
        self.update()

    def paintEvent(self, _event: Any) -> None:
        total = sum(self.counts.values())
        if not total:
            return
        painter = QPainter(self)
        x = 0.0
        for source in self.ORDER:
            width = self.width() * self.counts.get(source, 0) / total
            painter.fillRect(QRectF(x, 0, width, self.height()), QColor(self.colors.chart(source)))
            x += width


def footer_text(stats: dict[str, Any] | None, model: dict[str, Any] | None) -> str:
    if not stats:
        return ""
    parts = [f"{stats.get('tokens', 0)} tokens"]
    if stats.get("tokens_per_s"):
        parts.append(f"{stats['tokens_per_s']:.1f} tok/s")
    if speedup_text(stats):  # live estimate only; ≈ when uncertain (app/speed.py)
        parts.append(f"{speedup_text(stats)} plain")
    if stats.get("acceptance_rate") is not None:
        parts.append(f"acceptance {100 * stats['acceptance_rate']:.0f}%")
    if stats.get("tau"):
        parts.append(f"τ {stats['tau']:.2f}")
    prov = stats.get("provenance") or {}
    total = sum(prov.values())
    guessed = total - prov.get("target", 0)
    if total and guessed:
        parts.append(f"{100 * guessed / total:.0f}% guessed")
    mode = (model or {}).get("mode") or stats.get("mode_requested")
    if mode:
        parts.append("speculation off" if mode == "off" else f"mode {mode}")
    return "  ·  ".join(parts)


class MessageWidget(QFrame):
    regenerate_requested = Signal(int)
    edit_submitted = Signal(int, str)
    version_requested = Signal(int, int)  # message id, -1 / +1
    link_activated = Signal(str)  # the real URL
    copied = Signal(str)  # what was copied, for the status bar
    select_requested = Signal(int)  # show this reply's statistics

    def __init__(self, msg: Message, colors: Colors = LIGHT, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.msg = msg
        self.colors = colors
        self.overlay = False
        self.busy = False
        self.text = msg.text
        self.runs: list[list[Any]] = list(msg.provenance or [])
        self.rendered = Rendered("")
        self._render_ms = 0.0  # how long the last render took
        self._render_key: tuple | None = None
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.timeout.connect(self._render)
        self.copied_block: int | None = None  # the code block whose Copy link says "Copied ✓"
        self._copied_timer = QTimer(self)
        self._copied_timer.setSingleShot(True)
        self._copied_timer.setInterval(COPIED_MS)
        self._copied_timer.timeout.connect(self._end_copied)
        self.setObjectName("userCard" if msg.role == "user" else "assistantCard")
        self._build()
        self.set_message(msg)

    # ---------------------------------------------------------------- layout

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(14, 10, 14, 10)
        outer.setSpacing(4)

        header = QHBoxLayout()
        header.setSpacing(6)
        self.role_label = QLabel("You" if self.msg.role == "user" else "Tandem")
        self.role_label.setObjectName("roleLabel")
        header.addWidget(self.role_label)
        self.prev_button = self._tool("prev", "Previous version")
        self.version_label = QLabel()
        self.version_label.setObjectName("metaLabel")
        self.next_button = self._tool("next", "Next version")
        self.prev_button.clicked.connect(lambda: self.version_requested.emit(self.msg.id, -1))
        self.next_button.clicked.connect(lambda: self.version_requested.emit(self.msg.id, +1))
        for w in (self.prev_button, self.version_label, self.next_button):
            header.addWidget(w)
        header.addStretch(1)
        self.state_chip = QLabel()
        self.state_chip.setObjectName("stateChip")
        header.addWidget(self.state_chip)
        self.copy_button = self._tool("copy", "Copy this message")
        self.copy_button.clicked.connect(self._copy_all)
        header.addWidget(self.copy_button)
        if self.msg.role == "user":
            self.edit_button = self._tool("edit", "Edit and ask again (the current answer is kept as another branch)")
            self.edit_button.clicked.connect(self.start_edit)
            header.addWidget(self.edit_button)
            self.regenerate_button = None
        else:
            self.regenerate_button = self._tool("regenerate", "Regenerate (earlier versions are kept)")
            self.regenerate_button.clicked.connect(lambda: self.regenerate_requested.emit(self.msg.id))
            header.addWidget(self.regenerate_button)
            self.edit_button = None
        outer.addLayout(header)

        self.browser = MessageBrowser(self)
        self.browser.anchorClicked.connect(self._on_anchor)
        outer.addWidget(self.browser)

        self.editor = QPlainTextEdit(self)
        self.editor.setVisible(False)
        self.editor.setMinimumHeight(80)
        self.edit_buttons = QWidget(self)
        row = QHBoxLayout(self.edit_buttons)
        row.setContentsMargins(0, 0, 0, 0)
        row.addStretch(1)
        self.cancel_edit_button = QPushButton("Cancel")
        self.cancel_edit_button.clicked.connect(self.cancel_edit)
        self.submit_edit_button = QPushButton("Save && ask")
        self.submit_edit_button.setObjectName("primaryButton")
        self.submit_edit_button.clicked.connect(self._submit_edit)
        row.addWidget(self.cancel_edit_button)
        row.addWidget(self.submit_edit_button)
        self.edit_buttons.setVisible(False)
        outer.addWidget(self.editor)
        outer.addWidget(self.edit_buttons)

        self.prov_bar = ProvenanceBar(self.colors, self)
        self.prov_bar.setVisible(False)
        outer.addWidget(self.prov_bar)
        self.footer = QLabel(self)  # parented now: shown before it joins the layout, a parentless
        self.footer.setObjectName("footerLabel")  # label would flash up as a window and steal focus
        self.footer.setToolTip(FOOTER_TOOLTIP)
        self.footer.setWordWrap(True)
        self.footer.setVisible(self.msg.role == "assistant")
        self.footer.setCursor(Qt.CursorShape.PointingHandCursor)
        self.footer.mousePressEvent = lambda _e: self.select_requested.emit(self.msg.id)  # type: ignore[method-assign]
        outer.addWidget(self.footer)

    def _tool(self, icon_name: str, tip: str) -> QToolButton:
        button = QToolButton(self)
        button.setObjectName("msgAction")
        button.setIcon(icons.icon(icon_name, self.colors.muted))
        button.setIconSize(QSize(16, 16))
        button.setToolTip(tip)
        button.setAutoRaise(True)
        return button

    # ---------------------------------------------------------------- state

    def set_message(self, msg: Message, version: tuple[int, int] = (1, 1)) -> None:
        self.msg = msg
        if msg.text != self.text or not self.rendered.html:
            self.text = msg.text
            self.runs = list(msg.provenance or [])
        self.set_versions(*version)
        self._update_state()
        self._render()

    def set_versions(self, index: int, count: int) -> None:
        many = count > 1
        for w in (self.prev_button, self.version_label, self.next_button):
            w.setVisible(many)
        self.version_label.setText(f"{index} / {count}")
        self.prev_button.setEnabled(many and index > 1 and not self.busy)
        self.next_button.setEnabled(many and index < count and not self.busy)
        self._versions = (index, count)

    def set_busy(self, busy: bool) -> None:
        """While any reply streams, actions that start another are off."""
        self.busy = busy
        for button in (self.regenerate_button, self.edit_button):
            if button is not None:
                button.setEnabled(not busy)
        self.set_versions(*getattr(self, "_versions", (1, 1)))

    def set_overlay(self, on: bool) -> None:
        if on != self.overlay:
            self.overlay = on
            self._render()

    def set_colors(self, colors: Colors) -> None:
        self.colors = colors
        self.prov_bar.colors = colors
        for button, name in ((self.prev_button, "prev"), (self.next_button, "next"), (self.copy_button, "copy"),
                             (self.edit_button, "edit"), (self.regenerate_button, "regenerate")):
            if button is not None:
                button.setIcon(icons.icon(name, colors.muted))
        self._render()

    def set_live(self, text: str, runs: list[list[Any]], stats: dict[str, Any] | None) -> None:
        """Streaming: new text; rendered at most every RENDER_INTERVAL_MS."""
        self.text = text
        self.runs = runs
        if stats is not None:
            self.footer.setText(footer_text(stats, self.msg.model))
            self.prov_bar.set_counts(stats.get("provenance"))
        if not self._render_timer.isActive():
            interval = max(RENDER_INTERVAL_MS, int(self._render_ms / RENDER_BUDGET))
            self._render_timer.start(interval)

    def flush_render(self) -> None:
        if self._render_timer.isActive():
            self._render_timer.stop()
            self._render()

    def _update_state(self) -> None:
        msg = self.msg
        chip, kind, tip = "", "info", ""
        if msg.role == "assistant":
            if msg.streaming:
                chip, tip = "writing…", "The reply is being generated"
            elif msg.interrupted:
                chip, kind = "interrupted", "warn"
                tip = msg.error or "This reply was cut off (the app or the engine stopped); the text so far is kept."
            elif msg.finish == "cancelled":
                chip, tip = "stopped", "You stopped this reply; the text so far is kept."
            elif msg.finish == "error":
                chip, kind, tip = "error", "error", msg.error or "The engine reported an error."
            elif msg.finish == "length":
                chip, tip = "max length", "The reply reached the maximum number of new tokens (see Settings)."
            elif msg.finish == "context":
                chip, kind, tip = "context full", "warn", "The context window is full; raise the context size."
            elif (msg.stats or {}).get("notices"):
                chip, kind = "note", "warn"
                tip = "\n".join(msg.stats["notices"])  # e.g. older messages left out of a long conversation
        self.state_chip.setText(chip)
        self.state_chip.setVisible(bool(chip))
        self.state_chip.setToolTip(tip)
        self.state_chip.setProperty("kind", kind)
        self.state_chip.style().unpolish(self.state_chip)
        self.state_chip.style().polish(self.state_chip)
        if msg.role == "assistant":
            text = footer_text(msg.stats, msg.model)
            if msg.error and msg.finish == "error":
                text = f"{text}  ·  {msg.error}" if text else msg.error
            self.footer.setText(text)
            self.footer.setVisible(bool(text))
            self.prov_bar.set_counts((msg.stats or {}).get("provenance"))

    def _render(self) -> None:
        # the same text, overlay and theme render the same HTML: skip (a branch change
        # updates every message on screen, and most of them did not change)
        key = (self.text, self.overlay, self.colors.name, self.msg.streaming, self.copied_block,
               tuple(tuple(r) for r in self.runs) if self.overlay else None)
        if key == self._render_key:
            return
        started = time.perf_counter()
        self._render_text()
        self._render_ms = 1000 * (time.perf_counter() - started)
        self._render_key = key

    def _render_text(self) -> None:
        if self.msg.role == "user":
            self.rendered = render_plain(self.text, self.colors)
        else:
            sources = char_sources(self.runs, len(self.text)) if self.overlay else None
            shown = self.text if self.text or not self.msg.streaming else "…"
            self.rendered = render_markdown(shown, self.colors, sources, self.copied_block)
        self.browser.setHtml(self.rendered.html)

    # ---------------------------------------------------------------- actions

    def _on_anchor(self, url: QUrl) -> None:
        target = url.toString()
        kind, _, index = target.partition(":")
        if not index.isdigit():
            return
        n = int(index)
        if kind == "copy" and n < len(self.rendered.code_blocks):
            QGuiApplication.clipboard().setText(self.rendered.code_blocks[n])
            self.copied.emit("code block")
            self._show_copied(block=n)
        elif kind == "link" and n < len(self.rendered.links):
            self.link_activated.emit(self.rendered.links[n])

    def _copy_all(self) -> None:
        QGuiApplication.clipboard().setText(self.text)
        self.copied.emit("message")
        self._show_copied(block=None)

    def _show_copied(self, block: int | None) -> None:
        """Say "Copied" where the user clicked, for COPIED_MS (the status bar is easy to miss)."""
        if block is None:
            self.copy_button.setText("Copied")
            self.copy_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        else:
            self.copied_block = block
            self._render()
        self._copied_timer.start()

    def _end_copied(self) -> None:
        self.copy_button.setText("")
        self.copy_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        if self.copied_block is not None:
            self.copied_block = None
            self._render()

    def start_edit(self) -> None:
        if self.msg.role != "user" or self.busy:
            return
        self.editor.setPlainText(self.text)
        self.browser.setVisible(False)
        self.editor.setVisible(True)
        self.edit_buttons.setVisible(True)
        self.editor.setFocus()

    def cancel_edit(self) -> None:
        self.editor.setVisible(False)
        self.edit_buttons.setVisible(False)
        self.browser.setVisible(True)

    def _submit_edit(self) -> None:
        text = self.editor.toPlainText()
        if text.strip():
            self.cancel_edit()
            self.edit_submitted.emit(self.msg.id, text)
