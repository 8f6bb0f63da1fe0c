"""Icons from assets/icons, tinted for the current theme.

The SVGs draw with `currentColor`; QIcon cannot resolve that, so each icon is
rendered with the theme's text colour substituted in.  Cached per (name, colour).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QRectF, QSize, Qt
from PySide6.QtGui import QIcon, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

ICONS_DIR = Path(__file__).resolve().parent.parent / "assets" / "icons"
_cache: dict[tuple[str, str, int], QIcon] = {}


def icon(name: str, color: str = "#1f2328", size: int = 64) -> QIcon:
    key = (name, color, size)
    if key in _cache:
        return _cache[key]
    try:
        svg = (ICONS_DIR / f"{name}.svg").read_text(encoding="utf-8")
    except OSError:
        return QIcon()  # a missing icon must not stop the window from opening
    renderer = QSvgRenderer(QByteArray(svg.replace("currentColor", color).encode("utf-8")))
    pixmap = QPixmap(QSize(size, size))
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    result = QIcon(pixmap)
    _cache[key] = result
    return result


def app_icon() -> QIcon:
    return icon("tandem", size=128)
