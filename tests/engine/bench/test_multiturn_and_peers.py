"""Multi-turn benchmarking (every turn of an MT-bench file, one shared history per
question), the revision suite, llama.cpp's n-gram peers' command lines, and the
tables that report first / later turns and the best peer per category."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.bench.history import Histories
from engine.bench.output import write_results
from engine.bench.peer_arm import DEFAULT_PEER_ARMS, NGRAM_TYPES, check_spec, command, run_peer
from engine.bench.results import ArmSpec, RunResult
from engine.bench.runner import BenchOptions, check_arms, run_bench
from engine.bench.suites import REVISION, BenchPrompt, load_suite, select
from engine.bench.summary import FIRST_TURNS, LATER_TURNS, best_peers, summarize
from engine.errors import TandemError

THREE_TURNS = BenchPrompt("q#3", "c", "third", 3, ("first", "second"), "q")


# ------------------------------------------------------------------ history


def test_earlier_turns_are_answered_once_in_order_and_shared() -> None:
    asked: list[list[dict]] = []

    def answer(messages: list[dict]) -> str:
        asked.append(messages)
        return f"answer {len(asked)}"

    h = Histories(answer)
    conv = h.conversation(THREE_TURNS)
    assert [m["content"] for m in conv] == ["first", "answer 1", "second", "answer 2", "third"]
    assert [m["role"] for m in conv] == ["user", "assistant", "user", "assistant", "user"]
    # the second answer was asked with the first answer in its history
    assert asked == [[{"role": "user", "content": "first"}],
                     [{"role": "user", "content": "first"}, {"role": "assistant", "content": "answer 1"},
                      {"role": "user", "content": "second"}]]
    assert h.generated == ["q", "q#2"]
    assert h.conversation(THREE_TURNS) == conv and len(asked) == 2  # every arm gets the same, made once


def test_a_plain_run_of_the_earlier_turn_is_the_history() -> None:
    h = Histories(lambda m: pytest.fail("nothing to generate: the plain run answered"))
    first = BenchPrompt("q", "c", "first", 1, (), "q")
    second = BenchPrompt("q#2", "c", "second", 2, ("first",), "q")
    h.remember(first, "plain's reply")
    h.remember(first, "a later, different run")  # the first answer stays: every arm saw it
    assert h.answers(second) == ["plain's reply"] and h.generated == []


def test_selection_keeps_whole_questions_and_matches_turn_or_question_ids(tmp_path) -> None:
    path = tmp_path / "q.jsonl"
    rows = [{"question_id": "a", "category": "x", "turns": ["1", "2"]},
            {"question_id": "b", "category": "x", "turns": ["1", "2"]},
            {"question_id": "c", "category": "y", "turns": ["1"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = load_suite(str(path))
    assert [p.id for p in select(prompts, per_category=1)] == ["a", "a#2", "c"]
    assert [p.id for p in select(prompts, ids=["b"])] == ["b", "b#2"]
    assert [p.id for p in select(prompts, ids=["b#2"])] == ["b#2"]


def test_revision_suite_ships_next_to_ours() -> None:
    prompts = load_suite("revision")
    rows = [json.loads(line) for line in REVISION.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 8 and {"revise", "fix", "translate", "reformat"} <= {r["category"] for r in rows}
    assert all("PSF License" in r["source"] for r in rows)
    assert any(len(r["turns"]) > 1 for r in rows)
    assert all(1500 <= len(r["turns"][0]) <= 4500 for r in rows)  # real code or text pasted
    assert len(prompts) == sum(len(r["turns"]) for r in rows)
    both = load_suite("ours,revision")
    assert [p.id for p in both] == [p.id for p in load_suite("ours")] + [p.id for p in prompts]
    with pytest.raises(TandemError):
        load_suite("ours,nonexistent")


def test_bench_runs_every_turn_with_the_plain_history(tmp_path, monkeypatch) -> None:
    """On the tiny GGUF: the second turn's conversation holds plain decoding's
    reply to the first, and every arm decodes that same conversation."""
    from engine.runtime.session import Engine
    from engine.settings import LoadSettings
    from tests.helpers.tiny_gguf import write_tiny_gguf

    monkeypatch.setenv("TANDEM_CACHE_DIR", str(tmp_path / "cache"))
    engine = Engine(LoadSettings(str(write_tiny_gguf(tmp_path / "tiny.gguf")), None, n_ctx=512, threads=1),
                    learn=False)
    try:
        path = tmp_path / "q.jsonl"
        path.write_text(json.dumps({"question_id": "q", "category": "x", "turns": ["hello", "again"]}) + "\n")
        prompts = load_suite(str(path))
        arms = [ArmSpec.parse("plain"), ArmSpec.parse("ngram")]
        runs = run_bench(engine, prompts, arms, BenchOptions(max_tokens=12), log=lambda s: None)
        by = {(r.prompt_id, r.arm): r for r in runs}
        assert {r.turn for r in runs} == {1, 2} and all(r.ok for r in runs)
        history = prompts[1].conversation([by["q", "plain"].text])
        expected = len(engine.chat_tokens(history))
        assert by["q#2", "plain"].prompt_tokens == by["q#2", "ngram"].prompt_tokens == expected
        assert expected > by["q", "plain"].prompt_tokens
    finally:
        engine.close()


# ------------------------------------------------------------------ llama.cpp peers


def peer_cmd(arm: str) -> list[str]:
    return command(ArmSpec.parse(arm), Path("/bin"), "PROMPT", target="t.gguf", draft=None, threads=2,
                   n_ctx=4096, max_tokens=128)


def after(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_default_peers_include_ngram_mod_and_map_k() -> None:
    assert "llama.cpp-ngram:type=ngram-mod" in DEFAULT_PEER_ARMS
    assert "llama.cpp-ngram:type=ngram-map-k" in DEFAULT_PEER_ARMS
    for arm in DEFAULT_PEER_ARMS:
        check_spec(ArmSpec.parse(arm))


def test_ngram_peer_command_lines() -> None:
    mod = peer_cmd("llama.cpp-ngram:type=ngram-mod")
    assert mod[0] == "/bin/llama-speculative-simple" and after(mod, "--spec-type") == "ngram-mod"
    assert "-md" not in mod and after(mod, "-n") == "127"  # it emits one token more than asked
    tuned = peer_cmd("llama.cpp-ngram:type=ngram-mod,n_match=16,n_min=8,n_max=32")
    assert (after(tuned, "--spec-ngram-mod-n-match"), after(tuned, "--spec-ngram-mod-n-min"),
            after(tuned, "--spec-ngram-mod-n-max")) == ("16", "8", "32")
    mapk = peer_cmd("llama.cpp-ngram:type=ngram-map-k,size_n=8,min_hits=2")
    assert after(mapk, "--spec-type") == "ngram-map-k"
    assert (after(mapk, "--spec-ngram-map-k-size-n"), after(mapk, "--spec-ngram-map-k-min-hits")) == ("8", "2")
    assert "--spec-ngram-map-k-size-m" not in mapk  # unset: llama.cpp's default
    simple = peer_cmd("llama.cpp-ngram")
    assert after(simple, "--spec-type") == "ngram-simple"
    assert set(NGRAM_TYPES) == {"ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod"}


FAKE_SPECULATIVE = """#!{python}
import sys, time
prompt = sys.argv[sys.argv.index("-p") + 1]
start = time.perf_counter()
sys.stdout.write(prompt); sys.stdout.flush()
for _ in range(10):  # ten tokens, one step each
    time.sleep(0.03); sys.stdout.write("a"); sys.stdout.flush()
