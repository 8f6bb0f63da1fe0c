"""`tandem --self-test`: prove an install (above all a packaged one) works, headless.

    tandem --self-test [--target ID|PATH] [--draft ID|PATH] [--tokens 48] [--no-gui] [--no-server]

1. engine: load the model pair (the catalog's default pair, found with
   engine.models.provision.local_path, unless --target/--draft or TANDEM_SELF_TEST_TARGET /
   TANDEM_SELF_TEST_DRAFT say otherwise), answer one prompt greedily with speculation
   `auto`, then again with speculation off, and require the same tokens.  Lossless
   speculation guarantees that up to float noise: batched and single-token decodes may
   round differently, so a first difference is accepted only where plain decoding had a
   near-tie (top-1 minus top-2 logit <= NEAR_TIE).
2. server: start the engine process the way the GUI does (`<exe> --engine-server` when
   frozen, `python -m engine.runtime.server` otherwise) and ping it.
3. gui: on Linux, `ldd` on Qt's xcb platform plugin (the one a desktop window needs):
   a system library it cannot find fails the test when a display is set (the window
   would not open) and is a warning without one; the message names the apt packages.
   Then a QApplication on the offscreen platform, the main window module imported,
   the app icon rendered (Qt plugins, SVG support and assets are in the bundle).

Prints the statistics and the time from process start to the first streamed token,
then `self-test: OK` (exit 0) or `self-test: FAILED: <reason>` (exit 1).  Never needs
a display.  Learned per-pair state goes to a temporary data directory, so the test
neither reads nor changes the user's; the cost-curve cache is shared (machine facts).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from engine.errors import TandemError

PROMPT = "Write a Python function that returns the n-th Fibonacci number, with a short docstring."
NEAR_TIE = 1.0  # logits: a greedy choice this close may flip between batched and single decodes
IMPORTED_AT = time.perf_counter()


class SelfTestError(Exception):
    """A check failed; the message is the one-line reason."""


def say(text: str) -> None:
    print(f"self-test: {text}", flush=True)


def seconds_since_process_start() -> float | None:
    """Wall time since this process started (the frozen bootloader included): Linux only.
    Elsewhere None, and callers fall back to the time since this module was imported."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after "pid (comm)"
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def elapsed_since_start() -> tuple[float, str]:
    since = seconds_since_process_start()
    if since is not None:
        return since, "process start"
    return time.perf_counter() - IMPORTED_AT, "self-test import"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tandem --self-test", description="check that Tandem works on this machine")
    p.add_argument("--target", default=os.environ.get("TANDEM_SELF_TEST_TARGET"),
                   help="target model id or GGUF path (default: the catalog's default pair)")
    p.add_argument("--draft", default=os.environ.get("TANDEM_SELF_TEST_DRAFT"),
                   help="draft model id or GGUF path (default: the catalog's default pair)")
    p.add_argument("--tokens", type=int, default=48, help="tokens per reply (default 48)")
    p.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
    p.add_argument("--prompt", default=PROMPT)
    p.add_argument("--no-gui", action="store_true", help="skip the Qt check (engine-only installs)")
    p.add_argument("--no-server", action="store_true", help="skip starting the engine process")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started, since = elapsed_since_start()
    results: dict = {"frozen": bool(getattr(sys, "frozen", False)), "executable": sys.executable,
                     "started_s": started}
    say(f"running {started:.2f}s after {since} ({'packaged' if results['frozen'] else 'from source'})")
    try:
        results.update(check_engine(args))
        if not args.no_server:
            results["server_s"] = check_server()
        if not args.no_gui:
            results["xcb"] = check_xcb()
            results["gui"] = check_gui()
    except (SelfTestError, TandemError) as exc:
        say(f"FAILED: {exc}")
        return 1
    except Exception as exc:  # a bug or a broken bundle: still one line, and a non-zero exit
        say(f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    say("OK")
    return 0


# ---------------------------------------------------------------- engine


def check_engine(args: argparse.Namespace) -> dict:
    from engine.cli.common import resolve_model
    from engine.models.paths import models_dir

    target = resolve_model(args.target, "target")
    draft = resolve_model(args.draft, "draft")
    if target is None or draft is None:
        raise SelfTestError("the self-test needs a target and a draft model")
    # Learned acceptance state would make runs differ from machine to machine, and the
    # user's must not change: use a scratch data dir (models stay where they are).
    saved = {k: os.environ.get(k) for k in ("TANDEM_MODELS_DIR", "TANDEM_DATA_DIR")}
    os.environ["TANDEM_MODELS_DIR"] = str(models_dir())
    scratch = tempfile.TemporaryDirectory(prefix="tandem-self-test-")
    os.environ["TANDEM_DATA_DIR"] = scratch.name
    try:
        return _run_pair(args, target, draft)
    finally:
        scratch.cleanup()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_pair(args: argparse.Namespace, target: str, draft: str) -> dict:
    from engine.cli import report
    from engine.decoding.events import TextEvent
    from engine.llama.backend import system_info
    from engine.runtime.session import Engine
    from engine.settings import GenerationSettings, LoadSettings

    say(f"target {target}")
    say(f"draft  {draft}")
    started = time.perf_counter()
    engine = Engine(LoadSettings(target=target, draft=draft, n_ctx=2048, threads=args.threads))
    load_s = time.perf_counter() - started
    say(f"models loaded in {load_s:.2f}s ({engine.threads} threads; {system_info().strip()})")
    first: list[tuple[float, str]] = []

    def on_event(event: object) -> None:
        if not first and isinstance(event, TextEvent):
            first.append(elapsed_since_start())

    messages = [{"role": "user", "content": args.prompt}]
    try:
        spec = GenerationSettings(max_tokens=args.tokens)  # greedy; speculation "auto"
        fast = engine.reply(messages, spec, on_event=on_event)
        plain_settings = GenerationSettings(max_tokens=args.tokens)
        plain_settings.spec.mode = "off"
        plain = engine.reply(messages, plain_settings, record_margins=True)
    finally:
        engine.close()
    if first:
        say(f"first token {first[0][0]:.2f}s after {first[0][1]} (cold start, models loaded in {load_s:.2f}s)")
    say(f"reply: {fast.text[:120]!r}{'…' if len(fast.text) > 120 else ''}")
    say("speculation auto:\n" + indent(report.summary(fast.stats.snapshot())))
    say("speculation off:\n" + indent(report.summary(plain.stats.snapshot())))
    verdict = compare(fast.tokens, plain.tokens, plain.margins)
    say(verdict)
    return {
        "target": target,
        "draft": draft,
        "load_s": load_s,
        "first_token_s": first[0][0] if first else None,
        "first_token_since": first[0][1] if first else None,
        "tokens": len(plain.tokens),
        "identical": fast.tokens == plain.tokens,
        "verdict": verdict,
        "spec_stats": fast.stats.snapshot(),
        "plain_stats": plain.stats.snapshot(),
    }


def compare(spec: list[int], plain: list[int], margins: list[float], near_tie: float = NEAR_TIE) -> str:
    """A one-line verdict, or SelfTestError when speculation changed a confident choice."""
    if spec == plain:
        return f"identical: {len(plain)} tokens with and without speculation"
    if not spec or not plain:
        raise SelfTestError(f"a reply is empty ({len(spec)} tokens with speculation, {len(plain)} without)")
    i = next((k for k, (a, b) in enumerate(zip(spec, plain, strict=False)) if a != b), min(len(spec), len(plain)))
    if i >= len(margins):
        raise SelfTestError(f"replies differ in length ({len(spec)} vs {len(plain)} tokens) with no margin at {i}")
    if margins[i] > near_tie:
        raise SelfTestError(
            f"speculation changed the greedy reply at token {i} (plain margin {margins[i]:.3f} > {near_tie}): "
            f"{spec[i] if i < len(spec) else 'end'} vs {plain[i] if i < len(plain) else 'end'}"
        )
    return f"identical up to token {i} of {len(plain)}, where plain decoding had a near-tie (margin {margins[i]:.3f})"


def indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


# ---------------------------------------------------------------- engine process


def server_command() -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable, "--engine-server"]
    return [sys.executable, "-m", "engine.runtime.server"]


