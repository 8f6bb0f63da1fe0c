#!/usr/bin/env python3
"""Set up Tandem on this machine, then launch the app or run the tests.

    python3 scripts/bootstrap.py run     # install, provision the default models, open the app
    python3 scripts/bootstrap.py test    # install with test tools, provision models, run pytest

Idempotent: the virtual environment, the llama.cpp wheel (cached per build
flags, outside the repo) and the models (in the user data directory) are reused.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.llama.build_flags import LLAMA_CPP_PYTHON_VERSION, BuildChoice, choose_build  # noqa: E402

VENV = Path(os.environ.get("TANDEM_VENV", ROOT / ".venv"))
TEST_MODELS = ["qwen2.5-coder-1.5b-instruct-q4_k_m", "qwen2.5-coder-0.5b-instruct-q4_k_m",
               "smollm2-135m-instruct-q4_1"]


def say(msg: str) -> None:
    print(f"[tandem setup] {msg}", flush=True)


def cache_dir() -> Path:
    if os.environ.get("TANDEM_CACHE_DIR"):
        return Path(os.environ["TANDEM_CACHE_DIR"])
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "tandem"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "tandem" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tandem"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def run(cmd: list[str | Path], **kw) -> None:
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def ensure_venv() -> None:
    py = venv_python()
    if py.exists() and subprocess.run([py, "-c", "pass"]).returncode == 0:
        return
    say(f"creating virtual environment in {VENV}")
    run([sys.executable, "-m", "venv", "--clear", VENV])
    run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"])


def ensure_llama_wheel(choice: BuildChoice) -> Path:
    """Build llama-cpp-python once per (version, CMAKE_ARGS).  pip's own wheel cache
    ignores CMAKE_ARGS, so it would silently reuse a wheel built with other flags."""
    wheel_dir = cache_dir() / "wheels" / f"llama-cpp-python-{LLAMA_CPP_PYTHON_VERSION}-{choice.key}"
    wheels = sorted(wheel_dir.glob("llama_cpp_python-*.whl"))
    if wheels:
        return wheels[-1]
    say(f"building llama.cpp ({choice.backend}: {choice.reason}); this takes 5-8 minutes once")
    say(f"CMAKE_ARGS={choice.cmake_args}")
    env = dict(os.environ, CMAKE_ARGS=choice.cmake_args)
    with tempfile.TemporaryDirectory() as tmp:
        run([venv_python(), "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
             "--no-binary", "llama-cpp-python", "-w", tmp,
             f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}"], env=env)
        built = sorted(Path(tmp).glob("llama_cpp_python-*.whl"))
        if not built:
            raise SystemExit("llama-cpp-python build produced no wheel")
        wheel_dir.mkdir(parents=True, exist_ok=True)
        (wheel_dir / "CMAKE_ARGS").write_text(choice.cmake_args + "\n")
        dest = wheel_dir / built[-1].name
        shutil.copy2(built[-1], dest.with_suffix(".part"))
        os.replace(dest.with_suffix(".part"), dest)
    return dest


def stamp(name: str) -> Path:
    return VENV / f".tandem-{name}"


def ensure_installed(choice: BuildChoice, extras: list[str]) -> None:
    wheel = ensure_llama_wheel(choice)
    if not stamp("llama").exists() or stamp("llama").read_text() != choice.key:
        say(f"installing {wheel.name}")
        run([venv_python(), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", wheel])
        stamp("llama").write_text(choice.key)
        (VENV / "tandem-build.txt").write_text(f"{choice.backend}\n{choice.cmake_args}\n")
    spec = "." + (f"[{','.join(extras)}]" if extras else "")
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + spec.encode()).hexdigest()
    if not stamp("project").exists() or stamp("project").read_text() != digest:
        say(f"installing tandem {spec} and its dependencies")
        run([venv_python(), "-m", "pip", "install", "-q", "--find-links", wheel.parent,
             "-e", spec], cwd=ROOT)
        stamp("project").write_text(digest)


def ensure_display_libs() -> None:
    """Before the window opens: the system libraries Qt's xcb plugin needs (README,
    "System packages"), found with ldd on the venv's plugin.  Installed with apt-get as
    root or through passwordless sudo, as the rest of the set-up assumes; otherwise the
    exact command is printed and the set-up stops.  No display, macOS, Windows: nothing to do."""
    from app import xcb_check

    if not xcb_check.needs_check():
        return
    pyside = next(iter(sorted(VENV.glob("lib/python*/site-packages/PySide6"))), None)
    plugin = xcb_check.find_plugin(pyside)
    tried: set[str] = set()
    while True:
        report = xcb_check.check(plugin)
        if report.note:
            say(f"display check skipped: {report.note}")
        if report.ok:
            if tried:
                say("the libraries Qt's xcb plugin needs are installed")
            return
        apt = shutil.which("apt-get") is not None
        packages = xcb_check.packages_for(report.missing, xcb_check.apt_has if shutil.which("apt-cache") else None)
        if not apt:
            raise SystemExit(f"[tandem setup] Qt's xcb platform plugin ({plugin}) cannot load: missing "
                             f"{', '.join(report.missing)}. Install your distribution's packages that provide them "
                             "(on Debian/Ubuntu: " + xcb_check.shell_line(packages) + "), then run this again.")
        if set(packages) <= tried:
            raise SystemExit("[tandem setup] " + xcb_check.describe(report, packages)
                             + " (apt-get installed them, yet the plugin still cannot find them)")
        root = hasattr(os, "geteuid") and os.geteuid() == 0
        if not root and (shutil.which("sudo") is None
                         or subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0):
            raise SystemExit("[tandem setup] " + xcb_check.describe(report, packages)
                             + "\n(not root and sudo needs a password, so the set-up cannot install them itself)")
        say(f"Qt's xcb plugin is missing {', '.join(report.missing)}: installing {' '.join(packages)}")
        if not install_apt(packages, root):
            raise SystemExit("[tandem setup] apt-get could not install them. " + xcb_check.describe(report, packages))
        tried.update(packages)


def install_apt(packages: list[str], root: bool) -> bool:
    """apt-get install; on a machine whose package lists were never fetched (fresh
    images), apt-get update once and try again."""
    from app import xcb_check

    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = xcb_check.apt_command(packages, root=root)
    if subprocess.run(cmd, env=env).returncode == 0:
        return True
    update = ["apt-get", "update"] if root else ["sudo", "-n", "apt-get", "update"]
    return subprocess.run(update, env=env).returncode == 0 and subprocess.run(cmd, env=env).returncode == 0


def provision(models: list[str]) -> None:
    run([venv_bin("tandem"), "models", "pull", *models])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["install", "run", "test"], nargs="?", default="install")
    ap.add_argument("pytest_args", nargs="*", help="extra arguments for pytest (test only)")
    args = ap.parse_args()

    choice = choose_build()
    ensure_venv()
    # `server`: the local OpenAI-compatible server (app switch, `tandem serve`; its tests need it too)
    ensure_installed(choice, ["server", "dev"] if args.action == "test" else ["server"])
    if args.action == "test":
        provision(TEST_MODELS)
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        return subprocess.run([venv_python(), "-m", "pytest", *args.pytest_args], cwd=ROOT, env=env).returncode
    if args.action == "run":
        ensure_display_libs()  # before the long model download: a missing library fails fast
    provision(["--default-pair"])
    if args.action == "run":
        os.execv(venv_bin("tandem"), [str(venv_bin("tandem"))])
    return 0


if __name__ == "__main__":
    sys.exit(main())
