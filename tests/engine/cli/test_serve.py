"""`tandem serve` as a user runs it: a process that prints its address, answers the
`openai` client, and on SIGTERM cancels what it is generating and exits 0."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

ROOT = Path(__file__).resolve().parents[3]
START_S = 120


def start_serve(tiny_gguf: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli.main", "serve", "--target", str(tiny_gguf), "--draft", "none",
         "--ctx", "2048", "--port", "0", *args],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=START_S)
    except queue.Empty:
        proc.kill()
        pytest.fail(f"tandem serve did not start: {proc.communicate()[1][-2000:]}")
    match = re.search(r"(http://\S+)/v1", line)
    assert match, (line, proc.poll())
    return proc, match.group(1)


@pytest.mark.slow
def test_serve_answers_and_stops_cleanly_on_sigterm_mid_stream(tiny_gguf):
    proc, url = start_serve(tiny_gguf, env={"TANDEM_API_KEY": "k"})
    try:
        client = OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=60)
        reply = client.chat.completions.create(model="tandem", messages=[{"role": "user", "content": "hello"}],
                                               max_tokens=8)
        assert reply.usage.completion_tokens == 8
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401  # the key from the environment
        # a long reply is streaming when SIGTERM comes: it ends, the process exits 0
        stream = client.chat.completions.create(
            model="tandem", messages=[{"role": "user", "content": "Count to one hundred"}], max_tokens=1500,
            stream=True)
        chunks = iter(stream)
        next(chunks)
        next(chunks)
        proc.send_signal(signal.SIGTERM)
        rest = list(chunks)  # the stream ends instead of hanging
        assert sum(len(c.choices[0].delta.content or "") for c in rest if c.choices) < 2000
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "[stopped]" in err and "Traceback" not in err
    with pytest.raises(httpx.ConnectError):  # the port is closed
        httpx.get(f"{url}/health", timeout=5)


def test_serve_refuses_a_port_in_use_in_one_line(tiny_gguf):
    proc, url = start_serve(tiny_gguf)
    try:
        port = url.rsplit(":", 1)[1]
        second = subprocess.run(
            [sys.executable, "-m", "engine.cli.main", "serve", "--target", str(tiny_gguf), "--draft", "none",
             "--port", port], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=START_S)
        assert second.returncode != 0
        assert f"tandem: error: cannot listen on 127.0.0.1:{port}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
