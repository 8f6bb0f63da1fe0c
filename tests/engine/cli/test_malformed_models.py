"""Model files whose header is well-formed but whose parts contradict each other never
kill a Tandem process (issue 17).

Random corruptions of each kind (tests/helpers/malformed_gguf.py: duplicate token
strings, score / type arrays of another length, bad merges, special ids outside the
vocabulary, tensor shapes or hyper-parameters that contradict each other, tensor data
offsets past the end of the file or overlapping) go through `tandem generate`, the
benchmark's loader (`tandem bench`) and one long-lived engine process: each says what is
wrong in one line and exits with an error status (never a signal), and the engine process
goes on serving.  A spy proves llama.cpp, in this process or a trial child, never sees a
file the check refuses.

TANDEM_FUZZ_FILES sets how many random files the property test tries (default 16, about a
minute here); the README's Reliability row was measured with a bigger run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from engine.errors import ModelFileError
from engine.llama import load_guard
from engine.runtime.session import Engine
from engine.settings import LoadSettings
from tests.engine.models.test_reliability_models import spy_on_llama_loads
from tests.helpers.engine_process import EngineProcess
from tests.helpers.malformed_gguf import KINDS, corrupt, good_spec, write_model

ROOT = Path(__file__).resolve().parents[3]
FUZZ_FILES = int(os.environ.get("TANDEM_FUZZ_FILES", "16"))
CLI_TIMEOUT_S = 120


def tandem(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUTF8": "1"}
    return subprocess.run([sys.executable, "-m", "engine.cli.main", *args], cwd=ROOT, env=env,
                          capture_output=True, timeout=CLI_TIMEOUT_S, check=False)


def generate(path: Path) -> subprocess.CompletedProcess:
    return tandem("generate", "--target", str(path), "--draft", "none", "--prompt", "hi", "--max-tokens", "2",
                  "--threads", "1", "--ctx", "256")


def bench(path: Path, out: Path) -> subprocess.CompletedProcess:
    return tandem("bench", "--target", str(path), "--draft", "none", "--quick", "--max-prompts", "1",
                  "--max-tokens", "2", "--threads", "1", "--ctx", "256", "--out", str(out))


def assert_one_line_refusal(done: subprocess.CompletedProcess, path: Path, words: str) -> str:
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode == ModelFileError.exit_code, (done.returncode, stderr)  # an error status, not a signal
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("tandem: error: ") and words in lines[0] and lines[0].endswith(str(path)), lines[0]
    return lines[0].removeprefix("tandem: error: ")


@pytest.fixture(scope="module")
def engine_process():
    engine = EngineProcess()
    yield engine
    engine.close()
    assert engine.proc.returncode == 0, engine.stderr()[-2000:]  # survived every file, then shut down cleanly


def engine_refusal(engine: EngineProcess, path: Path, req_id: str) -> str:
    engine.send({"op": "load", "id": req_id, "load": LoadSettings(str(path), None, n_ctx=256, threads=1).to_dict()})
    while True:
        event = engine.next_event()
        assert event is not None, f"the engine process died: {engine.stderr()[-2000:]}"
        if event.get("id") == req_id and event["type"] in ("error", "loaded"):
            assert event["type"] == "error", event
            return event["message"]


_tried: list[str] = []


@settings(max_examples=FUZZ_FILES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), a=st.integers(0, 2**32), b=st.integers(0, 2**32))
@example(kind="duplicate-token", a=258, b=259)  # the SIGABRT of the issue
@example(kind="scores-length", a=0, b=0)  # a score array one shorter than the tokens
@example(kind="tensor-shape", a=9, b=1)  # blk.0.ffn_gate.weight two columns too wide
def test_malformed_files_never_kill_a_tandem_process(engine_process, tmp_path_factory, kind, a, b):
    spec, words = corrupt(good_spec(), kind, a, b)
    where = tmp_path_factory.mktemp(kind)
    path = write_model(where / "model.gguf", spec)
    _tried.append(kind)
    event(kind)  # the mix of kinds shows in --hypothesis-show-statistics
    said = assert_one_line_refusal(generate(path), path, words)
    assert assert_one_line_refusal(bench(path, where / "bench"), path, words) == said
    message = engine_refusal(engine_process, path, f"load-{len(_tried)}")
    assert message == said  # the same one line in the window
    engine_process.send({"op": "ping", "id": "alive"})
    assert engine_process.expect("pong", "alive")


# ---------------------------------------------------------------- the cases named in the issue, exactly


def test_the_issues_cases_through_tandem_generate(tmp_path):
    spec = good_spec()
    tokens = list(spec.tokens)
    tokens[259] = tokens[258]
    cases = {
        "duplicate": (replace(spec, tokens=tokens),
                      f"GGUF tokenizer.ggml.tokens: token 259 '{tokens[258]}' appears twice (ids 258 and 259)"),
        "scores": (replace(spec, scores=spec.scores[:-1]),
                   "GGUF tokenizer.ggml.scores has 269 entries but tokenizer.ggml.tokens has 270 (one per token)"),
        "shape": (replace(spec, shapes={**spec.shapes, "blk.0.ffn_gate.weight": (64, 129)}),
                  "GGUF tensor 'blk.0.ffn_gate.weight' has shape [64, 129] but the hyper-parameters "
                  "(embedding_length=64, feed_forward_length=128) make it [64, 128]"),
    }
    for name, (bad, expected) in cases.items():
        path = write_model(tmp_path / f"{name}.gguf", bad)
        assert assert_one_line_refusal(generate(path), path, expected) == f"{expected}: {path}"


# ---------------------------------------------------------------- llama.cpp never sees a refused file


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("role", ["target", "draft"])
def test_llama_cpp_never_sees_a_refused_file(tiny_gguf, tmp_path, monkeypatch, kind, role):
    spec, words = corrupt(good_spec(), kind, 7, 11)
    path = write_model(tmp_path / "bad.gguf", spec)
    Engine(LoadSettings(str(tiny_gguf), None, n_ctx=256, threads=1)).close()  # the good file is tried once, first
    opened = spy_on_llama_loads(monkeypatch)
    trials: list[Path] = []
    real_probe = load_guard.probe
    monkeypatch.setattr(load_guard, "probe", lambda p: trials.append(p) or real_probe(p))
    load = LoadSettings(str(path), None) if role == "target" else LoadSettings(str(tiny_gguf), str(path))
    with pytest.raises(ModelFileError) as err:
        Engine(load, require_compatible_draft=False)
    assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    assert trials == []  # no trial child was started for it either
    assert opened == []  # (a bad draft is refused before the target loads, by the memory check's header read)
