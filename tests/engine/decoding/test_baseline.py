"""The plain-decoding baseline every speed-up is divided by (engine/runtime/session.py):
a measurement poisoned by a busy machine is never believed, cached or not."""

from __future__ import annotations

import json
import time

import pytest

from engine.decoding import costmodel
from engine.decoding.costmodel import CostCurve, CostModel
from engine.models import paths
from engine.runtime.session import Engine
from engine.settings import LoadSettings
from tests.helpers.tiny_gguf import write_tiny_gguf


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch):
    """Whatever else runs on the test machine, every run gets the whole core (one thread)."""
    monkeypatch.setattr(costmodel, "cpu_time", time.perf_counter)


@pytest.fixture()
def engine(tmp_path):
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    eng = Engine(LoadSettings(str(model), None, n_ctx=512, threads=1))
    yield eng
    eng.close()


def cache_file(eng: Engine):
    key = eng._curve_key(eng.load_settings.target, eng.load_settings.gpu_layers)
    return paths.cache_dir() / "costs" / f"baseline-{key}.json"


def with_decode_cost(eng: Engine, seconds_per_token: float) -> None:
    eng._cost = CostModel(CostCurve([1, 2], [seconds_per_token, 2 * seconds_per_token]), None)


def test_a_poisoned_cached_baseline_is_measured_again_and_replaced(engine) -> None:
    with_decode_cost(engine, 1.0)  # the curve allows 1 tok/s: anything under 0.5 is implausible
    path = cache_file(engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tokens_per_s": 0.01}))  # as measured on a machine under siege
    tps = engine.baseline_tps()
    assert tps > 0.5  # the tiny model really runs hundreds of tokens/s
    assert json.loads(path.read_text())["tokens_per_s"] == tps


def test_a_plausible_cached_baseline_is_used_as_is(engine) -> None:
    with_decode_cost(engine, 1.0)
    path = cache_file(engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tokens_per_s": 0.8}))
    assert engine.baseline_tps() == 0.8


def test_a_baseline_that_stays_implausible_is_not_cached(engine) -> None:
    with_decode_cost(engine, 1e-9)  # a curve no real run can reach
    path = cache_file(engine)
    path.unlink(missing_ok=True)
    tps = engine.baseline_tps()
    assert tps > 0 and not path.exists()


def test_a_baseline_measured_while_other_programs_held_the_cores_is_not_cached(engine, monkeypatch) -> None:
    monkeypatch.setattr(costmodel, "cpu_time", lambda: 0.1 * time.perf_counter())  # a tenth of a core
    with_decode_cost(engine, 1.0)
    path = cache_file(engine)
    path.unlink(missing_ok=True)
    assert engine.baseline_tps() > 0.5 and not path.exists()
