"""Render the real Tandem window to PNG: a real conversation on the real default model
pair, speculation on, provenance overlay on, statistics panel visible.

    .venv/bin/python scripts/screenshot.py [--out docs/screenshots] [--mode auto] [--max-tokens 200]
                                           [--size 1600x1000] [--small 900x650]

Needs a display: without one it starts its own Xvfb (`apt-get install xvfb` plus the
xcb libraries Qt needs: libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 ...).  Chats and
settings go to a scratch directory; the models come from the usual models directory
(`tandem models pull` provisions them) and the measured decode costs from the usual
cache, so a second run does not measure again.

Writes tandem-light.png and tandem-dark.png at --size, tandem-small.png and
welcome-small.png (a new chat) at --small, settings.png and model-manager.png.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = (
    "Write a Python function is_prime(n) with a short docstring and two doctest examples.",
    "Now add type hints and repeat the complete function, unchanged otherwise.",
)


def size_arg(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def start_xvfb(width: int, height: int) -> None:
    """Start Xvfb on a free display and point DISPLAY at it (stopped at exit)."""
    if shutil.which("Xvfb") is None:
        sys.exit("no display and no Xvfb: apt-get install -y xvfb (or run under xvfb-run)")
    for n in range(90, 110):
        if not Path(f"/tmp/.X{n}-lock").exists():
            break
    else:
        sys.exit("no free X display number between :90 and :109")
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(proc.terminate)
    for _ in range(50):
        if Path(f"/tmp/.X11-unix/X{n}").exists():
            break
        time.sleep(0.1)
    os.environ["DISPLAY"] = f":{n}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--mode", default="auto", help="speculation mode for the conversation (default: auto)")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="decoding threads (default: the engine's choice)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for loading and each reply")
    parser.add_argument("--size", type=size_arg, default=(1600, 1000), help="main window size (default 1600x1000)")
    parser.add_argument("--small", type=size_arg, default=(900, 650), help="small window size (default 900x650)")
    args = parser.parse_args()

    if not os.environ.get("DISPLAY"):
        start_xvfb(max(args.size[0], args.small[0]) + 200, max(args.size[1], args.small[1]) + 200)
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    from engine.models.paths import models_dir

    # the user's models (found before the data directory moves), everything else scratch
    os.environ["TANDEM_MODELS_DIR"] = str(models_dir())
    scratch = Path(tempfile.mkdtemp(prefix="tandem-screenshot-"))
    atexit.register(shutil.rmtree, scratch, True)
    os.environ["TANDEM_DATA_DIR"] = str(scratch / "data")

    from PySide6.QtCore import QEventLoop, QSettings, QTimer

    from app.main import build_window, make_application
    from app.settings_store import ModelChoice, SettingsStore, UiPrefs

    make_application()  # names and icon before any QSettings or window
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(scratch / "settings"))
    prefs = SettingsStore()
    prefs.set_ui(UiPrefs(theme="light", overlay=True, stats_visible=True))
    gen = prefs.generation()
    gen.max_tokens = args.max_tokens
    gen.spec.mode = args.mode
    prefs.set_generation(gen)
    prefs.set_model_choice(ModelChoice(threads=args.threads))
    prefs.sync()

    started = time.monotonic()
    parts = build_window()
    window = parts.window
    window.resize(*args.size)
    window.show()

    def wait(condition: Callable[[], bool], timeout: float = args.timeout) -> bool:
        # an event loop that sleeps between events: a polling loop would take a core
        # from the engine, and on a 2-core machine that halves its speed or worse
        end = time.monotonic() + timeout
        while time.monotonic() < end and not condition():
            loop = QEventLoop()
            QTimer.singleShot(50, loop.quit)
            loop.exec()
        return bool(condition())

    if not wait(lambda: window.engine.ready or window.engine.state in ("missing", "load_failed", "crashed")) \
            or not window.engine.ready:
        print(f"the engine is not ready ({window.engine.state}): {window.banner.label.text()}", file=sys.stderr)
        if window.engine.state == "missing":
            print("provision the default pair first: .venv/bin/tandem models pull", file=sys.stderr)
        return 1
    print(f"engine ready after {time.monotonic() - started:.0f} s", flush=True)
    for prompt in PROMPTS:
        window.send(prompt)
        if not wait(lambda: not window.chat.busy):
            print("a reply took too long", file=sys.stderr)
            return 1
        reply = window.chat.branch()[-1]
        s = reply.stats or {}
        print(f"reply: {s.get('tokens')} tokens, {s.get('tokens_per_s', 0):.1f} tok/s, "
              f"speedup {s.get('speedup') or 0:.2f}, tau {s.get('tau', 0):.2f}, modes {s.get('modes')}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)

    def settle() -> None:
        window.chat_view.flush()
        wait(lambda: False, 0.6)  # layout, repaint
        window.chat_view.scroll_to_bottom()
        wait(lambda: False, 0.3)

    def save(widget, name: str) -> None:
        path = args.out / name
        widget.grab().save(str(path))
        print(f"wrote {path}")

    def check_size(size: tuple[int, int]) -> None:
        if (window.width(), window.height()) != size:  # the window would not shrink: a layout bug
            print(f"warning: asked for {size[0]}x{size[1]}, the window is {window.width()}x{window.height()}",
                  file=sys.stderr)

    settle()
    check_size(args.size)
    save(window, "tandem-light.png")
    window.theme.set_pref("dark")
    settle()
    save(window, "tandem-dark.png")
    window.theme.set_pref("light")
    window.resize(*args.small)
    settle()
    check_size(args.small)
    save(window, "tandem-small.png")
    conv = window.chat.conv_id
    window.new_chat()
    settle()
    save(window, "welcome-small.png")
    window.chat.open_conversation(conv)
    window.resize(*args.size)
    settle()

    dialog = window.open_settings()
    dialog.tabs.setCurrentIndex(1)  # Models: the draft picker with its compatibility check
    dialog.resize(640, 520)
    wait(lambda: dialog._compat_task is None, 30)
    settle()
    save(dialog, "settings.png")
    dialog.reject()
    manager = window.open_model_manager()
    manager.resize(1180, 560)
    settle()
    save(manager, "model-manager.png")
    manager.close()
    window.close()
    parts.store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
