"""Speculative sampling must produce exactly the target's distribution.

Synthetic numpy models make the target's sequence distribution computable:
every drafter's samples are compared with it by a chi-square test, and the same
test is shown to catch a subtly biased verifier.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sps

from engine.decoding import verify as verify_module
from engine.decoding.generate import generate
from engine.decoding.sampling import distribution, sample
from engine.settings import GenerationSettings, SamplingParams
from tests.engine.decoding.synthetic_setup import drafter_for, eog_mask, pair, token_bytes

V = 5
LENGTH = 3
PROMPT = [0, 1, 2, 0, 1, 2, 0, 1]  # repetitive, so the n-gram stage proposes too
N_SAMPLES = 3000


def exact_distribution(target, params: SamplingParams) -> dict[tuple[int, ...], float]:
    probs = {}
    for seq in itertools.product(range(V), repeat=LENGTH):
        p = 1.0
        for i, tok in enumerate(seq):
            p *= distribution(target.fn(tuple(PROMPT) + seq[:i]), params)[tok]
        probs[seq] = p
    return probs


def sample_sequences(
    mode: str, params: SamplingParams, n: int, seed0: int = 0, **spec_kw
) -> dict[tuple[int, ...], int]:
    target, draft = pair(V)
    drafter, spec = drafter_for(mode, draft, top_k_children=3, budget=8, n_max=4, p_min=0.0, **spec_kw)
    counts: dict[tuple[int, ...], int] = {}
    for i in range(n):
        settings = GenerationSettings(
            max_tokens=LENGTH,
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            seed=seed0 + i,
            spec=spec,
        )
        reply = generate(
            target, PROMPT, drafter, settings, eog_mask=eog_mask(V), token_bytes=token_bytes
        )
        key = tuple(reply.tokens)
        counts[key] = counts.get(key, 0) + 1
    return counts


def chi_square_p(counts: dict, probs: dict, n: int) -> float:
    keys = sorted(probs, key=lambda k: -probs[k])
    observed, expected = [], []
    rest_o, rest_e = 0.0, 0.0
    for k in keys:
        e = probs[k] * n
        if e >= 5:
            observed.append(counts.get(k, 0))
            expected.append(e)
        else:
            rest_o += counts.get(k, 0)
            rest_e += e
    observed.append(rest_o)
    expected.append(rest_e)
    assert sum(observed) == n
    return float(sps.chisquare(observed, np.array(expected) * n / sum(expected)).pvalue)


PARAMS = [
    SamplingParams(temperature=1.0, top_k=0, top_p=1.0),
    SamplingParams(temperature=0.7, top_k=4, top_p=0.9),
]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["off", "chain", "tree", "c2t", "ngram", "staged", "auto"])
@pytest.mark.parametrize("params", PARAMS, ids=["t1", "t0.7-k4-p0.9"])
def test_every_drafter_samples_the_target_distribution(mode: str, params: SamplingParams) -> None:
    target, _ = pair(V)
    probs = exact_distribution(target, params)
    counts = sample_sequences(mode, params, N_SAMPLES)
    p = chi_square_p(counts, probs, N_SAMPLES)
    assert p > 1e-3, f"{mode}: samples do not follow the target distribution (chi-square p={p:.2e})"


# Each verification rule on the drafters whose trees it sees: traversal
# (arXiv 2505.12398) on sampled chains and trees, with and without replacement,
# and on deterministic trees (point-mass proposals); the top-down rule with
# replacement (multi-candidate speculative sampling, arXiv 2401.06706).
RULES = [
    ("chain", "traversal", "without"),
    ("tree", "traversal", "without"),
    ("tree", "traversal", "with"),
    ("tree", "token", "with"),
    ("tree", "token", "without"),
    ("staged", "traversal", "without"),
]


@pytest.mark.slow
@pytest.mark.parametrize("mode,rule,draws", RULES, ids=["-".join(r) for r in RULES])
@pytest.mark.parametrize("params", PARAMS, ids=["t1", "t0.7-k4-p0.9"])
def test_every_verification_rule_samples_the_target_distribution(
    mode: str, rule: str, draws: str, params: SamplingParams
) -> None:
    target, _ = pair(V)
    probs = exact_distribution(target, params)
    counts = sample_sequences(mode, params, N_SAMPLES, verify=rule, draws=draws)
    p = chi_square_p(counts, probs, N_SAMPLES)
    assert p > 1e-3, f"{mode}/{rule}/{draws}: samples do not follow the target distribution (chi-square p={p:.2e})"


def biased_draw(tree, node, p, rng):
    """A classic mistake: after rejecting a draft token, draw from p instead of the
    residual max(0, p - q).  Accepted draft tokens are then over-represented."""
    sampled = [c for c in tree.children(node) if tree.nodes[c].sampled]
    if sampled:
        q = tree.q_dist[node]
        x = tree.nodes[sampled[0]].token
        if rng.random() * q[x] < p[x]:
            return x
    return sample(p, rng)


@pytest.mark.slow
def test_the_test_catches_a_biased_verifier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_module, "draw_target_token", biased_draw)
    params = PARAMS[0]
    target, _ = pair(V)
    probs = exact_distribution(target, params)
    counts = sample_sequences("chain", params, N_SAMPLES, verify="token")
    p = chi_square_p(counts, probs, N_SAMPLES)
    assert p < 1e-3, f"the chi-square test failed to notice a biased verifier (p={p:.3f})"


def biased_with_replacement_draw(tree, node, p, rng):
    """The classic mistake over i.i.d. draws: every draw is tried against the
    same p, never against the residual, so draft tokens are over-represented."""
    draws, _ = verify_module.sampled_draws(tree, node)
    for x in draws:
        q = tree.q_dist[node]
        if rng.random() * q[x] < p[x]:
            return x
    return sample(p, rng)


def forgetful_residual(self, alpha, p, x, kind):
    """A traversal mistake: the rejected child's parent keeps owing alpha = 1 (the
    residual of the token-level rule), not the slack it actually has left."""
    return REAL_RESIDUAL(self, 1.0, p, x, kind)


REAL_RESIDUAL = verify_module.Proposals.residual


@pytest.mark.slow
@pytest.mark.parametrize("rule,draws", [("traversal", "without"), ("token", "with")])
def test_the_test_catches_biased_new_rules(monkeypatch: pytest.MonkeyPatch, rule: str, draws: str) -> None:
    if rule == "traversal":
        monkeypatch.setattr(verify_module.Proposals, "residual", forgetful_residual)
    else:
        monkeypatch.setattr(verify_module, "draw_target_token", biased_with_replacement_draw)
    params = PARAMS[0]
    target, _ = pair(V)
    probs = exact_distribution(target, params)
    counts = sample_sequences("tree", params, N_SAMPLES, verify=rule, draws=draws)
    p = chi_square_p(counts, probs, N_SAMPLES)
    assert p < 1e-3, f"the chi-square test failed to notice a biased {rule}/{draws} verifier (p={p:.3f})"


def test_seed_makes_sampling_reproducible() -> None:
    params = PARAMS[1]
    a = sample_sequences("tree", params, 5, seed0=42)
    b = sample_sequences("tree", params, 5, seed0=42)
    assert a == b


def test_greedy_speculation_equals_plain_on_synthetic_models() -> None:
    prompt = PROMPT * 3
    outputs = {}
    for mode in ["off", "chain", "tree", "c2t", "ngram", "staged", "auto"]:
        target, draft = pair(50, seed=3, noise=0.5)
        drafter, spec = drafter_for(mode, draft)
        settings = GenerationSettings(max_tokens=64, spec=spec)
        outputs[mode] = generate(
            target, prompt, drafter, settings, eog_mask=eog_mask(50), token_bytes=token_bytes
        ).tokens
    for mode, tokens in outputs.items():
        assert tokens == outputs["off"], mode
    assert len(outputs["off"]) == 64
