"""Build Tandem's desktop package for the machine this runs on (`make package`).

    .venv/bin/python packaging/build.py [--clean] [--no-self-test] [--no-archive]

1. PyInstaller (installed into this venv from pyproject's `package` extra if missing)
   runs packaging/tandem.spec: a onedir bundle, lean (bundle_config.py says what is left out).
2. The bundle is laid out for its platform under dist/:
     Linux    dist/tandem-<version>-linux-<arch>/  (tandem, _internal/, share/ with the .desktop
              file, AppStream metainfo and hicolor icons, install-desktop-entry.sh) + .tar.gz
     macOS    dist/Tandem.app + .zip            Windows  dist/tandem-<version>-windows-<arch>/ + .zip
3. The packaged program runs `--self-test` offscreen (models from the user data dir,
   provisioned by scripts/bootstrap.py); the build fails if it fails.
4. Prints the package size and the cold-start time to the first token, and writes
   them to dist/package-report.json.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # bundle_config; engine (also when not installed)

from bundle_config import (  # noqa: E402
    APP_ID,
    APP_NAME,
    DESKTOP_DIR,
    EXE_NAME,
    MAX_FILE_BYTES,
    PNG_SIZES,
    ROOT,
    WEIGHT_SUFFIXES,
)

DIST = ROOT / "dist"
WORK = ROOT / "build" / "pyinstaller"
SELF_TEST_TIMEOUT_S = 900
# The venv's llama.cpp is compiled for this machine's CPU (AVX-512 here), which would die
# with SIGILL on many users' machines.  The package gets its own build for x86-64-v3
# (AVX2/FMA/F16C/BMI2: Intel since 2013, AMD since 2015).
PORTABLE_X86_FEATURES = ("avx", "avx2", "fma", "f16c", "bmi2")


def say(msg: str) -> None:
    print(f"[tandem package] {msg}", flush=True)


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def ensure_pyinstaller() -> None:
    """`make package` installs the app without extras; add the `package` extra's tools."""
    requirement = next(r for r in project()["optional-dependencies"]["package"] if r.startswith("pyinstaller"))
    try:
        importlib.metadata.version("pyinstaller")
        return
    except importlib.metadata.PackageNotFoundError:
        pass
    say(f"installing {requirement}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", requirement], check=True)


def portable_cmake_args() -> str:
    """CMAKE_ARGS for a llama.cpp that runs on any machine of this OS and architecture;
    TANDEM_PACKAGE_CMAKE_ARGS overrides (e.g. a CUDA package: -DGGML_CUDA=on ...)."""
    from engine.llama.build_flags import RPC_FLAG, X86_FLAG_FOR_FEATURE

    if os.environ.get("TANDEM_PACKAGE_CMAKE_ARGS"):
        return os.environ["TANDEM_PACKAGE_CMAKE_ARGS"]
    if sys.platform == "darwin":
        return f"-DGGML_METAL=on -DGGML_NATIVE=OFF {RPC_FLAG}"  # Metal does the work; no M3-only CPU code on an M1
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags = [f"-D{flag}=ON" for feature, flag in X86_FLAG_FOR_FEATURE.items() if feature in PORTABLE_X86_FEATURES]
        return " ".join(["-DGGML_NATIVE=OFF", *flags, RPC_FLAG])
    return f"-DGGML_NATIVE=OFF {RPC_FLAG}"


