"""The on-disk side of provisioning, shared by every source: hashing with a memo,
progress ticks and cancellation, moving a finished download into place (or into
quarantine), and the small JSON stores.

On-disk state:
  models_dir()/<file>                  verified model files
  models_dir()/.partial/               resumable downloads, assembly in progress
  models_dir()/quarantine/<file>.bad   the last file that failed its check
  cache_dir()/verified.json            sha256 memo, by (path, size, mtime): a 1 GB file is hashed once
  data_dir()/hub_hashes.json           sha256 learned from the Hub for catalog entries without one
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from engine.errors import (
    Cancelled,
    ChecksumError,
    ModelFileError,
)
from engine.llama import gguf_check
from engine.models.catalog import CatalogModel
from engine.models.paths import cache_dir, data_dir, models_dir

Progress = Callable[[str, int, int | None, str], None]


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


BLOCK = 8 * 1024 * 1024


_TICK_S = 0.1  # progress callbacks at most this often (the GUI repaints on each)


SHA_RE = re.compile(r"^[0-9a-f]{64}$")


store_lock = threading.RLock()  # the JSON stores are read-modify-written from worker threads


def silent(stage: str, done: int, total: int | None, message: str) -> None:
    pass


def check_cancel(cancel: CancelToken | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled; partial files are kept and the next pull resumes")


def file_sha256(
    path: Path,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    *,
    rehash: bool = False,
) -> str:
    """sha256 of `path`, memoized by (path, size, mtime) so a big model is hashed once."""
    st = path.stat()
    if not rehash:
        cached = memo_get(path, st)
        if cached is not None:
            return cached
    sha = _hash_file(path, st.st_size, progress or silent, cancel)
    _memo_put(path, sha, st)  # the stat from before hashing: a file changed meanwhile will not match
    return sha


def _hash_file(path: Path, total: int, report: Progress, cancel: CancelToken | None) -> str:
    hasher = hashlib.sha256()
    tick = Ticker(report, "verify", total, f"checking {path.name}")
    done = 0
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            check_cancel(cancel)
            hasher.update(block)
            done += len(block)
            tick(done)
    return hasher.hexdigest()


def hash_prefix(path: Path, n: int, report: Progress, cancel: CancelToken | None) -> Any:
    """A sha256 object fed with the first n bytes of path (what an earlier run downloaded)."""
    hasher = hashlib.sha256()
    if n == 0:
        return hasher
    tick = Ticker(report, "verify", n, "checking the partial download")
    done = 0
    with open(path, "rb") as f:
        while done < n and (block := f.read(min(BLOCK, n - done))):
            check_cancel(cancel)
            hasher.update(block)
            done += len(block)
            tick(done)
    return hasher


class Ticker:
    """Rate-limits progress callbacks; `force` for the ones that must get through."""

    def __init__(self, report: Progress, stage: str, total: int | None, message: str = "") -> None:
        self.report, self.stage, self.total, self.message = report, stage, total, message
        self.last = 0.0

    def __call__(self, done: int, message: str | None = None, *, force: bool = False) -> None:
        if message is not None:
            self.message = message
        now = time.monotonic()
        if force or now - self.last >= _TICK_S or done == self.total:
            self.last = now
            self.report(self.stage, done, self.total, self.message)


def install(
    part: Path,
    dest: Path,
    sha: str,
    size: int | None,
    actual_sha: str | None,
    origin: str,
    report: Progress,
    cancel: CancelToken | None,
) -> Path:
    """Move a finished download into place, or into quarantine if it is not what we expect."""
    actual_size = part.stat().st_size
    actual = actual_sha or _hash_file(part, actual_size, report, cancel)
    if actual != sha or (size is not None and actual_size != size):
        where = quarantine(part, dest.name)
        raise ChecksumError(
            f"checksum mismatch for {dest.name} from {origin}: expected sha256 {sha}"
            f"{f' ({size} bytes)' if size is not None else ''}, "
            f"got {actual} ({actual_size} bytes); moved to {where}"
        )
    try:
        gguf_check.check(part)
    except ModelFileError as exc:
        where = quarantine(part, dest.name)
        raise ModelFileError(f"{dest.name} from {origin} failed the GGUF check ({exc}); moved to {where}") from None
    os.replace(part, dest)  # atomic: the real name only ever holds a verified file
    _memo_put(dest, actual, dest.stat())
    remove_if_empty(part.parent)
    return dest


def remove_if_empty(directory: Path) -> None:
    # not empty (another download in progress) or already gone: leave it
    with contextlib.suppress(OSError):
        directory.rmdir()


def quarantine(path: Path, name: str | None = None) -> Path:
    """Move a failed file out of the way.  One copy per name, so failures cannot fill the disk."""
    qdir = models_dir() / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    target = qdir / f"{name or path.name}.bad"
    os.replace(path, target)
    memo_drop(path)
    return target


def _memo_path() -> Path:
    return cache_dir() / "verified.json"


def learned_path() -> Path:
    return data_dir() / "hub_hashes.json"


def partial_dir() -> Path:
    return models_dir() / ".partial"


def memo_get(path: Path, st: os.stat_result) -> str | None:
    entry = load_json(_memo_path()).get(str(path.resolve()))
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        sha = entry.get("sha256")
        return sha if isinstance(sha, str) else None
    return None


def _memo_put(path: Path, sha: str, st: os.stat_result) -> None:
    with store_lock:
        memo = load_json(_memo_path())
        memo[str(path.resolve())] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
        save_json(_memo_path(), memo)


def memo_drop(path: Path) -> None:
    with store_lock:
        memo = load_json(_memo_path())
        if memo.pop(str(path.resolve()), None) is not None:
            save_json(_memo_path(), memo)


def load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or damaged: these stores are all re-creatable or re-registrable
    return data if isinstance(data, dict) else {}


def save_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)  # readers never see half a file


def one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def expected(model: CatalogModel) -> tuple[str | None, int | None]:
    """(sha256, size) the file must have: the catalog's, else what the Hub told us."""
    if model.sha256 is not None:
        return model.sha256, model.size
    learned = load_json(learned_path()).get(model.id)
    if isinstance(learned, dict) and SHA_RE.match(str(learned.get("sha256", ""))):
        return learned["sha256"], learned.get("size")
    return None, model.size


def file_matches(
    path: Path,
    sha: str,
    size: int | None,
    report: Progress,
    cancel: CancelToken | None,
    *,
    rehash: bool = False,
) -> bool:
    if size is not None and path.stat().st_size != size:
        return False  # no need to hash
    return file_sha256(path, report, cancel, rehash=rehash) == sha

