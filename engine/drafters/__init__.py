"""Drafters, selectable by name (`--spec`): they propose token trees through the
`engine.decoding.drafter` interface (draft model chains and trees, n-gram lookup, staged, auto).

May import `engine.decoding`, `engine.llama`, `engine.errors`, `engine.settings`."""

from __future__ import annotations

from engine.decoding.costmodel import CostModel
from engine.decoding.drafter import Drafter, DraftRequest, NoDrafter, StepOutcome
from engine.drafters.chain import ChainDrafter
from engine.drafters.draft_model import DraftModel
from engine.drafters.dynamic_tree import DynamicTreeDrafter
from engine.drafters.history import SpeculationHistory
from engine.drafters.learning import PairKnowledge
from engine.drafters.ngram_drafter import NgramDrafter
from engine.drafters.staged import StagedDrafter
from engine.errors import TandemError
from engine.settings import SPEC_MODES, SpecSettings


def make_drafter(
    spec: SpecSettings,
    dm: DraftModel | None,
    knowledge: PairKnowledge,
    cost: CostModel | None = None,
    history: SpeculationHistory | None = None,
) -> Drafter:
    """The drafter for `spec.mode`.  Modes that need the draft model fail clearly
    without one, except `auto`, which falls back to the model-free stage.  `history`
    is the user's speculation history (engine/drafters/history.py), for the stages
    that read it."""
    mode = spec.mode
    if mode not in SPEC_MODES:
        raise TandemError(f"unknown speculation mode {mode!r}; choose one of {', '.join(SPEC_MODES)}")
    if mode == "off":
        return NoDrafter()
    if mode == "ngram":
        return NgramDrafter(spec, knowledge, history)
    if mode == "auto":
        if cost is None:
            raise ValueError("auto needs the measured decode-cost curve")
        return StagedDrafter(dm, spec, knowledge, cost=cost, history=history)
    if dm is None:
        raise TandemError(f"--spec {mode} needs a draft model (--draft); `auto` and `ngram` work without one")
    if mode == "chain":
        return ChainDrafter(dm, spec, knowledge)
    if mode in ("tree", "c2t"):
        return DynamicTreeDrafter(dm, spec, knowledge, classifier=mode == "c2t")
    return StagedDrafter(dm, spec, knowledge, history=history)


__all__ = [
    "DraftModel", "DraftRequest", "Drafter", "PairKnowledge", "SpeculationHistory", "StepOutcome", "make_drafter",
]
