"""`tandem generate` / `tandem chat` end to end: output, statistics, and bad input
(one clear line, non-zero exit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def tandem(*args: str, stdin: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.launcher", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, proc.stderr
    assert lines[-1].startswith("tandem: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[-1]


def test_generate_streams_text_and_prints_statistics(tiny_gguf) -> None:
    proc = tandem("generate", "--target", str(tiny_gguf), "--draft", "none", "--spec", "ngram",
                  "--prompt", "hello hello hello", "--max-tokens", "12", "--color", "never")
    assert proc.returncode == 0, proc.stderr
    assert "tokens in" in proc.stderr and "tok/s" in proc.stderr and "tau" in proc.stderr


def test_generate_json_statistics(tiny_gguf) -> None:
    proc = tandem("generate", "--target", str(tiny_gguf), "--draft", "none", "--spec", "off", "--raw",
                  "--prompt", "hello world", "--max-tokens", "10", "--stats", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["stats"]["tokens"] == len(data["tokens"]) <= 10
    assert data["stats"]["tau"] == 1.0
    assert data["reason"] in ("length", "stop")


def test_missing_model_file(tmp_path) -> None:
    proc = tandem("generate", "--target", str(tmp_path / "nope.gguf"), "--draft", "none", "--prompt", "x")
    assert proc.returncode == 2
    assert "model file not found" in error_line(proc)


def test_file_that_is_not_gguf(tmp_path) -> None:
    bad = tmp_path / "notes.gguf"
    bad.write_text("just some text, not a model\n" * 10)
    proc = tandem("generate", "--target", str(bad), "--draft", "none", "--prompt", "x")
    assert proc.returncode == 2
    assert "not a GGUF file" in error_line(proc)


def test_truncated_gguf(tmp_path, tiny_gguf) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:-1000])
    proc = tandem("generate", "--target", str(cut), "--draft", "none", "--prompt", "x")
    assert proc.returncode == 2
    assert "truncated" in error_line(proc)


def test_prompt_longer_than_the_context(tiny_gguf) -> None:
    proc = tandem("generate", "--target", str(tiny_gguf), "--draft", "none", "--spec", "off", "--raw",
                  "--ctx", "256", "--prompt", "hello " * 400)
    assert proc.returncode == 4
    line = error_line(proc)
    assert "tokens but the context holds 256" in line


def test_unknown_speculation_mode_is_an_argument_error(tiny_gguf) -> None:
    proc = tandem("generate", "--target", str(tiny_gguf), "--spec", "eagle9", "--prompt", "x")
    assert proc.returncode == 2
    assert "invalid choice: 'eagle9'" in proc.stderr


@pytest.mark.models
def test_incompatible_pair_names_the_failed_rule(default_pair, smollm_path) -> None:
    proc = tandem("generate", "--target", str(default_pair[0]), "--draft", str(smollm_path), "--spec", "chain",
                  "--prompt", "x", "--max-tokens", "4")
    assert proc.returncode == 3
    assert "vocab sizes differ: 151936 vs 49152" in error_line(proc)


@pytest.mark.models
@pytest.mark.slow
def test_terminal_chat_keeps_the_conversation(default_pair) -> None:
    """Two turns through `tandem chat`; the second turn only decodes the new messages."""
    script = "My name is Ada. Reply with one word: OK.\nWhat is my name? One word.\n/exit\n"
    proc = tandem("chat", "--target", str(default_pair[0]), "--draft", str(default_pair[1]), "--spec", "auto",
                  "--max-tokens", "16", "--color", "never", stdin=script)
    assert proc.returncode == 0, proc.stderr
    assert "Ada" in proc.stdout.split("OK")[-1]
    prefills = [int(line.split("(")[1].split(" tokens")[0]) for line in proc.stderr.splitlines()
                if line.startswith("time: prefill")]
    assert len(prefills) == 2 and prefills[1] < prefills[0] + 20, proc.stderr
