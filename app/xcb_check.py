"""Can Qt's xcb platform plugin load here?  If not, which system packages fix it.

Qt opens a window on X11 through `plugins/platforms/libqxcb.so`, which links a dozen
xcb helper libraries that a fresh Debian/Ubuntu desktop often lacks (libxcb-icccm4,
libxcb-keysyms1, ...).  Qt then only says "Could not load the Qt platform plugin xcb"
and blames whatever it tried last.  `ldd` on the plugin names every library the loader
cannot find, the plugin's Qt libraries (libQt6XcbQpa, ...) included, since ldd
follows the whole dependency tree.

Standard library only: scripts/bootstrap.py imports this with the system Python before
the window exists, and `tandem --self-test` imports it inside the packaged program.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# soname -> Debian/Ubuntu package, for everything the PySide6 wheels' xcb plugin and its
# Qt libraries link outside the wheel (checked with ldd on PySide6 6.x, Debian 12).
# Anything else is named by Debian's own rule (see package_for).
KNOWN_PACKAGES = {
    "libxcb.so.1": "libxcb1",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libOpenGL.so.0": "libopengl0",
}
# What README.md lists for installing by hand (tests/app/test_xcb_check.py keeps the two
# in step); the set-up itself installs only what ldd finds missing.
DESKTOP_PACKAGES = sorted({p for p in KNOWN_PACKAGES.values() if p not in ("libxcb-glx0", "libglx0", "libgl1")})

NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")


@dataclass
class XcbReport:
    plugin: Path | None  # None: no xcb plugin (not a PySide6 install with X11 support)
    missing: list[str]  # sonames the loader cannot find
    note: str = ""  # why nothing was checked, if so

    @property
    def ok(self) -> bool:
        return not self.missing


def needs_check(env: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """Only a Linux/BSD session with a display opens an X11 (or XWayland) window."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform.startswith(("win", "darwin", "cygwin")):
        return False
    if env.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb"):
        return False
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def find_plugin(pyside_dir: Path | None = None) -> Path | None:
    """libqxcb.so of the PySide6 that Python would import, without loading Qt
    (loading it is what fails).  Frozen: the copy inside the bundle."""
    candidates: list[Path] = []
    if pyside_dir is not None:
        candidates.append(pyside_dir)
    else:
        if getattr(sys, "frozen", False):
            base = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))
            candidates.append(base / "PySide6")
        spec = importlib.util.find_spec("PySide6")
        if spec is not None and spec.submodule_search_locations:
            candidates.extend(Path(p) for p in spec.submodule_search_locations)
    for root in candidates:
        for rel in ("Qt/plugins/platforms/libqxcb.so", "plugins/platforms/libqxcb.so"):
            if (root / rel).is_file():
                return root / rel
    return None


def parse_missing(ldd_output: str) -> list[str]:
    """Sonames on `ldd` lines that read `libfoo.so.1 => not found`, in order, once each."""
    seen: dict[str, None] = {}
    for line in ldd_output.splitlines():
        m = NOT_FOUND.match(line)
        if m:
            seen.setdefault(m.group(1), None)
    return list(seen)


def run_ldd(path: Path) -> str:
    """ldd with the folders that hold Qt's own libraries on the search path: the wheel's
    Qt/lib (the plugin's rpath already says so) and, in the packaged program, the bundle
    folder, where PyInstaller may have put them.  Only system libraries can be missing."""
    extra = [str(path.parents[2] / "lib")]
    if getattr(sys, "frozen", False):
        extra.append(str(getattr(sys, "_MEIPASS", Path(sys.executable).parent)))
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [*extra, env.get("LD_LIBRARY_PATH")]))
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=30, env=env)
    return out.stdout + out.stderr


def check(plugin: Path | None = None, ldd: Callable[[Path], str] = run_ldd) -> XcbReport:
    plugin = plugin or find_plugin()
    if plugin is None:
        return XcbReport(None, [], "no Qt xcb platform plugin found")
    if ldd is run_ldd and shutil.which("ldd") is None:
        return XcbReport(plugin, [], "ldd is not available; the xcb plugin was not checked")
    return XcbReport(plugin, parse_missing(ldd(plugin)))


def package_for(soname: str, exists: Callable[[str], bool] | None = None) -> str:
    """The Debian/Ubuntu package shipping `soname`.  Unknown names follow Debian's
    library-package rule (libfoo.so.1 -> libfoo1, libfoo-2.so.0 -> libfoo-2-0); where the
    distribution renamed a package for the 64-bit time_t transition (Ubuntu 24.04:
    libglib2.0-0t64) and `exists` says the plain name is gone, the t64 name is used."""
    name = KNOWN_PACKAGES.get(soname)
    if name is None:
        m = re.match(r"^(lib.+?)\.so\.(\d+)", soname)
        if m is None:
            return soname
        stem, version = m.group(1).lower().replace("_", "-"), m.group(2)
        name = f"{stem}-{version}" if stem[-1].isdigit() else f"{stem}{version}"
    if exists is not None and not exists(name) and exists(name + "t64"):
        return name + "t64"
    return name


def apt_has(package: str) -> bool:
    """apt knows a package of this name with an installable candidate."""
    try:
        out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "Candidate:" in out.stdout and "Candidate: (none)" not in out.stdout


def packages_for(missing: Sequence[str], exists: Callable[[str], bool] | None = None) -> list[str]:
    out: dict[str, None] = {}
    for soname in missing:
        out.setdefault(package_for(soname, exists), None)
    return list(out)


def apt_command(packages: Sequence[str], *, root: bool) -> list[str]:
    """The command that installs `packages`: as root as is, otherwise through sudo
    (non-interactive when run by the set-up, so it never hangs on a password prompt)."""
    base = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    return base if root else ["sudo", "-n", *base]


def shell_line(packages: Sequence[str]) -> str:
    """What a person types: always with sudo (they may not be root)."""
    return "sudo apt-get install -y " + " ".join(packages)


def describe(report: XcbReport, packages: Sequence[str]) -> str:
    libs = ", ".join(report.missing)
    return (f"Qt's xcb platform plugin cannot load: these system libraries are missing: {libs}. "
            f"Install them with: {shell_line(packages)}")
