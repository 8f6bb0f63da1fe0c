"""The live statistics panel (a dock): what speculation is doing for this reply,
updated on every target pass.  Every number carries its DESIGN §4 definition as a
tooltip, so the panel explains itself."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGridLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import speed
from app.theme import LIGHT, Colors
from app.views.charts import DepthChart, StepChart, TimeSplitBar

NOW_WINDOW = 8  # "tokens/s now" = over the last this many target passes
SLOW_RATIO = speed.SLOW_RATIO
MIN_STEPS_FOR_VERDICT = 6

DEFINITIONS = {
    "now": f"Tokens per second over the last {NOW_WINDOW} target passes.",
    "reply": "Tokens per second of this reply so far (generation time; prompt processing excluded).",
    "speedup": "This reply's tokens/s divided by plain decoding's tokens/s under the same conditions, "
               "estimated from this reply's own plain steps (or its target passes scaled by the measured cost "
               "curve). Above 1×: speculation is paying off. ≈: the estimate is uncertain (busy computer, few "
               "steps).",
    "tau": "Mean accepted length τ: tokens emitted per target-model pass, the target's own bonus token "
           "included. Plain decoding: τ = 1.",
    "acceptance": "Acceptance rate = accepted ÷ tested: of the guesses the target checked, the share it agreed with.",
    "tokens": "Tokens in this reply, and how many target passes produced them.",
    "drafted": "Candidate tokens produced by this stage. drafted = tested + ignored.",
    "tested": "Candidates sent to the target model to be checked.",
    "accepted": "Tested candidates on the accepted path (they became part of the reply).",
    "rejected": "Tested candidates the target did not agree with.",
    "ignored": "Drafted but never tested (pruned before verification as unlikely to pay).",
    "depth": "Acceptance by depth: P(accept at depth d | the walk reached depth d). Depth 1 is the first "
             "guessed token after the target's last one.",
    "steps": "Each bar is one target-model pass. Its height is how many tokens that pass produced: accepted "
             "guesses (green: draft model, blue: n-gram) plus the target's own bonus token (grey). "
             "Plain decoding would be a row of 1s.",
    "time": "Where the generation time went: drafting (draft model and n-gram stage), verifying (target passes), "
            "and overhead (tree building, sampling, bookkeeping).",
}
STAGE_ROWS = (("draft", "draft model"), ("ngram", "n-gram: conversation"), ("recycle", "n-gram: recycling"),
              ("history", "history"), ("total", "all stages"))
# what fits above a column of a 300 px dock; the full name is the header's tooltip
STAGE_SHORT = {"draft": "draft", "ngram": "conv.", "recycle": "recycle", "history": "history", "total": "all"}
COLUMNS = ("drafted", "tested", "accepted", "rejected", "ignored")


def tps_now(steps: list[list[Any]]) -> float | None:
    recent = steps[-NOW_WINDOW:]
    seconds = sum(float(s[3]) for s in recent)
    return sum(int(s[0]) for s in recent) / seconds if recent and seconds > 0 else None


def slow_verdict(stats: dict[str, Any], steps: list[list[Any]], live: bool, mode: str) -> str | None:
    """A sentence when speculation is costing time, else None.  Judged only against the
    reply's own live plain-decoding estimate, only when that estimate is firm and only
    when enough steps actually speculated (app/speed.py)."""
    est = speed.live_estimate(stats)
    if mode == "off" or est is None or est.get("uncertain") or len(steps) < MIN_STEPS_FOR_VERDICT:
        return None
    if speed.speculative_steps(stats) < speed.MIN_SPECULATIVE_STEPS:
        return None
    plain = float(est["tps"])
    if live:
        now = tps_now(steps)
        if now is not None and now < SLOW_RATIO * plain:
            return (f"⚠ Speculation is slower than plain decoding right now: {now:.1f} vs ~{plain:.1f} tok/s "
                    f"({now / plain:.2f}×). Guesses are being rejected or cost more than they save. "
                    + speed.advice(mode))
        return None
    value = stats.get("speedup")
    if value is not None and value < SLOW_RATIO:
        return f"⚠ This reply was slower than plain decoding ({value:.2f}×). " + speed.advice(mode)
    return None


def explain(stats: dict[str, Any]) -> str:
    """The numbers in one plain sentence or two."""
    if not stats or not stats.get("steps"):
        return ""
    tokens, steps = stats.get("tokens", 0), stats.get("steps", 0)
    tested = sum((stats.get("tested") or {}).values())
    accepted = sum((stats.get("accepted") or {}).values())
    ignored = sum((stats.get("ignored") or {}).values())
    text = (f"The target model ran {steps} pass{'es' if steps != 1 else ''} and produced {tokens} token"
            f"{'s' if tokens != 1 else ''}: {tokens / steps:.2f} per pass, where plain decoding gets 1.")
    if tested:
        text += f" It checked {tested} guesses and kept {accepted}"
        text += f"; {ignored} more were drafted but not worth checking." if ignored else "."
    elif ignored:
        text += f" {ignored} guesses were drafted, none was worth checking."
    return text


class Tile(QFrame):
    def __init__(self, label: str, tip: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("kpiTile")
        self.setToolTip(tip)
        box = QVBoxLayout(self)
        box.setContentsMargins(8, 6, 8, 6)
        box.setSpacing(0)
        self.value = QLabel("–")
        self.value.setObjectName("kpiValue")
        self.caption = QLabel(label)
        self.caption.setObjectName("kpiLabel")
        box.addWidget(self.value)
        box.addWidget(self.caption)

    def set(self, text: str, caption: str | None = None) -> None:
        self.value.setText(text)
        if caption is not None:
            self.caption.setText(caption)


class StatsPanel(QWidget):
    def __init__(self, colors: Colors = LIGHT, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colors = colors
        self.stats: dict[str, Any] = {}
        self.steps: list[list[Any]] = []
        self.live = False
        self.mode = ""
        self.startup_tps: float | None = None
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer.addWidget(scroll)
        body = QWidget()
        body.setObjectName("statsPanel")
        scroll.setWidget(body)
        box = QVBoxLayout(body)
        box.setContentsMargins(10, 8, 10, 10)
        box.setSpacing(6)

        self.heading = QLabel("No reply yet")
        self.heading.setObjectName("sectionTitle")
        self.heading.setWordWrap(True)
        box.addWidget(self.heading)

        grid = QGridLayout()
        grid.setSpacing(6)
        self.tiles = {
            "now": Tile("tok/s now", DEFINITIONS["now"]),
            "reply": Tile("tok/s this reply", DEFINITIONS["reply"]),
            "speedup": Tile("vs plain decoding", DEFINITIONS["speedup"]),
            "tau": Tile("τ tokens per pass", DEFINITIONS["tau"]),
            "acceptance": Tile("acceptance rate", DEFINITIONS["acceptance"]),
            "tokens": Tile("tokens", DEFINITIONS["tokens"]),
        }
        for i, tile in enumerate(self.tiles.values()):
            grid.addWidget(tile, i // 2, i % 2)
        box.addLayout(grid)

        self.summary = QLabel()
        self.summary.setObjectName("hint")
        self.summary.setWordWrap(True)
        box.addWidget(self.summary)

        self.warning = QLabel()
        self.warning.setObjectName("slowWarning")
        self.warning.setWordWrap(True)
        self.warning.setVisible(False)
        box.addWidget(self.warning)

        box.addWidget(self._section("Tokens per target pass", DEFINITIONS["steps"]))
        self.step_chart = StepChart(colors)
        self.step_chart.setToolTip(DEFINITIONS["steps"])
        box.addWidget(self.step_chart)
        self.step_legend = QLabel()
        self.step_legend.setObjectName("hint")
        self.step_legend.setWordWrap(True)  # a long legend must not widen the dock
        box.addWidget(self.step_legend)

        box.addWidget(self._section("Acceptance by depth", DEFINITIONS["depth"]))
        self.depth_chart = DepthChart(colors)
        box.addWidget(self.depth_chart)

        box.addWidget(self._section("Time split", DEFINITIONS["time"]))
        self.time_bar = TimeSplitBar(colors)
        box.addWidget(self.time_bar)

        box.addWidget(self._section("Guesses by stage", "DESIGN §4 counters, per speculation stage."))
        # counters down, stages across: three narrow number columns fit a narrow dock
        self.table = QTableWidget(len(COLUMNS), len(STAGE_ROWS))
        self.table.setObjectName("stageTable")
        self.table.setHorizontalHeaderLabels([STAGE_SHORT[key] for key, _label in STAGE_ROWS])
        for col, (_key, label) in enumerate(STAGE_ROWS):
            self.table.horizontalHeaderItem(col).setToolTip(label)
        self.table.setVerticalHeaderLabels(list(COLUMNS))
        for row, name in enumerate(COLUMNS):
            self.table.verticalHeaderItem(row).setToolTip(DEFINITIONS[name])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.table.setFixedHeight(self.table.horizontalHeader().sizeHint().height() + len(COLUMNS) * 22 + 4)
        for row in range(len(COLUMNS)):
            for col in range(len(STAGE_ROWS)):
                item = QTableWidgetItem("0")
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setToolTip(DEFINITIONS[COLUMNS[row]])
                self.table.setItem(row, col, item)
        box.addWidget(self.table)

        self.modes = QLabel()
        self.modes.setObjectName("hint")
        self.modes.setWordWrap(True)
        self.modes.setToolTip("What the engine did on each target pass. In auto mode it picks per step, from the "
                              "costs measured on this computer and the acceptance it has learned for this pair.")
        box.addWidget(self.modes)
        self.baseline = QLabel()
        self.baseline.setObjectName("hint")
        self.baseline.setWordWrap(True)
        box.addWidget(self.baseline)
        box.addStretch(1)
        self.set_colors(colors)
        self.clear()

    def _section(self, title: str, tip: str) -> QLabel:
        label = QLabel(title)
        label.setObjectName("sectionTitle")
        label.setToolTip(tip)
        return label

    def set_colors(self, colors: Colors) -> None:
        self.colors = colors
        for chart in (self.step_chart, self.depth_chart, self.time_bar):
            chart.set_colors(colors)
        chip = '<span style="color:{c}">■</span> {t}'
        self.step_legend.setText("&nbsp;&nbsp; ".join(chip.format(c=colors.chart(s), t=t) for s, t in (
            ("draft", "draft model"), ("ngram", "n-gram"), ("target", "target's own"))) + "&nbsp;&nbsp; ┄ τ")

    def set_baseline(self, tps: float | None) -> None:
        """The start-up (or re-measured) figure: context only, never divided by."""
        self.startup_tps = tps
        self._show_baseline()

    def _show_baseline(self) -> None:
        lines = [speed.plain_sentence(self.stats)] if speed.live_estimate(self.stats) else []
        if self.startup_tps:
            lines.append(f"Measured with the models idle at load or on request: {self.startup_tps:.1f} tok/s.")
        self.baseline.setText("\n".join(line for line in lines if line))

    def clear(self) -> None:
        self.show_stats({}, [], live=False, heading="No reply yet", mode="")

    def show_stats(self, stats: dict[str, Any], steps: list[list[Any]], *, live: bool, heading: str,
                   mode: str) -> None:
        self.stats, self.steps, self.live, self.mode = stats, steps, live, mode
        self.heading.setText(heading)
        now = tps_now(steps)
        t = self.tiles
        t["now"].set(f"{now:.1f}" if now is not None else "–", "tok/s now" if live or not steps else "tok/s at the end")
        t["reply"].set(f"{stats['tokens_per_s']:.1f}" if stats.get("tokens_per_s") else "–")
        honest = speed.speedup(stats)
        t["speedup"].set(speed.speedup_text(stats) or "–",
                         "vs plain · uncertain" if honest and honest[1] else "vs plain decoding")
        t["tau"].set(f"{stats['tau']:.2f}" if stats.get("tau") else "–")
        rate = stats.get("acceptance_rate")
        t["acceptance"].set(f"{100 * rate:.0f}%" if rate is not None else "–")
        t["tokens"].set(str(stats.get("tokens", "–")) if stats else "–",
                        f"tokens in {stats.get('steps', 0)} passes" if stats else "tokens")
        self.summary.setText(explain(stats))
        self.summary.setVisible(bool(self.summary.text()))
        verdict = slow_verdict(stats, steps, live, mode)
        self.warning.setText(verdict or "")
        self.warning.setVisible(verdict is not None)
        self.step_chart.set_steps(steps)
        self.depth_chart.set_data(stats.get("acceptance_by_depth") or [])
        self.time_bar.set_times(float(stats.get("t_draft", 0)), float(stats.get("t_verify", 0)),
                                float(stats.get("t_overhead", 0)))
        self._fill_table(stats)
        modes = stats.get("modes") or {}
        self.modes.setText(
            "Target passes by step mode: " + ", ".join(f"{k} {v}" for k, v in sorted(modes.items(),
                                                                                      key=lambda kv: -kv[1]))
            if modes else ""
        )
        self._show_baseline()

    def _fill_table(self, stats: dict[str, Any]) -> None:
        for col, (stage, _label) in enumerate(STAGE_ROWS):
            for row, name in enumerate(COLUMNS):
                counts = stats.get(name) or {}
                value = sum(counts.values()) if stage == "total" else counts.get(stage, 0)
                self.table.item(row, col).setText(str(value))

    def counters(self) -> dict[str, dict[str, int]]:
        """The table as numbers (tests read what the user reads)."""
        out: dict[str, dict[str, int]] = {}
        for col, (stage, _label) in enumerate(STAGE_ROWS):
            out[stage] = {name: int(self.table.item(row, col).text()) for row, name in enumerate(COLUMNS)}
        return out
