"""The decode-cost curve (engine/decoding/costmodel.py, engine/runtime/session.py):
every batch size measured, contention filtered, never cached when busy, and
checked against live timings.  Real llama.cpp on the tiny GGUF; timings are only
ever compared with curves off by large factors, never asserted as speeds."""

from __future__ import annotations

import json
import time

import pytest

from engine.decoding import costmodel
from engine.decoding.costmodel import CostCurve, CostModel, DriftMonitor
from engine.models import paths
from engine.runtime.session import Engine
from engine.settings import GenerationSettings, LoadSettings
from tests.helpers.tiny_gguf import write_tiny_gguf


@pytest.fixture()
def engine(tmp_path, monkeypatch):
    monkeypatch.setenv("TANDEM_CACHE_DIR", str(tmp_path / "cache"))
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    eng = Engine(LoadSettings(str(model), None, n_ctx=512, threads=1), learn=False)
    yield eng
    eng.close()


@pytest.fixture()
def quiet_machine(monkeypatch):
    """Every decode gets the whole core, whatever else runs on the test machine: the
    CPU clock advances exactly with the wall clock (one thread)."""
    monkeypatch.setattr(costmodel, "cpu_time", time.perf_counter)


@pytest.fixture()
def busy_machine(monkeypatch):
    """Simulated contention: the process gets a tenth of the wall time."""
    monkeypatch.setattr(costmodel, "cpu_time", lambda: 0.1 * time.perf_counter())


def curve_file(eng: Engine):
    return paths.cache_dir() / "costs" / f"{eng._curve_key(eng.load_settings.target, 0)}.json"


def fake_curve(seconds: float, clean: bool = True) -> CostCurve:
    sizes = list(costmodel.SIZES)
    return CostCurve(sizes, [seconds * (1 + n / 16) for n in sizes],
                     conditions={"format": costmodel.FORMAT, "clean": clean})


# ------------------------------------------------------------------ measuring


def test_curve_has_every_size_the_engine_verifies_and_a_longer_context(engine, quiet_machine) -> None:
    curve = costmodel.measure(engine.target, 1, contexts=(64, 256))
    assert set(range(1, 17)) <= set(curve.sizes) and curve.sizes[-1] >= 32
    assert all(s > 0 for s in curve.seconds)
    (longer,) = curve.longer
    assert (curve.context, longer.context) == (64, 256)
    # the base context measured again beside the longer one, at its sizes
    assert len(longer.reference) == len(longer.sizes) and curve.conditions["base_drift"] is not None
    c = curve.conditions
    assert c["clean"] and c["format"] == costmodel.FORMAT and c["contexts"] == [64, 256] and c["threads"] == 1
    assert c["tries"] >= 2 * len(curve.sizes) + 2 * len(longer.sizes) and c["discarded"] == 0
    # a longer context never makes a decode cheaper in the model, and beyond the
    # last measured context the extra cost keeps growing linearly
    for n in (1, 8, 16, 40):
        assert curve(n, 256) >= curve(n) == curve(n, 64)
        assert curve(n, 1000) - curve(n, 256) >= 0
    assert engine.target.tokens == []  # leaves the model empty


def test_a_slow_machine_past_the_time_budget_is_sampled_less_but_still_clean(engine, quiet_machine) -> None:
    curve = costmodel.measure(engine.target, 1, contexts=(64,), budget_s=0.0)
    assert curve.clean and curve.conditions["tries"] == len(curve.sizes)


def test_a_measurement_under_contention_is_not_cached(engine, busy_machine) -> None:
    curve = costmodel.measure(engine.target, 1, contexts=(64,))
    assert not curve.clean and curve.conditions["sizes_without_clean_sample"] > 0
    assert not costmodel.save_cached(paths.cache_dir(), "k", curve)
    assert costmodel.load_cached(paths.cache_dir(), "k") is None
    # the engine uses it for now, but the next session measures again
    cost = engine.cost_model()
    assert not cost.target.clean and not curve_file(engine).exists()
    assert engine.cost_log[-1]["action"] == "measured" and "not cached" in engine.cost_log[-1]["detail"]


def test_a_quiet_measurement_is_cached_with_its_conditions(engine, quiet_machine) -> None:
    engine.cost_model()
    saved = json.loads(curve_file(engine).read_text())
    assert saved["conditions"]["clean"] and saved["conditions"]["measured_at"]
    assert costmodel.load_cached(paths.cache_dir(), curve_file(engine).stem).sizes == saved["sizes"]


def test_old_busy_or_incomplete_cached_curves_are_not_trusted(tmp_path) -> None:
    def cache(d: dict) -> CostCurve | None:
        (tmp_path / "costs").mkdir(exist_ok=True)
        (tmp_path / "costs" / "k.json").write_text(json.dumps(d))
        return costmodel.load_cached(tmp_path, "k")

    good = fake_curve(0.01)
    assert cache(good.to_dict()) is not None
    assert cache({"sizes": [1, 2, 4, 8, 16, 32], "seconds": [1, 2, 3, 4, 5, 6]}) is None  # format 1
    assert cache(fake_curve(0.01, clean=False).to_dict()) is None
    sparse = CostCurve([1, 2, 4, 8, 16, 32], [1, 2, 3, 4, 5, 6], conditions=dict(good.conditions))
    assert cache(sparse.to_dict()) is None  # 15 interpolated between 8 and 16 would be a guess
    assert cache({"sizes": "x"}) is None


