"""Light and dark themes: one colour table each, a Fusion palette built from it, and the
stylesheet template in assets/styles filled in with the same colours.

"system" follows the platform's colour scheme (Qt 6.5+) and switches live when the
user changes it.  The provenance colours are here too, so the chat overlay, the
legend and the statistics charts always agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

STYLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "styles"


@dataclass(frozen=True)
class Colors:
    name: str
    window: str
    surface: str  # message cards, panels
    surface_alt: str  # sidebar, headers
    text: str
    muted: str
    border: str
    accent: str
    accent_text: str
    user_bubble: str
    code_bg: str
    code_head: str
    warn_bg: str
    warn_text: str
    error_bg: str
    error_text: str
    ok_text: str
    # provenance: background behind text (overlay) and solid colour (charts, legend)
    prov_draft_bg: str
    prov_ngram_bg: str
    prov_history_bg: str
    prov_target_bg: str
    chart_draft: str
    chart_ngram: str
    chart_history: str
    chart_target: str
    chart_grid: str
    pygments_style: str

    def prov_bg(self, source: str) -> str | None:
        return {"draft": self.prov_draft_bg, "ngram": self.prov_ngram_bg, "recycle": self.prov_ngram_bg,
                "history": self.prov_history_bg}.get(source)

    def chart(self, source: str) -> str:
        return {"draft": self.chart_draft, "ngram": self.chart_ngram, "recycle": self.chart_ngram,
                "history": self.chart_history}.get(source, self.chart_target)


LIGHT = Colors(
    name="light",
    window="#f4f5f7",
    surface="#ffffff",
    surface_alt="#eceef1",
    text="#1f2328",
    muted="#656d76",
    border="#d0d7de",
    accent="#2f6feb",
    accent_text="#ffffff",
    user_bubble="#e8efff",
    code_bg="#f6f8fa",
    code_head="#eaeef2",
    warn_bg="#fff4d6",
    warn_text="#6b4500",
    error_bg="#ffe3e3",
    error_text="#a40e26",
    ok_text="#1a7f37",
    prov_draft_bg="#c6efce",
    prov_ngram_bg="#cfe2ff",
    prov_history_bg="#f3dcff",
    prov_target_bg="transparent",
    chart_draft="#2da44e",
    chart_ngram="#3b82f6",
    chart_history="#a855f7",
    chart_target="#9aa4b1",
    chart_grid="#e3e6ea",
    pygments_style="default",
)

DARK = Colors(
    name="dark",
    window="#15171c",
    surface="#1e2128",
    surface_alt="#191c22",
    text="#e6e8eb",
    muted="#9aa4b1",
    border="#343943",
    accent="#4c8dff",
    accent_text="#ffffff",
    user_bubble="#23304a",
    code_bg="#111318",
    code_head="#262a33",
    warn_bg="#3d2e00",
    warn_text="#f2cc60",
    error_bg="#4a1518",
    error_text="#ff9aa2",
    ok_text="#56d364",
    prov_draft_bg="#1d5a2e",
    prov_ngram_bg="#1c3f73",
    prov_history_bg="#4a2a63",
    prov_target_bg="transparent",
    chart_draft="#3fb950",
    chart_ngram="#58a6ff",
    chart_history="#c084fc",
    chart_target="#6e7681",
    chart_grid="#2b3038",
    pygments_style="github-dark",
)

SOURCE_LABELS = {
    "target": "target model (its own token)",
    "draft": "accepted from the draft model",
    "ngram": "accepted from the n-gram stage (this conversation's text)",
    "history": "accepted from your earlier prompts and replies",
    "recycle": "accepted from the target's own earlier guesses (n-gram stage)",
}


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = hints.colorScheme() if hasattr(hints, "colorScheme") else Qt.ColorScheme.Unknown
    return scheme == Qt.ColorScheme.Dark


def colors_for(pref: str) -> Colors:
    if pref == "dark" or (pref == "system" and system_is_dark()):
        return DARK
    return LIGHT


def palette(c: Colors) -> QPalette:
    p = QPalette()
    role = QPalette.ColorRole
    for r, value in (
        (role.Window, c.window),
        (role.WindowText, c.text),
        (role.Base, c.surface),
        (role.AlternateBase, c.surface_alt),
        (role.ToolTipBase, c.surface),
        (role.ToolTipText, c.text),
        (role.PlaceholderText, c.muted),
        (role.Text, c.text),
        (role.Button, c.surface_alt),
        (role.ButtonText, c.text),
        (role.BrightText, c.error_text),
        (role.Highlight, c.accent),
        (role.HighlightedText, c.accent_text),
        (role.Link, c.accent),
        (role.LinkVisited, c.accent),
        (role.Mid, c.border),
        (role.Midlight, c.border),
        (role.Dark, c.border),
    ):
        p.setColor(r, QColor(value))
    for r in (role.Text, role.WindowText, role.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, r, QColor(c.muted))
    return p


def stylesheet(c: Colors) -> str:
    """assets/styles/app.qss with @name@ placeholders replaced by this theme's colours."""
    try:
        template = (STYLES_DIR / "app.qss").read_text(encoding="utf-8")
    except OSError:
        return ""  # a missing stylesheet leaves a plain but working window
    for key, value in asdict(c).items():
        template = template.replace(f"@{key}@", str(value))
    return template


class ThemeManager(QObject):
    """Applies the preferred theme and re-applies it when the system scheme changes."""

    def __init__(self, app: QApplication, pref: str = "system") -> None:
        super().__init__(app)
        self.app = app
        self.pref = pref
        self.colors = LIGHT
        self._listeners: list[Callable[[Colors], None]] = []
        app.setStyle("Fusion")  # the same look everywhere, and palettes are honoured
        hints = QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):
            hints.colorSchemeChanged.connect(lambda _scheme: self.apply())
        self.apply()

    @classmethod
    def for_app(cls, app: QApplication, pref: str = "system") -> ThemeManager:
        """One manager per application (several windows in a row share it: tests)."""
        manager = app.findChild(ThemeManager)
        if manager is None:
            return cls(app, pref)
        manager.set_pref(pref)
        return manager

    def on_change(self, callback: Callable[[Colors], None]) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[Colors], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def set_pref(self, pref: str) -> None:
        self.pref = pref
        self.apply()

    def apply(self) -> None:
        self.colors = colors_for(self.pref)
        self.app.setPalette(palette(self.colors))
        self.app.setStyleSheet(stylesheet(self.colors))
        for callback in list(self._listeners):
            callback(self.colors)
