"""Render the app icon (assets/desktop/<app id>.svg) to everything the packages need.

    .venv/bin/python packaging/make_icons.py

Writes, next to the SVG:
    icons/hicolor/<N>x<N>/apps/<app id>.png  for N in PNG_SIZES (Linux, freedesktop icon theme)
    icons/hicolor/scalable/apps/<app id>.svg (a copy of the source)
    tandem.ico                               (Windows: PNG-compressed ICO entries)
    tandem.icns                              (macOS: PNG-compressed ICNS entries)

The outputs are committed, so a build never needs Qt to draw them; rerun this after
editing the SVG.  QSvgRenderer on the offscreen platform needs no display.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundle_config import APP_ID, DESKTOP_DIR, ICNS_TYPES, ICO_SIZES, PNG_SIZES  # noqa: E402


def render_png(svg: Path, size: int) -> bytes:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(["make_icons"])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"not a valid SVG: {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    return bytes(data.data())


def ico(pngs: dict[int, bytes]) -> bytes:
    """ICO with PNG entries (Windows Vista and later read these)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries, blobs = b"", b""
    for n in sizes:
        data = pngs[n]
        dim = 0 if n >= 256 else n  # 0 means 256 in an ICO directory entry
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset + len(blobs))
        blobs += data
    return header + entries + blobs


def icns(pngs: dict[int, bytes]) -> bytes:
    """ICNS with PNG entries (macOS 10.7 and later)."""
    body = b""
    for kind, n in ICNS_TYPES.items():
        body += kind.encode("ascii") + struct.pack(">I", 8 + len(pngs[n])) + pngs[n]
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main() -> int:
    svg = DESKTOP_DIR / f"{APP_ID}.svg"
    wanted = sorted(set(PNG_SIZES) | set(ICO_SIZES) | set(ICNS_TYPES.values()))
    pngs = {n: render_png(svg, n) for n in wanted}
    for n in PNG_SIZES:
        out = DESKTOP_DIR / "icons" / "hicolor" / f"{n}x{n}" / "apps" / f"{APP_ID}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(pngs[n])
    scalable = DESKTOP_DIR / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(svg, scalable)
    (DESKTOP_DIR / "tandem.ico").write_bytes(ico({n: pngs[n] for n in ICO_SIZES}))
    (DESKTOP_DIR / "tandem.icns").write_bytes(icns(pngs))
    print(f"icons written under {DESKTOP_DIR.relative_to(ROOT)}: PNG {PNG_SIZES}, ICO {ICO_SIZES}, ICNS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
