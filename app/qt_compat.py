"""Work around a reference-counting bug in PySide6 6.12.0 on Python < 3.12.

In that release every call of a Qt method that returns nothing (setText, resize,
setHtml, ...) decrements the reference count of None without having incremented it,
and Signal.emit() does the same to True.  On Python 3.12+ these objects are immortal
and nothing happens; on 3.11 a count reaches zero after a few thousand calls and the
interpreter aborts ("none_dealloc: deallocating None").  Tandem's chat makes
thousands of such calls per reply.

`ensure_none_survives()` measures whether the running PySide6 has the bug and, only
then, gives None, True and False reference counts no program can exhaust — what
Python 3.12 does for every interpreter (PEP 683).  The dependency pin
(PySide6-Essentials < 6.12) is the real fix; this keeps an installation that got
6.12.0 anyway from crashing.
"""

from __future__ import annotations

import ctypes
import sys

_BIG = 1 << 40
_applied = False


def pyside_leaks_none() -> bool:
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(16):
        probe.setObjectName("probe")
    return sys.getrefcount(None) < before - 8


def ensure_none_survives() -> bool:
    """Apply the workaround if needed; True if it was applied (now or before)."""
    global _applied
    if _applied or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return _applied
    if pyside_leaks_none():
        for singleton in (None, True, False):
            # ob_refcnt is the first field of every CPython object
            ctypes.c_ssize_t.from_address(id(singleton)).value += _BIG
        _applied = True
        print("tandem: PySide6 with the None reference-count bug detected (6.12.0 on Python < 3.12); "
              "applied a workaround. Installing PySide6-Essentials 6.11 avoids it.", file=sys.stderr)
    return _applied
