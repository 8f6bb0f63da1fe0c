"""From the user's model choice (ids) to files the engine can load.

Everything here goes through engine.models.catalog and engine.models.provision, never through
hard-coded paths.  `resolve` may hash a freshly copied model file (seconds for a
gigabyte), so the window calls it from a background task, never on the GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.settings_store import NO_DRAFT, ModelChoice
from engine.llama.rpc import parse_endpoints
from engine.models import catalog, provision
from engine.settings import LoadSettings


@dataclass
class Resolved:
    target_id: str
    draft_id: str | None
    target_path: Path | None
    draft_path: Path | None
    missing: list[str] = field(default_factory=list)  # ids not present and verified
    is_default_pair: bool = False

    @property
    def ready(self) -> bool:
        return not self.missing

    def load_settings(self, choice: ModelChoice) -> LoadSettings:
        assert self.target_path is not None
        return LoadSettings(
            target=str(self.target_path),
            draft=str(self.draft_path) if self.draft_path is not None else None,
            n_ctx=choice.n_ctx,
            threads=choice.threads or None,
            gpu_layers=choice.gpu_layers,
            draft_gpu_layers=choice.draft_gpu_layers,
            rpc=parse_endpoints(choice.remote),
        )


def pair_ids(choice: ModelChoice) -> tuple[str, str | None]:
    """(target id, draft id or None) the choice means, filling blanks from the catalog."""
    default = catalog.default_pair()
    target = choice.target or default.target
    if choice.draft == NO_DRAFT:
        return target, None
    if choice.draft:
        return target, choice.draft
    if target == default.target:
        return target, default.draft
    pair = next((p for p in catalog.pairs() if p.target == target), None)
    return target, pair.draft if pair else None


def resolve(choice: ModelChoice) -> Resolved:
    """Look the chosen models up on disk (may hash: call off the GUI thread)."""
    target_id, draft_id = pair_ids(choice)
    target_path = _path(target_id)
    draft_path = _path(draft_id) if draft_id else None
    missing = [i for i, p in ((target_id, target_path), (draft_id, draft_path)) if i and p is None]
    default = catalog.default_pair()
    return Resolved(
        target_id=target_id,
        draft_id=draft_id,
        target_path=target_path,
        draft_path=draft_path,
        missing=missing,
        is_default_pair=(target_id, draft_id) == (default.target, default.draft),
    )


def _path(model_id: str) -> Path | None:
    try:
        return provision.local_path(model_id)
    except Exception:  # an id that vanished from the catalog or registry: treat as missing
        return None


def display_name(model_id: str | None) -> str:
    """A person-friendly name for an id (catalog name, registered GGUF name, or the id)."""
    if not model_id:
        return "none"
    entry = catalog.find(model_id)
    if entry is not None:
        return entry.name
    local = next((m for m in provision.local_models() if m.id == model_id), None)
    return local.name if local is not None else model_id


def short_name(model_id: str | None) -> str:
    """Shorter label for the status bar: the catalog's parameter count when known."""
    if not model_id:
        return "none"
    entry = catalog.find(model_id)
    if entry is not None and entry.params:
        return f"{entry.family} {entry.params}"
    return display_name(model_id)


def draft_label(target_id: str, draft_id: str) -> str:
    """The draft's name, shortened to its size when it is the target's own family."""
    target, draft = catalog.find(target_id), catalog.find(draft_id)
    if target is not None and draft is not None and target.family == draft.family and draft.params:
        return f"{draft.params} ({draft.quant})" if draft.quant else draft.params
    return display_name(draft_id)


def pull_size(model_ids: list[str]) -> int | None:
    """Bytes to download for these catalog models, if the catalog knows every size."""
    total = 0
    for model_id in model_ids:
        entry = catalog.find(model_id)
        if entry is None or entry.size is None:
            return None
        total += entry.size
    return total
