"""The permanent part of the status bar: engine state, speculation mode, model pair,
and the measured plain-decoding speed."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QStatusBar

from app.theme import Colors

ENGINE_TEXT = {
    "checking": "● checking models",
    "missing": "● models missing",
    "loading": "● loading",
    "ready": "● ready",
    "load_failed": "● load failed",
    "crashed": "● engine stopped",
}


class StatusLabels:
    def __init__(self, bar: QStatusBar) -> None:
        self.engine = QLabel()
        self.mode = QLabel()
        self.mode.setObjectName("statusMode")
        self.mode.setToolTip("Speculation mode used for the next reply (toolbar switch; Settings)")
        self.pair = QLabel()
        self.pair.setToolTip("Target model · draft model")
        self.baseline = QLabel()
        self.baseline.setToolTip("Plain decoding speed of the target, measured on this computer")
        self.server = QLabel()
        self.server.setObjectName("statusServer")
        self.server.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.server.hide()
        for label in (self.engine, self.mode, self.pair, self.baseline, self.server):
            bar.addPermanentWidget(label)

    def set_server(self, url: str) -> None:
        """The local server's address (Settings → Local server), or nothing while it is off."""
        self.server.setText(f"API {url}/v1" if url else "")
        self.server.setToolTip("OpenAI-compatible API of this window's engine: use it as the base URL "
                               "in an editor or the openai client" if url else "")
        self.server.setVisible(bool(url))

    def set_mode(self, mode: str) -> None:
        self.mode.setText("Speculation: off" if mode == "off" else f"Speculation: {mode}")
        self.mode.setProperty("off", mode == "off")  # the stylesheet greys it out
        self.mode.style().unpolish(self.mode)
        self.mode.style().polish(self.mode)

    def set_engine(self, state: str, writing: bool, colors: Colors) -> None:
        text = "● writing" if state == "ready" and writing else ENGINE_TEXT[state]
        colour = {"ready": colors.ok_text, "load_failed": colors.error_text,
                  "crashed": colors.error_text}.get(state, colors.muted)
        self.engine.setText(text)
        self.engine.setStyleSheet(f"color: {colour};")

    def set_baseline(self, tps: float | None, where: str = "measured", uncertain: bool = False) -> None:
        """Say which figure it is: a measurement at load (stale once the machine gets
        busy) or the last reply's own live estimate."""
        self.baseline.setText(f"plain {'≈' if uncertain else ''}{tps:.1f} tok/s ({where})" if tps else "")
        self.baseline.setToolTip(
            "Plain decoding speed of the target on this computer: " + (
                "estimated from the last reply's own plain steps, under its conditions" if where == "last reply"
                else "measured with the models idle (Speculation → Re-measure plain speed)"))
