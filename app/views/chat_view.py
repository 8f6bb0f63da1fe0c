"""The conversation on screen: a header (title, system prompt, overlay legend), the
messages of the shown branch, and a friendly empty state for a new chat."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app import icons
from app.store import Message
from app.theme import LIGHT, SOURCE_LABELS, Colors
from app.views.message_widget import MessageWidget

EXAMPLES = (
    "Write a Python function that checks for palindromes, with tests.",
    "Explain lists vs tuples in Python, with examples.",
    "Rewrite as a list comprehension:\nresult = []\nfor x in range(10):\n    result.append(x * x)",
)
STICK_PX = 40  # within this distance of the bottom, new text keeps the view at the bottom


HEADER_COMPACT_PX = 620
HEADER_MIN_PX = 330  # below this header width: short legend words, icon-only System prompt button
LEGEND_TEXT = {"draft": ("draft model", "draft"), "ngram": ("n-gram", "n-gram"), "history": ("history", "history"),
               "target": ("target's own", "target")}


class ElidedLabel(QLabel):
    """A one-line label that ends in "…" when narrow instead of claiming its whole text's
    width as its minimum (a plain QLabel's long text would widen the window)."""

    MIN_PX = 60

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:
        self._full = text
        self.setToolTip(text)
        self._elide()

    def full_text(self) -> str:
        return self._full

    def minimumSizeHint(self) -> QSize:
        return QSize(self.MIN_PX, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        margins = self.contentsMargins()
        width = self.fontMetrics().horizontalAdvance(self._full) + margins.left() + margins.right() + 2
        return QSize(width, super().sizeHint().height())

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._elide()

    def changeEvent(self, event: Any) -> None:
        super().changeEvent(event)  # the stylesheet's font arrives after construction
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight,
                                              max(0, self.contentsRect().width()))
        if shown != super().text():
            super().setText(shown)


class ElidedButton(QPushButton):
    """A push button whose text ends in "…" when the button is narrower than it."""

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.full_text = text

    def sizeHint(self) -> QSize:
        return QSize(self.fontMetrics().horizontalAdvance(self.full_text) + 32, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:
        return QSize(60, super().minimumSizeHint().height())

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        room = max(0, self.width() - 28)  # the style's padding
        self.setText(self.fontMetrics().elidedText(self.full_text, Qt.TextElideMode.ElideRight, room))


class Legend(QWidget):
    """Which colour means which source (shown while the overlay is on)."""

    def __init__(self, colors: Colors, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(6)
        self.chips: dict[str, QLabel] = {}
        for source, (text, _short) in LEGEND_TEXT.items():
            chip = QLabel(text)
            chip.setObjectName("legendChip")
            chip.setToolTip(f"Text with this background: {SOURCE_LABELS[source]}")
            # never squeezed below its words ("dra / n-g / tar"): the header shortens them instead
            chip.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
            self.chips[source] = chip
            row.addWidget(chip)
        self.set_colors(colors)

    def set_compact(self, compact: bool) -> None:
        for source, chip in self.chips.items():
            chip.setText(LEGEND_TEXT[source][1 if compact else 0])

    def set_colors(self, colors: Colors) -> None:
        for source, chip in self.chips.items():
            bg = colors.prov_bg(source) or colors.surface
            chip.setStyleSheet(f"background: {bg}; border: 1px solid {colors.border};")


class EmptyState(QWidget):
    example_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        box = QVBoxLayout(self)
        box.setContentsMargins(40, 40, 40, 40)
        box.addStretch(1)
        self.examples: list[ElidedButton] = []
        title = QLabel("Ask anything")
        title.setObjectName("heroTitle")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel()
        self.text.setObjectName("heroText")
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text.setMaximumWidth(640)
        # no alignment flag on the item: an aligned item gets its sizeHint's height, not the
        # height its wrapped lines need at the width it is given (the text was clipped)
        self.text.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        box.addWidget(title)
        box.addWidget(_centred(self.text))
        box.addSpacing(12)
        for example in EXAMPLES:
            button = ElidedButton(example.splitlines()[0])
            button.setToolTip(example)
            button.setCursor(Qt.CursorShape.PointingHandCursor)
            button.clicked.connect(lambda _checked=False, e=example: self.example_chosen.emit(e))
            button.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)  # elided when narrow
            self.examples.append(button)
            box.addWidget(_centred(button, grow=False))
        box.addStretch(2)
        self.set_state(overlay=False, speculation=True)

    def set_state(self, *, overlay: bool, speculation: bool) -> None:
        """The welcome text says what the user can do from here, not what is already done."""
        intro = ("Tandem answers with the large model and lets a small draft model and an n-gram table guess ahead. "
                 "The large model checks all guesses in one pass and keeps the ones it agrees with, so the answer "
                 "is exactly what it would have written alone, only sooner.")
        if not speculation:
            hint = ("Speculation is off, so the large model writes every word itself; switch it on in the toolbar "
                    "to compare the speed.")
        elif overlay:
            hint = ("The overlay is on: words the draft model guessed are shaded green, n-gram guesses blue. "
                    "The statistics panel shows what the guessing buys.")
        else:
            hint = ("Turn on the provenance overlay in the toolbar to see which words were guessed, and watch the "
                    "statistics panel to see what the guessing buys.")
        self.text.setText(f"{intro} {hint}")


def _centred(widget: QWidget, max_width: int = 640, grow: bool = True) -> QWidget:
    """`widget` centred in a row, at most max_width wide (and, unless `grow`, no wider
    than its size hint), shrinking with the window."""
    holder = QWidget()
    row = QHBoxLayout(holder)
    row.setContentsMargins(0, 0, 0, 0)
    row.addStretch(1)
    widget.setMaximumWidth(max_width)
    row.addWidget(widget, 100 if grow else 0)
    row.addStretch(1)
    return holder


class ChatView(QWidget):
    regenerate_requested = Signal(int)
    edit_submitted = Signal(int, str)
    version_requested = Signal(int, int)
    link_activated = Signal(str)
    copied = Signal(str)
    system_prompt_requested = Signal()
    example_chosen = Signal(str)
    message_selected = Signal(int)

    def __init__(self, colors: Colors = LIGHT, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colors = colors
        self.overlay = False
        self.speculation = True
        self.busy = False
        self.widgets: dict[int, MessageWidget] = {}
        self._stick = True

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)

        header = QWidget()
        header.setObjectName("chatHeader")
        row = QHBoxLayout(header)
        row.setContentsMargins(14, 8, 10, 8)
        self.title = ElidedLabel("New chat")
        self.title.setObjectName("chatTitle")
        row.addWidget(self.title, 1)
        self.legend = Legend(colors)
        row.addWidget(self.legend)
        self.system_button = QPushButton("System prompt")
        self.system_button.setIcon(icons.icon("system-prompt", colors.text))
        self.system_button.setToolTip("Instructions the model sees before this conversation")
        self.system_button.clicked.connect(self.system_prompt_requested)
        row.addWidget(self.system_button)
        self.header = header
        # its minimum is what the compact form needs (resizeEvent switches to it below
        # HEADER_COMPACT_PX), not the full labels': those would stop the window at ~910 px
        header.setMinimumWidth(HEADER_MIN_PX)
        self._has_system_prompt = False
        self.compact = False
        layout.addWidget(header)

        self.scroll = QScrollArea()
        self.scroll.setObjectName("chatScroll")
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.canvas = QWidget()
        self.canvas.setObjectName("chatCanvas")
        self.column = QVBoxLayout(self.canvas)
        self.column.setContentsMargins(18, 14, 18, 14)
        self.column.setSpacing(10)
        self.empty = EmptyState()
        self.empty.example_chosen.connect(self.example_chosen)
        self.column.addWidget(self.empty)
        self.column.addStretch(1)
        self.scroll.setWidget(self.canvas)
        layout.addWidget(self.scroll, 1)
        bar = self.scroll.verticalScrollBar()
        bar.valueChanged.connect(self._track_stick)
        bar.rangeChanged.connect(self._keep_bottom)
        self.set_overlay(False)

    # ---------------------------------------------------------------- content

    def set_title(self, title: str, has_system_prompt: bool) -> None:
        self.title.setText(title)
        self._has_system_prompt = has_system_prompt
        self._label_system_button()

    def _label_system_button(self) -> None:
        mark = " ✓" if self._has_system_prompt else ""
        self.system_button.setText(mark.strip() if self.compact else f"System prompt{mark}")
        tip = "Instructions the model sees before this conversation"
        self.system_button.setToolTip(f"System prompt: {tip[0].lower()}{tip[1:]}" if self.compact else tip)

    def set_compact(self, compact: bool) -> None:
        """Narrow window: shorter legend words and an icon-only System prompt button,
        so the title keeps some room and nothing is cut mid-word."""
        if compact != self.compact:
            self.compact = compact
            self.legend.set_compact(compact)
            self._label_system_button()

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self.set_compact(self.width() < HEADER_COMPACT_PX)

    def show_branch(self, messages: list[Message], versions: dict[int, tuple[int, int]],
                    live: dict[int, tuple[str, list, dict | None]] | None = None) -> None:
        """Show these messages.  Widgets of the unchanged leading messages are kept (the
        usual case is a message appended at the end); the rest are rebuilt."""
        shown = list(self.widgets)
        keep = 0
        while keep < min(len(shown), len(messages)) and shown[keep] == messages[keep].id:
            keep += 1
        for msg_id in shown[keep:]:
            widget = self.widgets.pop(msg_id)
            # not setParent(None): that turns the widget into a hidden top-level window,
            # which costs the main window its activation (and the input box its focus)
            widget.hide()
            self.column.removeWidget(widget)
            widget.deleteLater()
        self.empty.setVisible(not messages)
        for i, msg in enumerate(messages):
            widget = self.widgets.get(msg.id) if i < keep else None
            if widget is None:
                widget = self._new_widget(msg)
            widget.set_message(msg, versions.get(msg.id, (1, 1)))
            widget.set_busy(self.busy)
            if live and msg.id in live:
                text, runs, stats = live[msg.id]
                widget.set_live(text, runs, stats)
        self._stick = True
        self.scroll_to_bottom()

    def _new_widget(self, msg: Message) -> MessageWidget:
        widget = MessageWidget(msg, self.colors, self.canvas)
        widget.set_overlay(self.overlay)
        widget.regenerate_requested.connect(self.regenerate_requested)
        widget.edit_submitted.connect(self.edit_submitted)
        widget.version_requested.connect(self.version_requested)
        widget.link_activated.connect(self.link_activated)
        widget.copied.connect(self.copied)
        widget.select_requested.connect(self.message_selected)
        widget.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.column.insertWidget(self.column.count() - 1, widget)  # before the closing stretch
        self.widgets[msg.id] = widget
        return widget

    def update_live(self, msg_id: int, text: str, runs: list[list[Any]], stats: dict[str, Any] | None) -> None:
        widget = self.widgets.get(msg_id)
        if widget is not None:
            widget.set_live(text, runs, stats)

    def update_message(self, msg: Message, version: tuple[int, int]) -> None:
        widget = self.widgets.get(msg.id)
        if widget is not None:
            widget.set_message(msg, version)

    def message_widget(self, msg_id: int) -> MessageWidget | None:
        return self.widgets.get(msg_id)

    def flush(self) -> None:
        """Render pending streaming text now (tests, screenshots)."""
        for widget in self.widgets.values():
            widget.flush_render()

    # ---------------------------------------------------------------- options

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        for widget in self.widgets.values():
            widget.set_busy(busy)

    def set_overlay(self, on: bool) -> None:
        self.overlay = on
        self.legend.setVisible(on)
        self.empty.set_state(overlay=on, speculation=self.speculation)
        for widget in self.widgets.values():
            widget.set_overlay(on)

    def set_speculation(self, on: bool) -> None:
        self.speculation = on
        self.empty.set_state(overlay=self.overlay, speculation=on)

    def set_colors(self, colors: Colors) -> None:
        self.colors = colors
        self.legend.set_colors(colors)
        self.system_button.setIcon(icons.icon("system-prompt", colors.text))
        for widget in self.widgets.values():
            widget.set_colors(colors)

    # ---------------------------------------------------------------- scrolling

    def _track_stick(self, value: int) -> None:
        bar = self.scroll.verticalScrollBar()
        self._stick = value >= bar.maximum() - STICK_PX

    def _keep_bottom(self, _lo: int, hi: int) -> None:
        if self._stick:
            self.scroll.verticalScrollBar().setValue(hi)

    def scroll_to_bottom(self) -> None:
        bar = self.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())