def test_uneven_kernel_sizes_are_kept_and_context_cost_is_interpolated() -> None:
    # DESIGN §2: 15 tokens cost more than 16 on this CPU; no smoothing may hide it
    sizes = list(range(1, 17))
    seconds = [0.035 + 0.015 * n for n in sizes]
    seconds[14] = 0.350
    # after 2,000 more tokens of context: +5 ms for one token, +96 ms for 16
    longer = CostCurve([1, 16], [seconds[0] + 0.005, seconds[15] + 0.096], context=2256)
    curve = CostCurve(sizes, seconds, context=256, longer=[longer])
    assert curve(15) > curve(16)
    assert curve(1, 2256) == pytest.approx(seconds[0] + 0.005)
    assert curve(16, 2256) == pytest.approx(seconds[15] + 0.096)
    # the extra cost is interpolated between the sizes measured after the long context,
    # so 15's kernel bump in the base curve does not leak into it
    assert curve.extra(15, 2256) == pytest.approx(0.005 + 14 / 15 * 0.091)
    assert curve(15, 2256) > curve(16, 2256)
    # linear in the context, and extended beyond the longest measured one
    assert curve(8, 1256) - curve(8) == pytest.approx(0.5 * curve.extra(8, 2256))
    assert curve(16, 4256) - curve(16) == pytest.approx(2 * 0.096)
    assert curve(16, 100) == curve(16) == curve(16, None)
    back = CostCurve.from_dict(json.loads(json.dumps(curve.to_dict())))
    assert back(15, 3000) == pytest.approx(curve(15, 3000))
    # with the base measured again beside the long context, the extra is taken against that
    beside = CostCurve(sizes, seconds, longer=[CostCurve([1, 16], [0.100, 0.500], context=2256,
                                                         reference=[0.090, 0.450])])
    assert beside.extra(1, 2256) == pytest.approx(0.010) and beside.extra(16, 2256) == pytest.approx(0.050)
    again = CostCurve.from_dict(json.loads(json.dumps(beside.to_dict())))
    assert again.extra(16, 2256) == pytest.approx(0.050)


# ------------------------------------------------------------------ checking against live timings


def test_drift_monitor_tells_a_wrong_curve_from_contention() -> None:
    curve = CostCurve([1, 16], [0.040, 0.300])
    fast = DriftMonitor(curve)
    for _ in range(30):
        fast.observe(1, 0.020)  # the curve was measured while busy: 2x too slow
    assert "0.50x" in fast.verdict()
    noisy = DriftMonitor(curve)
    for i in range(30):
        noisy.observe(1, 0.040 if i % 3 else 0.400)  # other programs steal some steps
    assert noisy.verdict() is None
    slow = DriftMonitor(curve)
    for _ in range(30):
        slow.observe(16, 0.600)
    assert "2.00x" in slow.verdict()
    few = DriftMonitor(curve)
    few.observe(1, 0.001)
    assert few.verdict() is None  # one sample proves nothing


def test_a_cached_curve_that_disagrees_with_live_timings_is_measured_again(engine, quiet_machine,
                                                                           monkeypatch) -> None:
    path = curve_file(engine)
    assert costmodel.save_cached(paths.cache_dir(), path.stem, fake_curve(0.5))  # a busy minute's curve, 1000x slow
    cost = engine.cost_model()
    assert cost.target(1) < 0.05  # measured again: the tiny model decodes in well under a millisecond
    assert [e["action"] for e in engine.cost_log] == ["drifted", "measured"]
    assert json.loads(path.read_text())["seconds"][0] == pytest.approx(cost.target(1))
    # a check while other programs hold the cores judges nothing and keeps the curve
    monkeypatch.setattr(costmodel, "cpu_time", lambda: 0.1 * time.perf_counter())
    engine._cost = None
    again = engine.cost_model()
    assert again.target.to_dict() == cost.target.to_dict()
    assert engine.cost_log[-1] == {**engine.cost_log[-1], "action": "kept", "detail": "busy, not judged"}


def test_live_decodes_that_drift_from_the_curve_trigger_a_new_measurement(engine, quiet_machine) -> None:
    engine._cost = CostModel(fake_curve(0.5))  # in use, not cached: only live timings can expose it
    engine._drift = DriftMonitor(engine._cost.target)
    settings = GenerationSettings(max_tokens=40)
    settings.spec.mode = "off"
    engine._baseline = 100.0
    prompt = engine.chat_tokens([{"role": "user", "content": "hello"}])
    engine.generate_tokens(prompt, settings)
    assert engine._cost_stale and engine.cost_log[-1]["action"] == "live timings drifted"
    notices = []
    engine.generate_tokens(prompt, settings, on_event=notices.append)
    assert [e["action"] for e in engine.cost_log][-2:] == ["drifted", "measured"]
    assert engine.cost_model().target(1) < 0.05 and not engine._cost_stale
    assert any("measured them again" in n.message for n in notices if hasattr(n, "message"))
