"""Source "derived": a model made on this machine from another one with a recorded
recipe (engine/models/derive.py), installed like a download — only if its sha256 is
the one the catalog records."""

from __future__ import annotations

from pathlib import Path

from engine.errors import SourceUnavailableError
from engine.models import catalog, files, local
from engine.models.catalog import CatalogModel
from engine.models.paths import models_dir


def from_derived(model: CatalogModel, report: files.Progress, cancel: files.CancelToken | None) -> Path:
    """Re-quantize the (verified) source model with the recorded recipe."""
    from engine.models.derive import Recipe, derive

    src = model.source("derived")
    assert src is not None and src.base is not None  # pull() tries only the sources a model has
    base = local.find_verified(catalog.get(src.base), files.silent, cancel)
    if base is None:
        raise SourceUnavailableError(f"{model.id} is derived from {src.base}, which is not on this machine: "
                                     f"run `tandem models pull {src.base}` first")
    report("derive", 0, None, f"re-quantizing {base.name}")
    part_dir = files.partial_dir()
    part_dir.mkdir(parents=True, exist_ok=True)
    part = part_dir / f"{model.file}.derived.part"
    derive(base, part, Recipe.from_dict(dict(src.recipe)), cancel=cancel)  # type: ignore[arg-type]
    origin = f"a derivation from {src.base} (llama.cpp's quantizer gave other bytes than recorded)"
    return files.install(part, models_dir() / model.file, model.sha256 or "", model.size, None, origin, report, cancel)
