"""The speed-up is divided by plain decoding's speed under the reply's own conditions
(engine/decoding/baseline.py, DESIGN §4), never by a stale start-up figure: a reply
with speculation off shows 1.0x whatever the start-up measurement said."""

from __future__ import annotations

import threading

import pytest

from engine.decoding import baseline
from engine.decoding.baseline import PlainEstimate
from engine.decoding.costmodel import CostCurve
from engine.decoding.events import ProgressEvent
from engine.decoding.generate import PREFILL_CHUNK, generate, prefill
from engine.errors import Cancelled
from engine.runtime.session import Engine
from engine.settings import GenerationSettings, LoadSettings
from tests.engine.decoding.synthetic_setup import drafter_for, eog_mask, pair, token_bytes
from tests.helpers.tiny_gguf import write_tiny_gguf

PROMPT = [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3]


@pytest.mark.parametrize("stale", [None, 0.3, 1e6])  # never measured, far too slow, far too fast
def test_a_plain_reply_is_one_times_plain_whatever_the_startup_figure(stale) -> None:
    target, draft = pair(12, seed=5, noise=0.7)
    drafter, spec = drafter_for("off", draft)
    settings = GenerationSettings(max_tokens=60, spec=spec)
    reply = generate(target, PROMPT, drafter, settings, eog_mask=eog_mask(12), token_bytes=token_bytes,
                     baseline_tps=stale)
    s = reply.stats.snapshot()
    assert s["speedup"] == pytest.approx(1.0, abs=0.01)
    assert s["baseline"]["source"] == "plain steps"
    assert s["baseline"]["plain_steps"] == s["steps"] == 60
    assert s["startup_baseline_tps"] == stale


def test_a_plain_reply_on_real_llama_cpp_is_one_times_plain(tmp_path) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    engine = Engine(LoadSettings(str(model), None, n_ctx=512, threads=1))
    try:
        engine._baseline = 0.5  # a start-up figure from a machine under siege
        settings = GenerationSettings(max_tokens=40)
        settings.spec.mode = "off"
        s = engine.reply([{"role": "user", "content": "hello there"}], settings).stats.snapshot()
    finally:
        engine.close()
    assert s["tokens"] > 0
    assert s["speedup"] == pytest.approx(1.0, abs=0.01)
    assert s["baseline_tps"] > 10 * 0.5  # the live figure, not the stale one
    assert s["baseline"]["plain_steps"] == s["steps"]


def test_speculative_steps_are_scaled_to_one_token_by_the_cost_curve() -> None:
    curve = CostCurve([1, 4], [0.010, 0.020])  # a 4-token decode costs twice a 1-token one
    est = PlainEstimate(curve, threads=1, startup_tps=999.0)
    for _ in range(10):
        est.observe(4, t_draft=0.001, t_verify=0.040, t_overhead=0.002)  # the machine runs 2x slower than the curve
    out = est.estimate()
    assert out["source"] == "target decodes scaled by the cost curve"
    # a 1-token decode right now: 0.040 * 0.010 / 0.020 = 0.020 s, plus the cheapest step overhead
    assert out["tps"] == pytest.approx(1 / 0.022)
    assert out["samples"] == 10


def test_few_steps_make_the_estimate_uncertain_and_say_why() -> None:
    est = PlainEstimate(None, threads=1)
    for _ in range(3):
        est.observe(1, 0.0, 0.030, 0.001)
    out = est.estimate()
    assert out["tps"] == pytest.approx(1 / 0.031)
    assert out["uncertain"] and "only 3 steps to estimate from" in out["why"]
    for _ in range(20):
        est.observe(1, 0.0, 0.030, 0.001)
    assert est.estimate()["samples"] == 23
    assert not any(w.startswith("only") for w in est.estimate()["why"])


def test_a_busy_machine_makes_the_estimate_uncertain(monkeypatch) -> None:
    clock = {"wall": 100.0, "cpu": 5.0}
    monkeypatch.setattr(baseline.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(baseline.time, "process_time", lambda: clock["cpu"])
    est = PlainEstimate(None, threads=2)
    for _ in range(30):
        est.observe(1, 0.0, 0.030, 0.001)
        clock["wall"] += 0.031
        clock["cpu"] += 0.031 * 2 * 0.4  # the engine's two threads ran 40% of the time
    out = est.estimate()
    assert out["cpu_share"] == pytest.approx(0.4, abs=0.02)
    assert out["uncertain"]
    assert any("the computer was busy (the engine got 40% of its CPU time)" in w for w in out["why"])
    clock["cpu"] += 10  # later it had the cores to itself
    clock["wall"] += 5.0
    assert not est.estimate()["uncertain"]


def test_no_steps_yet_falls_back_to_the_startup_measurement_marked_uncertain() -> None:
    out = PlainEstimate(None, startup_tps=30.0).estimate()
    assert out["tps"] == 30.0 and out["source"] == "start-up measurement" and out["uncertain"]


# ------------------------------------------------------------------ long prompts


def test_a_long_prompt_is_read_in_chunks_with_progress() -> None:
    target, draft = pair(12, seed=5)
    drafter, spec = drafter_for("off", draft)
    prompt = [i % 11 for i in range(3 * PREFILL_CHUNK + 17)]
    events = []
    generate(target, prompt, drafter, GenerationSettings(max_tokens=2, spec=spec), eog_mask=eog_mask(12),
             token_bytes=token_bytes, on_event=events.append)
    progress = [(e.done, e.total) for e in events if isinstance(e, ProgressEvent)]
    total = len(prompt) - 1
    assert progress == [(PREFILL_CHUNK, total), (2 * PREFILL_CHUNK, total), (3 * PREFILL_CHUNK, total),
                        (total, total)]
    # a follow-up turn reads only its new tokens; the cached prefix counts as done
    events.clear()
    longer = prompt + [5] * 40
    generate(target, longer, drafter, GenerationSettings(max_tokens=2, spec=spec), eog_mask=eog_mask(12),
             token_bytes=token_bytes, on_event=events.append)
    progress = [(e.done, e.total) for e in events if isinstance(e, ProgressEvent)]
    assert progress[-1] == (len(longer) - 1, len(longer) - 1) and len(progress) == 1


def test_stop_during_a_long_prompt_ends_between_chunks_and_keeps_what_was_read() -> None:
    target, _draft = pair(12, seed=5)
    prompt = [i % 11 for i in range(4 * PREFILL_CHUNK)]
    cancel = threading.Event()
    seen = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done >= 2 * PREFILL_CHUNK:
            cancel.set()  # Stop pressed while the second chunk was being read

    with pytest.raises(Cancelled):
        prefill(target, prompt, cancel, progress)
    assert seen == [PREFILL_CHUNK, 2 * PREFILL_CHUNK]
    assert target.tokens == prompt[:2 * PREFILL_CHUNK]  # the next try starts from here


def test_generate_stopped_while_reading_ends_as_cancelled_with_a_done_event() -> None:
    target, draft = pair(12, seed=5)
    drafter, spec = drafter_for("off", draft)
    cancel = threading.Event()
    events = []

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, ProgressEvent):
            cancel.set()

    reply = generate(target, [i % 11 for i in range(3 * PREFILL_CHUNK)], drafter,
                     GenerationSettings(max_tokens=5, spec=spec), eog_mask=eog_mask(12), token_bytes=token_bytes,
                     cancel=cancel, on_event=on_event)
    assert reply.reason == "cancelled" and reply.tokens == []
    assert events[-1].type == "done" and events[-1].reason == "cancelled"
    assert len(target.tokens) == PREFILL_CHUNK