time.sleep(0.4)  # the step that passes -n: one verify, ten more tokens at once
sys.stdout.write("b" * 10); sys.stdout.flush()
sys.stderr.write("encoded    5 tokens in 0.100 seconds, speed: 50.0 t/s\\n")
sys.stderr.write(f"decoded   20 tokens in {{time.perf_counter() - start:.3f}} seconds, speed: 1.0 t/s\\n")
sys.stderr.write("n_drafted = 10\\nn_accept  = 10\\n")
"""


def test_a_speculative_peer_is_timed_to_the_requested_count_not_its_overshoot(tmp_path) -> None:
    """llama-speculative-simple emits past -n when its last step accepts a long draft;
    its tokens/s must be the requested count over the time to that count."""
    import sys

    tool = tmp_path / "llama-speculative-simple"
    tool.write_text(FAKE_SPECULATIVE.format(python=sys.executable))
    tool.chmod(0o755)
    prompt = BenchPrompt("p", "c", "Say a.", 1, (), "p")
    r = run_peer(ArmSpec.parse("llama.cpp-ngram"), prompt, "PROMPT> ", 5, bin_dir=tmp_path, target="t.gguf",
                 draft=None, threads=1, n_ctx=64, max_tokens=10, prefix_chars=lambda text, n: n)
    assert r.error is None, r.error
    assert r.text == "a" * 10 + "b" * 10
    assert r.n_tokens == 10 and r.extra["emitted"]["tokens"] == 20
    full = r.extra["emitted"]["seconds"]
    assert 0.3 < full - r.t_generate < 0.55  # the last step (0.4 s) is not counted
    assert r.tokens_per_s == pytest.approx(10 / r.t_generate)
    assert abs(r.n_tokens / r.steps - 20 / 10) < 0.01  # τ of the whole run


def test_bad_peer_settings_fail_before_the_benchmark_starts() -> None:
    opts = BenchOptions(peer_dir=Path("/bin"))
    for bad in ("llama.cpp-ngram:type=ngram-nope", "llama.cpp-ngram:type=ngram-mod,size_n=8"):
        with pytest.raises(TandemError, match=r"llama\.cpp-ngram"):
            check_arms([ArmSpec.parse("plain"), ArmSpec.parse(bad)], opts)


# ------------------------------------------------------------------ tables


def run(arm: str, pid: str, cat: str, tps: float, turn: int = 1) -> RunResult:
    n = 100
    return RunResult(arm, pid, cat, prompt_tokens=50, n_tokens=n, t_generate=n / tps, steps=n, t_verify=n / tps,
                     turn=turn)


def multi_turn_runs() -> list[RunResult]:
    speeds = {"plain": (10, 10), "auto": (12, 20), "llama.cpp-ngram": (11, 14),
              "llama.cpp-ngram:type=ngram-mod": (9, 16), "llama.cpp-draft": (13, 8)}
    runs = []
    for cat in ("code", "revise"):
        for turn in (1, 2):
            pid = cat if turn == 1 else f"{cat}#2"
            for arm, (first, later) in speeds.items():
                runs.append(run(arm, pid, cat, first if turn == 1 else later, turn))
    return runs


def test_later_turns_are_reported_apart_from_first_turns() -> None:
    summary = summarize(multi_turn_runs())
    assert list(summary) == ["code", "revise", "all", FIRST_TURNS, LATER_TURNS]
    auto = {g: next(s for s in rows if s.arm == "auto") for g, rows in summary.items()}
    assert auto[FIRST_TURNS].speedup == pytest.approx(1.2) and auto[LATER_TURNS].speedup == pytest.approx(2.0)
    assert auto[FIRST_TURNS].runs == auto[LATER_TURNS].runs == 2
    single = summarize([r for r in multi_turn_runs() if r.turn == 1])
    assert FIRST_TURNS not in single  # nothing to split without multi-turn questions


def test_best_peer_per_group() -> None:
    rows = {r.group: r for r in best_peers(summarize(multi_turn_runs()))}
    first, later = rows[FIRST_TURNS], rows[LATER_TURNS]
    assert first.best_peer.arm == "llama.cpp-draft" and first.best_model_free.arm == "llama.cpp-ngram"
    assert later.best_peer.arm == "llama.cpp-ngram:type=ngram-mod" == later.best_model_free.arm
    assert later.ours.arm == "auto" and later.ours_vs_model_free == pytest.approx(20 / 16)


def test_tables_show_the_overview_the_peers_and_the_turn_groups(tmp_path) -> None:
    md = write_results(tmp_path, multi_turn_runs(), {"suite": "x", "max_tokens": 100}, {"cpu": "t", "threads": 2})
    assert "## Speedup over plain decoding" in md and "| `auto` | 1.50 | 1.50 | 1.50 | 1.20 | 2.00 |" in md
    assert "## llama.cpp peers: the fastest per group" in md
    assert "| later turns | `llama.cpp-ngram:type=ngram-mod` 1.60× |" in md
    assert "## first turns (2 prompts)" in md and "## later turns (2 prompts)" in md
    back = json.loads((tmp_path / "results.json").read_text())
    assert {r["turn"] for r in back["runs"]} == {1, 2} and LATER_TURNS in back["summary"]
