"""Source "local": a file already on this machine whose sha256 matches — in
models_dir(), among the GGUFs the user registered by path (data_dir()/local_models.json,
never moved or deleted by Tandem), or in huggingface_hub's own cache."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.models import files
from engine.models.catalog import CatalogModel
from engine.models.paths import data_dir, models_dir


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


def _registry_path() -> Path:
    return data_dir() / "local_models.json"


def load_registry() -> dict[str, LocalModel]:
    raw = files.load_json(_registry_path())
    models: dict[str, LocalModel] = {}
    for model_id, entry in raw.items():
        try:
            models[model_id] = LocalModel(**{**entry, "id": model_id, "path": Path(entry["path"])})
        except (TypeError, KeyError):
            continue  # a hand-edited or older entry: skip it rather than fail every command
    return models


def save_registry(registry: dict[str, LocalModel]) -> None:
    data = {
        m.id: {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(m).items() if k != "id"}
        for m in registry.values()
    }
    files.save_json(_registry_path(), data)


def unregister(model_id: str) -> None:
    with files.store_lock:
        registry = load_registry()
        registry.pop(model_id, None)
        save_registry(registry)


def new_local_id(path: Path, registry: dict[str, LocalModel]) -> str:
    # "local:" keeps user models out of the catalog's id space
    base = "local:" + (re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-.") or "model")
    model_id, n = base, 2
    while model_id in registry:
        model_id, n = f"{base}-{n}", n + 1
    return model_id


def registered_intact(model: LocalModel) -> bool:
    return model.path.is_file() and files.file_sha256(model.path) == model.sha256


def from_local(model: CatalogModel, report: files.Progress, cancel: files.CancelToken | None) -> Path | None:
    return find_verified(model, report, cancel)


def find_verified(model: CatalogModel, report: files.Progress, cancel: files.CancelToken | None) -> Path | None:
    sha, size = files.expected(model)
    own = models_dir() / model.file
    if own.is_file() and sha is not None:
        if files.file_matches(own, sha, size, report, cancel):
            return own
        files.quarantine(own)  # ours, under the real name, and wrong: never leave it loadable
    if sha is None:
        return None  # Hub-only entry not checked against the Hub yet: cannot vouch for it
    registered = next((m.path for m in load_registry().values() if m.sha256 == sha and registered_intact(m)), None)
    return registered or _from_hf_cache(model, sha, size, report, cancel)


def _from_hf_cache(
    model: CatalogModel, sha: str, size: int | None, report: files.Progress, cancel: files.CancelToken | None
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
    return path if files.file_matches(path, sha, size, report, cancel) else None

