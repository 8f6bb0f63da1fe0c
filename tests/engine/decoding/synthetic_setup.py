"""Shared construction of synthetic target/draft pairs for engine tests."""

from __future__ import annotations

import numpy as np

from engine.decoding.costmodel import CostCurve, CostModel
from engine.decoding.synthetic import SyntheticLM, markov_logits, perturbed
from engine.drafters import DraftModel, PairKnowledge, make_drafter
from engine.settings import SpecSettings

# A cost curve shaped like a GPU's: verifying more tokens costs little more than one.
FLAT_COST = CostModel(CostCurve([1, 32], [0.010, 0.014]), CostCurve([1, 32], [0.002, 0.003]))


def pair(
    n_vocab: int = 6,
    seed: int = 0,
    noise: float = 1.0,
    n_ctx: int = 4096,
    eog: tuple[int, ...] = (),
):
    target_fn = markov_logits(n_vocab, seed, order=2, scale=1.5)
    draft_fn = perturbed(target_fn, n_vocab, seed + 1000, noise)
    target = SyntheticLM(target_fn, n_vocab, n_ctx=n_ctx, eog=eog)
    draft = SyntheticLM(draft_fn, n_vocab, n_ctx=n_ctx, eog=eog)
    return target, draft


def drafter_for(mode: str, draft: SyntheticLM, **spec_kw):
    spec = SpecSettings(mode=mode, **spec_kw)
    dm = DraftModel(draft, draft.eog_mask) if spec.uses_draft_model else None
    return make_drafter(spec, dm, PairKnowledge(None), FLAT_COST if mode == "auto" else None), spec


def token_bytes(token: int) -> bytes:
    return bytes([97 + token % 26])


def eog_mask(n_vocab: int, eog: tuple[int, ...] = ()) -> np.ndarray:
    m = np.zeros(n_vocab, dtype=bool)
    m[list(eog)] = True
    return m