def check_server(timeout: float = 60.0) -> float:
    """Start the engine process as the GUI does, ping it and switch its local API server
    on and off (the web stack is in the install); returns seconds to the end."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not getattr(sys, "frozen", False):
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    started = time.perf_counter()
    try:
        out = subprocess.run(
            server_command(), input='{"op": "ping", "id": "st"}\n{"op": "serve", "id": "st-api", "port": 0}\n'
                                    '{"op": "unserve", "id": "st-api-off"}\n{"op": "shutdown"}\n',
            capture_output=True, text=True, timeout=timeout, env=env,
        )
    except subprocess.TimeoutExpired:
        raise SelfTestError(f"the engine process did not answer a ping within {timeout:.0f}s") from None
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    types = [e.get("type") for e in events]
    if out.returncode != 0 or types[:2] != ["ready", "pong"]:
        tail = (out.stderr.strip().splitlines() or ["no stderr"])[-1]
        raise SelfTestError(f"engine process: exit {out.returncode}, said {types} ({tail})")
    if types[2:4] != ["serving", "unserved"]:
        why = next((e.get("message") for e in events if e.get("type") == "error"), types)
        raise SelfTestError(f"the local API server does not start in this install: {why}")
    took = time.perf_counter() - started
    say(f"engine process ({' '.join(Path(c).name for c in server_command())}) answered in {took:.2f}s")
    return took


# ---------------------------------------------------------------- Qt


def check_xcb(env: dict[str, str] | None = None, report: object | None = None) -> dict:
    """The X11 window's system libraries (app/xcb_check.py).  The offscreen check below
    cannot see them: the offscreen plugin links none of them."""
    from app import xcb_check

    if not sys.platform.startswith("linux"):
        return {"checked": False}
    report = report if report is not None else xcb_check.check()
    if report.note:
        say(f"xcb plugin: {report.note}")
        return {"checked": False, "note": report.note}
    if report.ok:
        say("xcb platform plugin: every system library it needs is installed")
        return {"checked": True, "missing": []}
    message = xcb_check.describe(report, xcb_check.packages_for(report.missing))
    if xcb_check.needs_check(env):
        raise SelfTestError(message)
    say(f"warning (no display here, so only a warning): {message}")
    return {"checked": True, "missing": report.missing}


def check_gui() -> dict:
    """Qt works headless and the GUI's modules and assets load; no window is shown."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # even with a display: a self-test opens nothing
    try:
        import importlib

        from PySide6 import __version__ as pyside_version
        from PySide6.QtWidgets import QApplication

        qapp = QApplication.instance() or QApplication(["tandem", "-platform", "offscreen"])
        # the window module pulls in every view, so the GUI's imports resolve inside the bundle
        importlib.import_module("app.views.main_window")
        icons = importlib.import_module("app.icons")
        image = icons.app_icon().pixmap(64, 64).toImage()
    except ImportError as exc:
        raise SelfTestError(f"GUI modules do not import: {exc}") from None
    if image.isNull() or not any(image.pixelColor(x, y).alpha() for x in range(0, 64, 8) for y in range(0, 64, 8)):
        raise SelfTestError("the app icon did not render (QtSvg plugin or assets/icons missing)")
    platform = qapp.platformName()
    say(f"Qt {pyside_version} on the {platform} platform; main window module and app icon load")
    return {"qt": pyside_version, "platform": platform}


if __name__ == "__main__":
    sys.exit(main())
