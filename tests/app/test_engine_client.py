"""The engine process client: a real `python -m engine.runtime.server` on tiny models."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from app.engine_client import EngineClient, describe_exit, server_command
from engine.settings import GenerationSettings, LoadSettings
from tests.app.helpers import DRAFT, TARGET

pytestmark = pytest.mark.gui


@pytest.fixture
def client(qtbot, tiny_env: tuple[Path, Path]):
    c = EngineClient()
    yield c
    c.stop(wait_ms=3000)


def _load(models: Path) -> LoadSettings:
    return LoadSettings(str(models / f"{TARGET}.gguf"), str(models / f"{DRAFT}.gguf"), n_ctx=2048, threads=1)


def _gen(mode: str = "off", max_tokens: int = 16) -> GenerationSettings:
    g = GenerationSettings(max_tokens=max_tokens)
    g.spec.mode = mode
    return g


def test_command_is_the_engine_module_or_the_frozen_app(monkeypatch: pytest.MonkeyPatch) -> None:
    assert server_command()[1:] == ["-m", "engine.runtime.server"]
    monkeypatch.setattr("sys.frozen", True, raising=False)
    assert server_command()[1:] == ["--engine-server"]


def test_requests_before_ready_are_queued_and_events_carry_ids(qtbot, client: EngineClient,
                                                               tiny_env: tuple[Path, Path]) -> None:
    events: list[tuple[str, str]] = []
    client.loading.connect(lambda i, _m: events.append(("loading", i)))
    client.loaded.connect(lambda i, _e: events.append(("loaded", i)))
    client.text.connect(lambda i, _p: events.append(("text", i)))
    client.step.connect(lambda i, _s, _r: events.append(("step", i)))
    client.start()
    load_id = client.load(_load(tiny_env[0]))  # written before the server said "ready"
    with qtbot.waitSignal(client.done, timeout=60000) as done:
        gen_id = client.generate([{"role": "user", "content": "hello"}], _gen("chain"))
    req_id, event = done.args
    assert req_id == gen_id != load_id
    assert ("loaded", load_id) in events
    assert events.index(("loaded", load_id)) < events.index(("text", gen_id))
    assert event["reason"] in ("length", "stop") and event["stats"]["tokens"] > 0
    assert sum(event["stats"]["accepted"].values()) > 0  # the draft has the target's weights
    text_ids = {i for kind, i in events if kind in ("text", "step")}
    assert text_ids == {gen_id}


def test_cancel_ends_the_generation(qtbot, client: EngineClient, tiny_env: tuple[Path, Path]) -> None:
    client.start()
    with qtbot.waitSignal(client.loaded, timeout=60000):
        client.load(_load(tiny_env[0]))
    with qtbot.waitSignal(client.done, timeout=30000) as done:
        gen_id = client.generate([{"role": "user", "content": "hello"}], _gen(max_tokens=3000))
        client.cancel(gen_id)  # reaches the server before the job starts: nothing is generated
    assert done.args[0] == gen_id
    assert done.args[1]["reason"] == "cancelled"


def test_error_event_for_a_bad_request(qtbot, client: EngineClient) -> None:
    client.start()
    with qtbot.waitSignal(client.error, timeout=30000) as err:
        gen_id = client.generate([{"role": "user", "content": "hi"}], _gen())  # no model loaded yet
    assert err.args[0] == gen_id
    assert "no model loaded" in err.args[1]


def test_crash_is_reported_and_restart_works(qtbot, client: EngineClient,
                                             tiny_env: tuple[Path, Path]) -> None:
    client.start()
    with qtbot.waitSignal(client.ready, timeout=30000):
        pass
    pid = client.pid
    assert pid
    with qtbot.waitSignal(client.crashed, timeout=10000) as crashed:
        os.kill(pid, signal.SIGKILL)
    assert "SIGKILL" in crashed.args[0]
    assert not client.running
    with qtbot.waitSignal(client.ready, timeout=30000):
        client.restart()
    assert client.pid and client.pid != pid
    with qtbot.waitSignal(client.loaded, timeout=60000):
        client.load(_load(tiny_env[0]))


def test_stop_is_not_a_crash(qtbot, client: EngineClient) -> None:
    crashes: list = []
    client.crashed.connect(lambda *a: crashes.append(a))
    client.start()
    with qtbot.waitSignal(client.ready, timeout=30000):
        pass
    client.stop(wait_ms=5000)
    qtbot.waitUntil(lambda: not client.running, timeout=5000)
    assert crashes == []


def test_describe_exit() -> None:
    assert describe_exit(9, True) == "killed by signal 9 (SIGKILL)"
    assert describe_exit(11, True) == "killed by signal 11 (SIGSEGV)"
    assert describe_exit(3, False) == "exited with code 3"
