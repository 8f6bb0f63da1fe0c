"""Source "hub": the Hugging Face Hub through huggingface_hub (honours HF_ENDPOINT,
HF_HUB_OFFLINE and HF_TOKEN).  Metadata comes from `get_hf_file_metadata` /
`HfApi.get_paths_info`, bytes from `huggingface_hub.file_download.http_get` into our own
`.part` file, so a cancelled or dropped download resumes where it stopped (recent
huggingface_hub versions delete their own partial files)."""

from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from engine.errors import (
    SourceUnavailableError,
    TandemError,
)
from engine.models import files
from engine.models.catalog import CatalogModel, Source
from engine.models.paths import models_dir

_HUB_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class _HubFile:
    url: str  # where the bytes are (the CDN location when the Hub redirects)
    headers: dict[str, str]
    size: int | None
    sha256: str
    commit: str | None


def from_hub(model: CatalogModel, report: files.Progress, cancel: files.CancelToken | None) -> Path:
    src = model.source("hub")
    assert src is not None  # pull() tries only the sources a model has
    remote = _hub_lookup(model, src)
    dest = models_dir() / model.file
    if dest.is_file() and files.file_matches(dest, remote.sha256, remote.size, report, cancel):
        _learn(model, remote)  # a Hub-only file that was already here, now vouched for
        return dest
    part = files.partial_dir() / f"{model.file}.{remote.sha256[:16]}.hub.part"
    actual = _hub_fetch(remote, part, report, cancel)
    path = files.install(part, dest, remote.sha256, remote.size, actual, f"the Hub ({src.repo})", report, cancel)
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
    if not isinstance(sha, str) or not files.SHA_RE.match(sha):
        raise SourceUnavailableError(f"the Hub gave no sha256 for {src.repo}/{src.file}")
    return sha, getattr(lfs, "size", None)


def _check_hub_agrees(src: Source, etag: str | None, hub_size: int | None, sha: str, size: int | None) -> None:
    # For LFS files the Hub's ETag is the sha256: a different one means a changed
    # upstream file, which would only fail its checksum after the whole download.
    tag = (etag or "").strip('"').removeprefix("W/").strip('"')
    if files.SHA_RE.match(tag) and tag != sha:
        raise SourceUnavailableError(
            f"the Hub's {src.repo}/{src.file} differs from the catalog (sha256 {tag}, expected {sha})"
        )
    if hub_size is not None and size is not None and hub_size != size:
        raise SourceUnavailableError(
            f"the Hub's {src.repo}/{src.file} has {hub_size} bytes, the catalog expects {size}"
        )


def _describe_hub_error(exc: BaseException, src: Source) -> str:
    names = {cls.__name__ for cls in type(exc).__mro__}
    detail = files.one_line(str(exc)) or type(exc).__name__
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


def _hub_fetch(remote: _HubFile, part: Path, report: files.Progress, cancel: files.CancelToken | None) -> str | None:
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
    hasher = files.hash_prefix(part, have, report, cancel)
    if have:
        report("download", have, remote.size, f"resuming at {files.mb(have)}")
    with open(part, "ab") as raw:
        sink = _HashingSink(raw, hasher, have, remote.size, files.Ticker(report, "download", remote.size), cancel)
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
                f"Hub download failed ({type(exc).__name__}: {files.one_line(str(exc))}); "
                f"{files.mb(sink.done)} kept for resuming"
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
        tick: files.Ticker,
        cancel: files.CancelToken | None,
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
        files.check_cancel(self.cancel)
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
    with files.store_lock:
        learned = files.load_json(files.learned_path())
        learned[model.id] = {"sha256": remote.sha256, "size": remote.size, "commit": remote.commit}
        files.save_json(files.learned_path(), learned)

