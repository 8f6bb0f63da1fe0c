"""A model file is tried in a throwaway process before llama.cpp loads it in one that must
not die (issue 17): an abort there becomes a one-line error, a clean load is
remembered, llama.cpp's own error line is what a refusal quotes, and gdb is not run on
an abort unless TANDEM_LLAMA_BACKTRACE=1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from engine.errors import ModelFileError
from engine.llama import backend, gguf_check, load_guard
from tests.helpers.malformed_gguf import N_EMBD, N_FF, good_spec, write_model

ROOT = Path(__file__).resolve().parents[3]
ABORTING_CHILD = ROOT / "tests" / "helpers" / "aborting_load.py"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TANDEM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def count_probes(monkeypatch) -> list[list[str]]:
    commands: list[list[str]] = []
    real_run = subprocess.run

    def spy(cmd, *args, **kwargs):
        commands.append(list(cmd))
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(load_guard.subprocess, "run", spy)
    return commands


def test_a_clean_load_is_tried_once_and_remembered(tmp_path, cache, monkeypatch):
    probes = count_probes(monkeypatch)
    path = write_model(tmp_path / "a.gguf", good_spec())
    load_guard.ensure_loadable(path)
    assert probes == [[sys.executable, "-m", "engine.llama.load_guard", str(path)]]
    load_guard.ensure_loadable(path)
    copy = Path(shutil.copy(path, tmp_path / "b.gguf"))  # the same bytes elsewhere
    load_guard.ensure_loadable(copy)
    assert len(probes) == 1
    assert (cache / load_guard.VERDICTS_FILE).is_file()


def test_a_big_file_changed_in_place_is_tried_again(tmp_path, cache, monkeypatch):
    probes = count_probes(monkeypatch)
    monkeypatch.setattr(load_guard, "HASH_BELOW", 0)  # key big files by path, size, mtime
    path = write_model(tmp_path / "a.gguf", good_spec())
    load_guard.ensure_loadable(path)
    os.utime(path, ns=(1, 1))
    load_guard.ensure_loadable(path)
    assert len(probes) == 2


def test_an_abort_in_the_trial_becomes_a_one_line_error(tmp_path, cache, monkeypatch):
    """llama.cpp really aborts in the child (tests/helpers/aborting_load.py); this process
    goes on, gets the abort's own line, and never asks llama.cpp for the file itself."""
    from engine.runtime.session import Engine
    from engine.settings import LoadSettings
    from tests.engine.models.test_reliability_models import spy_on_llama_loads

    path = write_model(tmp_path / "a.gguf", good_spec())
    monkeypatch.setattr(load_guard, "_child_command", lambda p: [sys.executable, str(ABORTING_CHILD), str(p)])
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    opened = spy_on_llama_loads(monkeypatch)
    with pytest.raises(ModelFileError) as err:
        Engine(LoadSettings(str(path), None, n_ctx=256, threads=1))
    message = str(err.value)
    assert message == ("llama.cpp crashed (SIGABRT) loading a.gguf: terminate called after throwing an instance "
                       f"of 'std::out_of_range': {path}")
    assert opened == []
    assert not (cache / load_guard.VERDICTS_FILE).exists()  # a failure is not remembered


def test_the_trial_reports_why_the_child_refused(tmp_path, cache):
    """A refusal in the child (not a crash) comes back as the child's one line."""
    spec = good_spec()
    path = write_model(tmp_path / "a.gguf", replace(spec, shapes={**spec.shapes, "blk.0.ffn_up.weight": (N_EMBD, 96)}))
    with pytest.raises(ModelFileError) as err:
        gguf_check.check(path)
    assert load_guard.probe(path) == (False, str(err.value))


def test_a_refusal_quotes_llama_cpps_error_line_not_its_last_info_line(tmp_path, monkeypatch):
    """Issue 17: "could not load …: print_info: file size = 0.44 MiB".  With the defensive
    check out of the way llama.cpp itself refuses the tensor; its error line is quoted."""
    spec = good_spec()
    shapes = {**spec.shapes, "blk.0.ffn_gate.weight": (N_EMBD, N_FF + 1)}
    path = write_model(tmp_path / "a.gguf", replace(spec, shapes=shapes))
    monkeypatch.setattr(gguf_check, "check", lambda p: None)
    with pytest.raises(ModelFileError) as err:
        backend.LlamaModel(path, guarded=False)
    message = str(err.value)
    assert message.startswith("llama.cpp could not load a.gguf: llama_model_load: error loading model: "
                              "check_tensor_dims: tensor 'blk.0.ffn_gate.weight' has wrong shape; expected")
    assert "print_info" not in message and "\n" not in message


@pytest.mark.parametrize(("env", "backtrace"), [({}, False), ({"TANDEM_LLAMA_BACKTRACE": "1"}, True)])
def test_no_debugger_backtrace_on_abort_unless_asked(tmp_path, env, backtrace):
    path = write_model(tmp_path / "a.gguf", good_spec())
    full_env = {k: v for k, v in os.environ.items() if k not in ("GGML_NO_BACKTRACE", "TANDEM_LLAMA_BACKTRACE")}
    done = subprocess.run([sys.executable, str(ABORTING_CHILD), str(path)], capture_output=True, timeout=120,
                          env={**full_env, **env, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode < 0  # it did abort
    lines = [line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
    assert lines[0].startswith("terminate called after throwing an instance of 'std::out_of_range'") or backtrace
    if backtrace:  # gdb (where installed) or the symbol dump: frames beyond the two terminate lines
        assert len(lines) > 2
    else:
        assert len(lines) == 2, lines


def test_the_packaged_app_dispatches_the_trial_to_the_child(tmp_path, capsys, monkeypatch):
    """Frozen, the child is the app binary itself with --llama-probe (app/launcher.py)."""
    from app import launcher

    path = write_model(tmp_path / "a.gguf", good_spec())
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert load_guard._child_command(path) == [sys.executable, "--llama-probe", str(path)]
    monkeypatch.undo()
    assert launcher.main(["--llama-probe", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "ok"
    bad = write_model(tmp_path / "b.gguf", replace(good_spec(), merges=None))
    assert launcher.main(["--llama-probe", str(bad)]) == 1
    said = capsys.readouterr().out.strip()
    assert said == f"GGUF tokenizer.ggml.merges is missing; the 'gpt2' tokenizer needs it: {bad}"