def llama_for_package(mode: str) -> dict[str, str]:
    """Environment for tandem.spec: which llama.cpp libraries to bundle, and the build
    description `tandem doctor` shows.  "venv" bundles the venv's own (this CPU only)."""
    if mode == "venv":
        return {}
    sys.path.insert(0, str(ROOT / "scripts"))
    import bootstrap  # builds once per CMAKE_ARGS, cached outside the repo (~/.cache/tandem/wheels)

    from engine.llama.build_flags import BuildChoice

    args = portable_cmake_args()
    backend = "metal" if "GGML_METAL=on" in args else "cuda" if "GGML_CUDA=on" in args else "cpu"
    choice = BuildChoice(backend, args, "portable package build")
    wheel = bootstrap.ensure_llama_wheel(choice)
    lib_dir = WORK / f"llama-lib-{choice.key}"
    if not lib_dir.is_dir():
        tmp = lib_dir.with_name(lib_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                if member.startswith("llama_cpp/lib/") and not member.endswith("/"):
                    (tmp / Path(member).name).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / Path(member).name).write_bytes(zf.read(member))
        os.replace(tmp, lib_dir)
    info = lib_dir.with_name(f"build-info-{choice.key}") / "tandem-build.txt"  # the name `tandem doctor` reads
    info.parent.mkdir(parents=True, exist_ok=True)
    info.write_text(f"{backend}\n{args}\n")
    say(f"llama.cpp for the package: {wheel.name} built with CMAKE_ARGS={args}")
    return {"TANDEM_LLAMA_LIB_DIR": str(lib_dir), "TANDEM_BUILD_INFO": str(info)}


def gui_problem() -> str | None:
    """The GUI is written alongside; if it does not import yet, still build and test the
    engine part (the self-test runs with --no-gui) instead of failing outright."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    code = "import app.main, app.views.main_window"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode == 0:
        return None
    return (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]


def run_pyinstaller(clean: bool, env: dict[str, str]) -> Path:
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(WORK / "dist"), "--workpath", str(WORK / "work"), str(HERE / "tandem.spec")]
    if clean:
        cmd.insert(3, "--clean")
    shutil.rmtree(WORK / "dist", ignore_errors=True)
    subprocess.run(cmd, cwd=ROOT, check=True, env={**os.environ, **env})
    if sys.platform == "darwin":
        return WORK / "dist" / f"{APP_NAME}.app"
    return WORK / "dist" / EXE_NAME


def strip_python(folder: Path) -> None:
    """Linux: drop the symbol tables of CPython's own libraries (libpython shrinks from
    23 to 6 MB).  Only these: stripping libraries that auditwheel patched breaks them."""
    tool = shutil.which("strip")
    if sys.platform != "linux" or tool is None:
        return
    internal = folder / "_internal"
    targets = [*internal.glob("libpython3*.so*"), *internal.glob("python3*/lib-dynload/*.so")]
    targets = [t for t in targets if t.is_file() and not t.is_symlink()]
    if targets:
        subprocess.run([tool, "--strip-unneeded", *map(str, targets)], check=True)


def check_no_weights(folder: Path) -> None:
    """The package must never carry models: they are provisioned into the user data dir."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and (
            path.suffix in WEIGHT_SUFFIXES or path.stat().st_size > MAX_FILE_BYTES
        ):
            raise SystemExit(f"{path} looks like model weights; the package must not contain any")


def platform_tag() -> str:
    system = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower().replace("amd64", "x86_64").replace("aarch64", "arm64")
    return f"{system}-{machine}"


def lay_out(built: Path, version: str, dist: Path) -> tuple[Path, Path]:
    """Move the bundle to dist/ and add the platform's desktop integration; returns
    (the folder or .app users get, the program to run for the self-test)."""
    if sys.platform == "darwin":
        dest = dist / built.name
        _replace(built, dest)
        return dest, dest / "Contents" / "MacOS" / EXE_NAME
    dest = dist / f"{EXE_NAME}-{version}-{platform_tag()}"
    _replace(built, dest)
    if sys.platform == "win32":
        return dest, dest / f"{EXE_NAME}-cli.exe"
    share = dest / "share"
    for sub, name in (("applications", f"{APP_ID}.desktop"), ("metainfo", f"{APP_ID}.metainfo.xml")):
        (share / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy2(DESKTOP_DIR / name, share / sub / name)
    for size in [f"{n}x{n}" for n in PNG_SIZES] + ["scalable"]:
        src = DESKTOP_DIR / "icons" / "hicolor" / size / "apps"
        shutil.copytree(src, share / "icons" / "hicolor" / size / "apps", dirs_exist_ok=True)
    installer = dest / "install-desktop-entry.sh"
    shutil.copy2(HERE / "linux" / "install-desktop-entry.sh", installer)
    installer.chmod(0o755)
    return dest, dest / EXE_NAME


def _replace(src: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), dest)


