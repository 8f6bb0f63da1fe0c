"""Small charts drawn with QPainter (Qt Charts is GPL; these need nothing extra).

StepChart     tokens emitted per target pass, stacked by where they came from
DepthChart    P(accept at depth d | reached d)
TimeSplitBar  where the generation time went: draft / verify / overhead
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from app.theme import LIGHT, Colors

MIN_BAR_PX = 3.0


class _Chart(QWidget):
    def __init__(self, colors: Colors = LIGHT, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colors = colors
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_colors(self, colors: Colors) -> None:
        self.colors = colors
        self.update()

    def _small_font(self, painter: QPainter) -> None:
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.8))
        painter.setFont(font)

    def _empty(self, painter: QPainter, text: str) -> None:
        painter.setPen(QColor(self.colors.muted))
        self._small_font(painter)
        painter.drawText(self.rect().adjusted(4, 0, -4, 0),
                         int(Qt.AlignmentFlag.AlignCenter) | int(Qt.TextFlag.TextWordWrap), text)


class StepChart(_Chart):
    """One bar per target pass; its height is the tokens that pass emitted (accepted
    guesses + the target's own bonus token); dashed line: the mean, τ."""

    def __init__(self, colors: Colors = LIGHT, parent: QWidget | None = None) -> None:
        super().__init__(colors, parent)
        self.steps: list[list[Any]] = []
        self.setFixedHeight(120)
        self._bars: list[tuple[QRectF, int]] = []

    def sizeHint(self) -> QSize:
        return QSize(280, 120)

    def set_steps(self, steps: list[list[Any]]) -> None:
        self.steps = steps
        self.update()

    def visible_steps(self) -> tuple[int, list[list[Any]]]:
        """(index of the first shown step, steps shown): the latest ones that fit."""
        plot_w = max(1.0, self.width() - 30.0)
        fit = max(1, int(plot_w / MIN_BAR_PX))
        start = max(0, len(self.steps) - fit)
        return start, self.steps[start:]

    def paintEvent(self, _event: Any) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        c = self.colors
        self._bars = []
        if not self.steps:
            self._empty(painter, "one bar per target pass appears here while a reply streams")
            return
        start, shown = self.visible_steps()
        left, top, bottom = 24.0, 6.0, self.height() - 14.0
        plot = QRectF(left, top, self.width() - left - 4, bottom - top)
        peak = max(4, max(int(s[0]) for s in shown))
        self._small_font(painter)
        # grid: one line per token count (every other one when tall)
        every = 1 if peak <= 8 else 2 if peak <= 16 else 4
        for v in range(0, peak + 1, every):
            y = plot.bottom() - v / peak * plot.height()
            painter.setPen(QPen(QColor(c.chart_grid), 1))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(QColor(c.muted))
            right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
            painter.drawText(QRectF(0, y - 7, left - 4, 14), right, str(v))
        slot = plot.width() / max(len(shown), 1)
        bar_w = max(1.0, min(18.0, slot * 0.8))
        for i, (emitted, acc_draft, acc_ngram, *_rest) in enumerate(shown):
            x = plot.left() + i * slot + (slot - bar_w) / 2
            y = plot.bottom()
            bonus = max(0, int(emitted) - int(acc_draft) - int(acc_ngram))
            for count, source in ((acc_ngram, "ngram"), (acc_draft, "draft"), (bonus, "target")):
                if count <= 0:
                    continue
                h = count / peak * plot.height()
                painter.fillRect(QRectF(x, y - h, bar_w, h), QColor(c.chart(source)))
                y -= h
            self._bars.append((QRectF(plot.left() + i * slot, plot.top(), slot, plot.height()), start + i))
        tau = sum(int(s[0]) for s in self.steps) / len(self.steps)
        y = plot.bottom() - tau / peak * plot.height()
        pen = QPen(QColor(c.text), 1, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
        painter.setPen(QColor(c.muted))
        label = f"passes {start + 1}–{len(self.steps)}" if start else f"{len(self.steps)} target passes"
        painter.drawText(QRectF(left, bottom, plot.width(), 14), Qt.AlignmentFlag.AlignLeft, label)
        painter.setPen(QColor(c.text))
        painter.drawText(QRectF(left, bottom, plot.width(), 14), Qt.AlignmentFlag.AlignRight, f"τ = {tau:.2f}")

    def mouseMoveEvent(self, event: Any) -> None:
        pos = event.position()
        for rect, index in self._bars:
            if rect.contains(pos):
                emitted, acc_draft, acc_ngram, seconds, mode = ([*list(self.steps[index]), 0, 0, 0, 0.0, ""])[:5]
                bonus = max(0, int(emitted) - int(acc_draft) - int(acc_ngram))
                QToolTip.showText(
                    event.globalPosition().toPoint(),
                    f"pass {index + 1}: {emitted} token(s) — {acc_draft} from the draft model, "
                    f"{acc_ngram} from the n-gram stage, {bonus} from the target itself\n"
                    f"step mode: {mode or '?'}, {1000 * float(seconds):.0f} ms",
                    self,
                )
                return
        QToolTip.hideText()


class DepthChart(_Chart):
    """Bars of P(accept at depth d | reached depth d), d = 1 .. axis.

    The axis is fixed (the deepest guess the settings allow, see set_axis), not the
    deepest one this reply happened to reach: otherwise it jumped between 3, 5 and 12
    bars from reply to reply and bars could not be compared.  Depths a reply never
    reached are drawn as a short dash."""

    MAX_DEPTH = 16  # more bars than this would not be readable in the dock

    def __init__(self, colors: Colors = LIGHT, parent: QWidget | None = None) -> None:
        super().__init__(colors, parent)
        self.axis = 8
        self.rates: list[float | None] = []
        self.reached: list[int] = []
        self.deeper = 0  # depths past the axis that were reached (said in the caption)
        self.setFixedHeight(108)
        self._bars: list[tuple[QRectF, int]] = []

    def sizeHint(self) -> QSize:
        return QSize(280, 108)

    def set_axis(self, depth: int) -> None:
        self.axis = max(1, min(self.MAX_DEPTH, int(depth)))
        self.update()

    def set_data(self, rates: list[float | None], reached: list[int] | None = None) -> None:
        rates = list(rates)
        self.deeper = sum(1 for r in rates[self.axis:] if r is not None)
        self.rates = (rates + [None] * self.axis)[: self.axis]
        self.reached = list(reached or [])[: self.axis]
        self.update()

    def caption(self) -> str:
        text = f"guess depth 1–{self.axis} (the deepest your settings allow)"
        return text + (f"; {self.deeper} deeper level(s) not shown" if self.deeper else "")

    def paintEvent(self, _event: Any) -> None:
        painter = QPainter(self)
        c = self.colors
        self._bars = []
        if not any(r is not None for r in self.rates):
            self._empty(painter, "no guesses tested yet")
            return
        self._small_font(painter)
        top, bottom = 14.0, self.height() - 26.0
        n = len(self.rates)
        slot = (self.width() - 8) / n
        bar_w = min(28.0, slot * 0.7)
        painter.setPen(QPen(QColor(c.chart_grid), 1))
        painter.drawLine(QPointF(4, bottom), QPointF(self.width() - 4, bottom))
        for i, rate in enumerate(self.rates):
            x = 4 + i * slot + (slot - bar_w) / 2
            if rate is not None:
                h = rate * (bottom - top)
                painter.fillRect(QRectF(x, bottom - h, bar_w, h), QColor(c.accent))
                if slot >= painter.fontMetrics().horizontalAdvance("100%") + 4:  # labels only where they fit
                    painter.setPen(QColor(c.text))
                    painter.drawText(QRectF(x - 10, bottom - h - 13, bar_w + 20, 12), Qt.AlignmentFlag.AlignCenter,
                                     f"{100 * rate:.0f}%")
            else:  # not reached in this reply: a dash on the baseline, so the slot reads as empty, not 0%
                painter.setPen(QPen(QColor(c.muted), 1))
                painter.drawLine(QPointF(x + bar_w * 0.3, bottom - 2), QPointF(x + bar_w * 0.7, bottom - 2))
            painter.setPen(QColor(c.muted))
            painter.drawText(QRectF(x - 10, bottom + 1, bar_w + 20, 12), Qt.AlignmentFlag.AlignCenter, str(i + 1))
            self._bars.append((QRectF(4 + i * slot, 0, slot, self.height()), i))
        painter.setPen(QColor(c.muted))
        painter.drawText(QRectF(4, bottom + 13, self.width() - 8, 12), Qt.AlignmentFlag.AlignLeft, self.caption())

    def mouseMoveEvent(self, event: Any) -> None:
        for rect, i in self._bars:
            if rect.contains(event.position()):
                rate = self.rates[i]
                reached = self.reached[i] if i < len(self.reached) else None
                text = f"depth {i + 1}: " + ("not reached" if rate is None else f"{100 * rate:.0f}% accepted")
                if reached is not None:
                    text += f" of {reached} step(s) that reached it"
                QToolTip.showText(event.globalPosition().toPoint(), text, self)
                return
        QToolTip.hideText()


class TimeSplitBar(_Chart):
    PARTS = (("draft", "drafting"), ("verify", "verifying (target passes)"), ("overhead", "overhead"))

    def __init__(self, colors: Colors = LIGHT, parent: QWidget | None = None) -> None:
        super().__init__(colors, parent)
        self.times = {"draft": 0.0, "verify": 0.0, "overhead": 0.0}
        self.labels = dict(self.PARTS)
        self.setFixedHeight(40)

    def sizeHint(self) -> QSize:
        return QSize(280, 40)

    def set_remote(self, where: str | None) -> None:
        """With the target on remote devices, verifying is remote time (network included)
        and drafting is this computer's."""
        self.labels = dict(self.PARTS)
        if where:
            self.labels["draft"] = "drafting (this computer)"
            self.labels["verify"] = f"verifying (target passes on {where}, network included)"

    def set_times(self, draft: float, verify: float, overhead: float) -> None:
        self.times = {"draft": draft, "verify": verify, "overhead": overhead}
        total = draft + verify + overhead
        if total > 0:
            self.setToolTip("\n".join(
                f"{self.labels[key]}: {self.times[key]:.2f} s ({100 * self.times[key] / total:.0f}%)"
                for key, _label in self.PARTS
            ))
        self.update()

    def _colour(self, key: str) -> str:
        c = self.colors
        return {"draft": c.chart_draft, "verify": c.accent, "overhead": c.chart_target}[key]

    def paintEvent(self, _event: Any) -> None:
        painter = QPainter(self)
        total = sum(self.times.values())
        if total <= 0:
            self._empty(painter, "no generation time yet")
            return
        self._small_font(painter)
        x, w = 4.0, self.width() - 8.0
        for key, _label in self.PARTS:
            part = self.times[key] / total * w
            painter.fillRect(QRectF(x, 4, part, 14), QColor(self._colour(key)))
            x += part
        x = 4.0
        for key, _label in self.PARTS:
            painter.fillRect(QRectF(x, 26, 9, 9), QColor(self._colour(key)))
            painter.setPen(QColor(self.colors.muted))
            where = {"draft": " here", "verify": " remote"}.get(key, "") if self.labels != dict(self.PARTS) else ""
            text = f"{self.labels[key].split(' ')[0]}{where} {100 * self.times[key] / total:.0f}%"
            painter.drawText(QRectF(x + 12, 22, 120, 16), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             text)
            x += 12 + painter.fontMetrics().horizontalAdvance(text) + 12
