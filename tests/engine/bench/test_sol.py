"""The speed-of-light bound (engine/bench/sol.py) on distributions small enough to
work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.bench import sol
from engine.bench.results import RunResult
from engine.bench.summary import ALL, summarize
from engine.bench.tables import results_markdown
from engine.decoding.sampling import distribution
from engine.decoding.synthetic import SyntheticLM, markov_logits
from engine.settings import SamplingParams


def test_best_tree_on_a_fair_coin_by_hand() -> None:
    coin = [[0.5, 0.5]] * 3
    # n=1: one child (0.5); n=3: both children and one grandchild (0.5 + 0.5 + 0.25)
    assert sol.best_tree_value(coin, 1) == pytest.approx(0.5)
    assert sol.best_tree_value(coin, 3) == pytest.approx(1.25)
    # 7 nodes: 2 x 0.5 + 4 x 0.25 + 1 x 0.125
    assert sol.best_tree_value(coin, 7) == pytest.approx(2.125)
    # start positions 0, 1, 2 leave 3, 2, 1 levels: 1.25, 1.25, then only two nodes exist (1.0)
    assert sol.best_tree_tau(coin, 3) == pytest.approx(1 + (1.25 + 1.25 + 1.0) / 3)


def test_best_tree_prefers_depth_on_a_confident_target() -> None:
    skewed = [[0.9, 0.1]] * 4
    # chain 0.9, 0.81, 0.729 beats the sibling 0.1
    assert sol.best_tree_value(skewed, 3) == pytest.approx(0.9 + 0.81 + 0.729)
    assert sol.best_tree_value(skewed, 5) == pytest.approx(0.9 + 0.81 + 0.729 + 0.6561 + 0.1)
    # a certain target: every verified node is accepted, as deep as the text goes
    assert sol.best_tree_tau([[1.0]] * 4, 2) == pytest.approx(1 + (2 + 2 + 2 + 1) / 4)
    # no speculation: τ is 1; fractional budgets interpolate
    assert sol.best_tree_tau(skewed, 0) == pytest.approx(1.0)
    # (n=1: 1 everywhere; n=2: 1.75 on average, the last position has one level left)
    assert sol.best_tree_tau([[1.0]] * 4, 1.5) == pytest.approx(1 + 1 + 0.5 * (1.75 - 1))


def test_paper_term_and_statistics_by_hand() -> None:
    top, h, m2 = sol.position_stats(np.array([0.25, 0.0, 0.5, 0.25]))
    assert top == [0.5, 0.25, 0.25]
    assert h == pytest.approx(1.5 * math.log(2))
    assert m2 == pytest.approx(0.5 * math.log(2) ** 2 + 0.5 * math.log(4) ** 2)
    # a fair coin: mu = ln 2, mu2 = ln^2 2, P = 4: (ln2 + ln^2 2) ln 4 / ln^2 2 = 2 + ln 4
    ln2 = math.log(2)
    assert sol.paper_term([ln2], [ln2 * ln2], 3) == pytest.approx(2 + math.log(4))


def test_measure_target_reads_every_position_of_the_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sol, "CHUNK", 3)  # several decodes, chained through pending nodes
    fn = markov_logits(7, seed=5)
    lm = SyntheticLM(fn, 7)
    prompt, reply = [1, 2, 3], [4, 0, 6, 6, 2, 1, 5, 3]
    lm.decode(prompt[:-1])
    params = SamplingParams(temperature=0.7, top_k=5, top_p=0.9)
    got = sol.measure_target(lm, prompt, reply, params)
    assert len(got["top"]) == len(reply)
    for i in range(len(reply)):
        top, h, m2 = sol.position_stats(distribution(fn(tuple(prompt + reply[:i])), params))
        assert got["top"][i] == pytest.approx(top, abs=1e-6)
        assert got["entropy"][i] == pytest.approx(h, abs=1e-6)
        assert got["m2"][i] == pytest.approx(m2, abs=1e-6)
    assert lm.tokens == prompt[:-1] and lm.n_pending == 0


def test_bench_reports_the_bound_next_to_tau() -> None:
    stats = {"top": [[0.9, 0.1]] * 8, "entropy": [0.325] * 8, "m2": [0.3] * 8}

    def run(arm: str, steps: int, tested: int) -> RunResult:
        return RunResult(arm, "p1", "code", n_tokens=8, t_generate=1.0, steps=steps, tested=tested, accepted=0,
                         extra={"target_stats": stats} if arm == "plain" else {})

    runs = [run("plain", 8, 0), run("tree", 4, 8)]
    summary = summarize(runs)
    rows = {s.arm: s for s in summary[ALL]}
    assert rows["plain"].tau_bound == pytest.approx(1.0)
    assert rows["tree"].nodes_per_step == pytest.approx(2.0)
    assert rows["tree"].tau_bound == pytest.approx(sol.best_tree_tau(stats["top"], 2.0))
    md = results_markdown(summary, runs, {"temperature": 0.7}, {})
    assert "Speed of light" in md and f"{rows['tree'].tau_bound:.2f}" in md


def test_measure_target_on_llama_cpp_matches_plain_decoding(tiny_gguf, monkeypatch: pytest.MonkeyPatch) -> None:
    """On real llama.cpp (the tiny test GGUF): the rows read back along the reply as
    pending nodes are the rows plain decoding saw, position by position."""
    from engine.llama.backend import LlamaContext, LlamaModel
    from engine.llama.lm import LlamaLM

    monkeypatch.setattr(sol, "CHUNK", 5)
    model = LlamaModel(tiny_gguf)
    try:
        lm = LlamaLM(model, LlamaContext(model, n_ctx=256, n_threads=2, n_seq_max=4, n_batch=64))
        ref = LlamaLM(model, LlamaContext(model, n_ctx=256, n_threads=2, n_seq_max=2, n_batch=64))
        prompt, reply = [5, 9, 13, 2], [7, 7, 30, 11, 4, 19, 8, 3, 21, 6, 12, 40]
        params = SamplingParams(temperature=0.8, top_k=20, top_p=0.95)
        lm.decode(prompt[:-1])
        got = sol.measure_target(lm, prompt, reply, params)
        ref.decode(prompt[:-1])
        for i, tok in enumerate([prompt[-1], *reply[:-1]]):
            row = ref.decode([tok])[-1]
            top, h, _ = sol.position_stats(distribution(row, params))
            assert got["top"][i] == pytest.approx(top, abs=2e-3)
            assert got["entropy"][i] == pytest.approx(h, abs=2e-3)
        assert lm.tokens == prompt[:-1] and lm.n_pending == 0
    finally:
        model.close()
