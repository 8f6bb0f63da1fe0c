"""Crash isolation at the engine-process level (issue 6, item 1), with the fault hook of
engine/faults.py: the engine process SIGKILLed while it loads, drafts or verifies dies
alone, what it streamed before is a prefix of the real answer, and a new process answers
the same conversation exactly as one that never crashed.  Also: the hook is inert
unless TANDEM_FAULT is set, and a malformed value fails loudly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine import faults
from engine.settings import GenerationSettings, LoadSettings, SpecSettings
from tests.helpers.engine_process import EngineDied, EngineProcess, fresh_reply
from tests.helpers.tiny_gguf import write_tiny_gguf

ROOT = Path(__file__).resolve().parents[3]
QUESTION = [{"role": "user", "content": "Count to one hundred"}]  # ~370 tokens, ~180 chain steps


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> LoadSettings:
    model = write_tiny_gguf(tmp_path_factory.mktemp("faults") / "tiny.gguf", n_ctx=4096)
    # the draft has the target's weights: chain drafts are long, so a step has real drafting work
    return LoadSettings(str(model), str(model), n_ctx=4096, threads=1)


def settings(mode: str = "chain", max_tokens: int = 3000) -> GenerationSettings:
    return GenerationSettings(max_tokens=max_tokens, spec=SpecSettings(mode))


# ---------------------------------------------------------------- the hook itself


def test_fault_specs_parse_and_malformed_ones_fail_loudly() -> None:
    parsed = faults.parse("draft@3:kill, verify:sleep=0.5,load:kill=0.2")
    assert parsed["draft"] == [faults.Fault("draft", 3, "kill", 0.0)]
    assert parsed["verify"] == [faults.Fault("verify", None, "sleep", 0.5)]
    assert parsed["load"] == [faults.Fault("load", None, "kill", 0.2)]
    assert faults.parse("") == {}
    for bad in ("draft", "drafting:kill", "draft:explode", "draft@0:kill", "verify:sleep", "draft@x:kill"):
        with pytest.raises(ValueError):
            faults.parse(bad)


def test_the_hook_is_inert_without_the_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TANDEM_FAULT"}
    out = subprocess.run([sys.executable, "-c", "from engine import faults; print(faults.active(), faults._faults)"],
                         cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "{}"]
    faults.configure("")
    for phase in faults.PHASES:
        faults.point(phase)  # nothing happens, nothing is counted
    assert faults._counts == {}


def test_step_faults_count_only_inside_generate_requests() -> None:
    try:
        faults.configure("verify@2:sleep=0")
        faults.point("load")
        faults.point("verify")  # the load's baseline measurement: not counted
        assert faults._counts.get("verify") is None
        faults.point("generate")
        faults.point("verify")
        faults.point("verify")
        assert faults._counts["verify"] == 2
    finally:
        faults.configure("")


# ---------------------------------------------------------------- killing the engine process


@pytest.mark.parametrize("phase", ["load", "draft", "verify"])
def test_engine_killed_in_a_phase_dies_alone_and_a_fresh_one_answers_the_same(tiny_pair: LoadSettings,
                                                                            phase: str) -> None:
    nth = 1 if phase == "load" else random.Random(f"faults-{phase}").randint(3, 60)
    engine = EngineProcess(fault=f"{phase}@{nth}:kill")
    try:
        engine.send({"op": "load", "id": "load", "load": tiny_pair.to_dict()})
        if phase != "load":
            engine.expect("loaded", "load")
            engine.send({"op": "generate", "id": "gen", "messages": QUESTION, "settings": settings().to_dict()})
        status = engine.wait_exit()
        partial = engine.text_of("gen")
        kinds = {e["type"] for e in engine.events}
    finally:
        engine.close()
    assert status == -signal.SIGKILL
    assert f"[tandem-fault] {phase}#{nth} kill" in engine.stderr()  # it died exactly there
    assert "done" not in kinds and "error" not in kinds  # no half-written lie about finishing
    if phase != "load":
        assert partial  # steps before the kill streamed their text

    # a new engine process, with the same data and cache directories as the dead one
    after = fresh_reply(tiny_pair, QUESTION, settings())
    assert after["text"].startswith(partial)  # what streamed before the kill was the real answer
    assert after["reason"] == "stop" and len(after["tokens"]) > 100
    # ...and greedy output identical to plain decoding in a process that never saw a fault
    plain = fresh_reply(tiny_pair, QUESTION, settings("off"))
    assert after["tokens"] == plain["tokens"]


def test_kill_timer_lands_inside_the_phase(tiny_pair: LoadSettings) -> None:
    """kill=S fires from a timer thread while the engine is still working: the process
    dies mid-reply, not at a step boundary the hook chose."""
    engine = EngineProcess(fault="verify@5:kill=0.05,verify:sleep=0.02")
    try:
        engine.load(tiny_pair)
        engine.send({"op": "generate", "id": "gen", "messages": QUESTION, "settings": settings("off").to_dict()})
        status = engine.wait_exit()
    finally:
        engine.close()
    assert status == -signal.SIGKILL
    assert "verify#5 kill=0.05" in engine.stderr()
    assert 0 < len([e for e in engine.events if e["type"] == "step"]) < 30


def test_a_malformed_fault_stops_the_engine_at_start() -> None:
    with pytest.raises(EngineDied, match="TANDEM_FAULT"):
        EngineProcess(fault="verify:explode")