def archive(folder: Path) -> Path:
    if sys.platform == "linux":
        out = folder.with_name(folder.name + ".tar.gz")
        with tarfile.open(out, "w:gz", compresslevel=6) as tar:
            tar.add(folder, arcname=folder.name)  # keeps the symlinks and the executable bits
        return out
    out = folder.with_name(folder.name + ".zip")  # macOS: `ditto -c -k --keepParent` keeps signatures; see macos.md
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, Path(folder.name) / path.relative_to(folder))
    return out


def self_test(program: Path, gui: bool) -> dict:
    """Run the packaged program's --self-test offscreen, streaming its output."""
    report = WORK / "self-test.json"
    report.unlink(missing_ok=True)
    cmd = [str(program), "--self-test", "--json", str(report)] + ([] if gui else ["--no-gui"])
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    for var in ("PYTHONPATH", "PYTHONHOME"):  # the bundle must stand on its own
        env.pop(var, None)
    say("running " + " ".join(cmd[:2]) + " (offscreen)")
    try:
        code = subprocess.run(cmd, env=env, cwd=Path.home(), timeout=SELF_TEST_TIMEOUT_S).returncode
    except subprocess.TimeoutExpired:
        raise SystemExit(f"self-test did not finish within {SELF_TEST_TIMEOUT_S}s") from None
    if code != 0:
        raise SystemExit(f"the packaged program failed its self-test (exit {code})")
    return json.loads(report.read_text())


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clean", action="store_true", help="rebuild from scratch (PyInstaller --clean)")
    ap.add_argument("--no-self-test", action="store_true", help="skip running the packaged --self-test")
    ap.add_argument("--no-archive", action="store_true", help="skip the .tar.gz/.zip")
    ap.add_argument("--dist", type=Path, default=DIST, help="where the package goes (default: dist/)")
    ap.add_argument("--llama", choices=("portable", "venv"), default="portable",
                    help="portable: a llama.cpp build for any CPU of this architecture (default; built once, "
                         "cached); venv: the venv's build, tuned to this CPU only")
    args = ap.parse_args()

    started = time.perf_counter()
    version = project()["version"]
    ensure_pyinstaller()
    problem = gui_problem()
    if problem:
        say(f"WARNING: the GUI does not import ({problem}); packaging and testing the engine part only")
    llama_env = llama_for_package(args.llama)
    say(f"building Tandem {version} for {platform_tag()} with PyInstaller")
    dist = args.dist.resolve()
    folder, program = lay_out(run_pyinstaller(args.clean, llama_env), version, dist)
    strip_python(folder)
    check_no_weights(folder)
    built_s = time.perf_counter() - started
    result: dict = {"version": version, "platform": platform_tag(), "folder": str(folder),
                    "folder_bytes": tree_size(folder), "build_s": round(built_s, 1), "gui_checked": problem is None,
                    "llama": args.llama}
    say(f"built {folder} ({mb(result['folder_bytes'])}) in {built_s:.0f}s")
    if not args.no_archive:
        packed = archive(folder)
        result.update(archive=str(packed), archive_bytes=packed.stat().st_size)
        say(f"archived {packed} ({mb(packed.stat().st_size)})")
    if not args.no_self_test:
        test = self_test(program, gui=problem is None)
        result.update({k: test.get(k) for k in ("first_token_s", "first_token_since", "load_s", "verdict", "server_s")})
    result["total_s"] = round(time.perf_counter() - started, 1)
    (dist / "package-report.json").write_text(json.dumps(result, indent=1))
    say(f"package: {folder} {mb(result['folder_bytes'])}"
        + (f", archive {mb(result['archive_bytes'])}" if "archive_bytes" in result else ""))
    if result.get("first_token_s") is not None:
        say(f"cold start to first token: {result['first_token_s']:.2f}s (from {result['first_token_since']}, "
            f"models loaded in {result['load_s']:.2f}s)")
    say(f"done in {result['total_s']:.0f}s; report in {dist / 'package-report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
