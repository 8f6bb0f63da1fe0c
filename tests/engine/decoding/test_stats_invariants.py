"""DESIGN §4 invariants hold for every drafter, greedy and sampled."""

from __future__ import annotations

import pytest

from engine.decoding.generate import generate
from engine.decoding.tree import DRAFT, MODEL_FREE, TARGET
from engine.settings import GenerationSettings
from tests.engine.decoding.synthetic_setup import drafter_for, eog_mask, pair, token_bytes

PROMPT = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3]


@pytest.mark.parametrize("mode", ["off", "chain", "tree", "c2t", "ngram", "staged", "auto"])
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_counts_add_up(mode: str, temperature: float) -> None:
    target, draft = pair(12, seed=5, noise=0.7, eog=(11,))
    drafter, spec = drafter_for(mode, draft)
    settings = GenerationSettings(max_tokens=80, temperature=temperature, seed=3, spec=spec)
    reply = generate(target, PROMPT, drafter, settings, eog_mask=eog_mask(12, (11,)), token_bytes=token_bytes)
    s = reply.stats.snapshot()
    for stage, drafted in s["drafted"].items():
        assert drafted == s["tested"].get(stage, 0) + s["ignored"][stage]
    for stage, tested in s["tested"].items():
        assert tested == s["accepted"].get(stage, 0) + s["rejected"][stage]
        assert s["rejected"][stage] >= 0
    bonus = s["provenance"].get("target", 0)
    assert s["tokens"] == sum(s["accepted"].values()) + bonus == len(reply.tokens)
    assert s["steps"] == target.n_decodes - 1  # one target pass per step, plus the prefill
    assert s["tau"] == pytest.approx(s["tokens"] / s["steps"])
    assert sum(s["accepted_len"]) == s["tokens"]
    assert all(0 <= a <= 1 for a in s["acceptance_by_depth"] if a is not None)
    if s["acceptance_rate"] is not None:
        assert 0 <= s["acceptance_rate"] <= 1
    if mode == "off":
        assert s["tau"] == 1.0 and not s["tested"]
    assert reply.reason in ("stop", "length")
    assert len(reply.sources) == len(reply.tokens)
    assert set(reply.sources) <= {TARGET, DRAFT, *MODEL_FREE}
