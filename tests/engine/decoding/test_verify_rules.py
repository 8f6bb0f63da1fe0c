"""The verification settings (SpecSettings.verify, SpecSettings.draws) reach the
code they name and change what it does; bad values fail with one line."""

from __future__ import annotations

import numpy as np
import pytest

from engine.decoding import verify as verify_module
from engine.decoding.drafter import DraftRequest
from engine.decoding.generate import generate
from engine.errors import TandemError
from engine.settings import GenerationSettings, SamplingParams, SpecSettings
from tests.engine.decoding.synthetic_setup import drafter_for, eog_mask, pair, token_bytes


def test_bad_rules_are_refused_clearly() -> None:
    with pytest.raises(TandemError, match="verification rule"):
        SpecSettings(verify="bottom-up")
    with pytest.raises(TandemError, match="draws"):
        SpecSettings(draws="some")


@pytest.mark.parametrize("rule,expected", [("auto", "traversal"), ("traversal", "traversal"), ("token", "token")])
def test_verify_setting_picks_the_rule(monkeypatch: pytest.MonkeyPatch, rule: str, expected: str) -> None:
    used: list[str] = []
    real_t, real_s = verify_module.verify_traversal, verify_module.verify_sampling
    monkeypatch.setattr(verify_module, "verify_traversal", lambda *a: used.append("traversal") or real_t(*a))
    monkeypatch.setattr(verify_module, "verify_sampling", lambda *a: used.append("token") or real_s(*a))
    target, draft = pair(20, seed=1)
    drafter, spec = drafter_for("tree", draft, verify=rule)
    settings = GenerationSettings(max_tokens=12, temperature=1.0, seed=3, spec=spec)
    generate(target, [1, 2, 3], drafter, settings, eog_mask=eog_mask(20), token_bytes=token_bytes)
    assert used and set(used) == {expected}


def test_auto_keeps_the_cheaper_rule_for_deterministic_trees(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[str] = []
    real_s = verify_module.verify_sampling
    monkeypatch.setattr(verify_module, "verify_traversal", lambda *a: used.append("traversal"))
    monkeypatch.setattr(verify_module, "verify_sampling", lambda *a: used.append("token") or real_s(*a))
    target, _ = pair(20, seed=1)
    drafter, spec = drafter_for("ngram", None)
    settings = GenerationSettings(max_tokens=12, temperature=1.0, seed=3, spec=spec)
    generate(target, [1, 2, 3, 1, 2, 3, 1, 2], drafter, settings, eog_mask=eog_mask(20), token_bytes=token_bytes)
    assert used and set(used) == {"token"}


@pytest.mark.parametrize("draws", ["without", "with"])
def test_draws_setting_changes_how_children_are_drawn(draws: str) -> None:
    _, draft = pair(8, seed=2, noise=0.3)
    drafter, _ = drafter_for("tree", draft, draws=draws, top_k_children=4, budget=16)
    params = SamplingParams(temperature=1.0)
    drafter.prefill([1, 2, 3])
    repeated = 0
    for seed in range(10):
        tree = drafter.propose(DraftRequest([1, 2, 3], params, np.random.default_rng(seed), 64))
        if draws == "with":
            assert tree.draws and all(len(d) == 4 for d in tree.draws.values())
            # each draw is a child; repeats share one node
            for parent, d in tree.draws.items():
                kids = {tree.nodes[c].token for c in tree.children(parent)}
                assert set(d) == kids
                repeated += len(d) - len(kids)
        else:
            assert not tree.draws
            assert all(len(tree.children(p)) == 4 for p in tree.q_dist)
    if draws == "with":
        assert repeated > 0  # a peaked 8-token draft repeats itself
