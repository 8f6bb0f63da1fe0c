"""The target on another machine through ggml's RPC backend (issue 18), over loopback.

A real `tandem rpc-server` (ggml's own server, from the installed llama.cpp) runs in a
child process on a free 127.0.0.1 port.  Greedy output with the target remote must
equal the local run; a server that is unreachable, speaks another protocol version or
dies mid-reply gives one clear line and never a signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from engine.llama import rpc
from engine.settings import GenerationSettings, LoadSettings, SpecSettings
from tests.engine.decoding.test_greedy_equivalence import NEAR_TIE
from tests.helpers.engine_process import EngineDied, EngineProcess
from tests.helpers.tiny_gguf import write_tiny_gguf

ROOT = Path(__file__).resolve().parents[3]
PROMPT = [{"role": "user", "content": "Write a Python function that adds two numbers."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RpcServer:
    """`tandem rpc-server` in a child process, as a user would start it."""

    def __init__(self, threads: int = 1) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "engine.cli.main", "rpc-server", "--port", str(self.port),
               "--threads", str(threads)]
        # ggml's server logs a line per connection: a file, so no pipe ever fills up
        self.log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in kill())
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                     stdout=self.log, stderr=self.log, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"rpc-server exited: {self.log.read()[-800:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.1)
        raise RuntimeError("rpc-server did not start listening within 60 s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def server():
    if not rpc.available():
        pytest.skip("this llama.cpp was built without -DGGML_RPC=ON (TANDEM_CMAKE_ARGS override?)")
    srv = RpcServer()
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("rpc") / "tiny.gguf", n_ctx=2048)


# ---------------------------------------------------------------- before ggml sees an endpoint


def test_endpoints_parse_and_bad_ones_say_what_is_expected():
    assert rpc.parse_endpoints("10.0.0.2:50052, box:7000") == ["10.0.0.2:50052", "box:7000"]
    assert rpc.parse_endpoints("gpu-box") == [f"gpu-box:{rpc.DEFAULT_PORT}"]
    assert rpc.parse_endpoints("") == [] and rpc.parse_endpoints(None) == []
    for bad in ("host:http", "host:0", "host:70000", ":5000"):
        with pytest.raises(rpc.RemoteError, match="host:port"):
            rpc.parse_endpoints(bad)


def test_an_unreachable_server_is_a_clear_error_not_an_abort():
    with pytest.raises(rpc.RemoteError, match=r"cannot reach the remote device 127\.0\.0\.1:\d+.*rpc-server"):
        rpc.hello(f"127.0.0.1:{free_port()}")


def test_a_server_of_another_protocol_version_is_refused_by_name():
    """A fake server that answers the handshake as protocol 6.1.0 (an older Tandem)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1 + 8 + 24)
            conn.sendall(struct.pack("<Q", 28) + bytes([6, 1, 0, 0]) + bytes(24))

    threading.Thread(target=answer, daemon=True).start()
    try:
        with pytest.raises(rpc.RemoteError, match=r"speaks RPC protocol 6\.1\.0.*same Tandem version"):
            rpc.hello(f"127.0.0.1:{port}")
    finally:
        listener.close()


def test_the_cli_names_an_unreachable_server_in_one_line(tiny: Path):
    out = subprocess.run(
        [sys.executable, "-m", "engine.cli.main", "generate", "--target", str(tiny), "--draft", "none",
         "--spec", "off", "--max-tokens", "4", "--rpc", f"127.0.0.1:{free_port()}", "--prompt", "hi"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert out.returncode not in (0,) and out.returncode > 0, out  # an error code, not a signal
    errors = [line for line in out.stderr.splitlines() if line.startswith("tandem: error")]
    assert len(errors) == 1 and "cannot reach the remote device" in errors[0], out.stderr


def test_the_launcher_stays_on_loopback_unless_told_and_warns_when_not():
    from engine.llama.rpc import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli.main", "rpc-server", "--host", "0.0.0.0",
                             "--port", str(port), "--threads", "1"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "NO authentication" in first and "trusted network" in first
    finally:
        proc.kill()
        proc.wait(10)


# ---------------------------------------------------------------- through a real rpc-server


def _reply(load: LoadSettings, mode: str, max_tokens: int = 24, margins: bool = False) -> dict:
    engine = EngineProcess()
    try:
        # the real target's first load measures its cost curve (through the network when
        # remote), a minute or more on a busy 2-core machine
        engine.load(load, timeout=600)
        settings = GenerationSettings(max_tokens=max_tokens, spec=SpecSettings(mode))
        return engine.generate(PROMPT, settings, record_margins=margins)
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["off", "auto"])
def test_greedy_output_with_the_target_remote_equals_the_local_run(server: RpcServer, tiny: Path, mode: str):
    local = LoadSettings(str(tiny), str(tiny), n_ctx=2048, threads=1)
    remote = LoadSettings(str(tiny), str(tiny), n_ctx=2048, threads=1, rpc=[server.endpoint])
    here, there = _reply(local, mode), _reply(remote, mode)
    assert there["tokens"] == here["tokens"] and len(here["tokens"]) > 0


@pytest.mark.slow
def test_a_server_that_dies_mid_reply_is_named_the_reply_so_far_kept_and_local_works_after(
        server: RpcServer, tiny: Path):
    engine = EngineProcess()
    try:
        engine.load(LoadSettings(str(tiny), None, n_ctx=2048, threads=1, rpc=[server.endpoint]))
        engine.send({"op": "generate", "id": "long", "messages": PROMPT,
                     "settings": GenerationSettings(max_tokens=1500, spec=SpecSettings("off")).to_dict()})
        while not engine.text_of("long"):
            assert engine.next_event() is not None, engine.stderr()
        server.kill()
        with pytest.raises(EngineDied):
            engine.expect("done", "long")
        code = engine.proc.wait(30)
        assert code == rpc.EXIT_REMOTE_LOST, (code, engine.stderr()[-600:])
        assert f"the remote device {server.endpoint} stopped answering" in engine.stderr()
        assert engine.text_of("long")  # what streamed before the loss is still the client's to keep
    finally:
        engine.close()
    # the same models on this computer answer as before
    assert _reply(LoadSettings(str(tiny), None, n_ctx=2048, threads=1), "off")["tokens"]


@pytest.mark.slow
@pytest.mark.models
def test_the_real_target_remote_answers_like_the_local_one(server: RpcServer, default_pair: tuple[Path, Path]):
    target, draft = (str(p) for p in default_pair)
    local = LoadSettings(target, draft, n_ctx=2048)
    remote = LoadSettings(target, draft, n_ctx=2048, rpc=[server.endpoint])
    # The server's CPU runs un-repacked weights (an RPC buffer is a plain one), so its
    # kernels round differently from the local ones: equal up to a proven near-tie.
    here = _reply(local, "off", 32, margins=True)
    for mode in ("off", "auto"):
        there = _reply(remote, mode, 32)
        for i, (a, b) in enumerate(zip(here["tokens"], there["tokens"], strict=False)):
            if a != b:
                assert here["margins"][i] <= NEAR_TIE, (mode, i, here["margins"][i])
                break
        else:
            assert len(there["tokens"]) == len(here["tokens"]), mode


def test_exit_codes_name_the_lost_device_in_the_app():
    from app.engine_client import describe_exit

    assert describe_exit(rpc.EXIT_REMOTE_LOST, False) == "the remote device stopped answering"
    assert describe_exit(int(signal.SIGKILL), True).startswith("killed by signal")


def test_the_backend_is_found_in_a_package_that_keeps_only_sonames(tmp_path: Path, monkeypatch):
    """The desktop package bundles llama.cpp's libraries by SONAME only (libggml-rpc.so.0,
    no libggml-rpc.so): the RPC backend must still be found there (CI found it was not)."""
    lib_dir = rpc._lib_dir()
    real = sorted(lib_dir.glob("libggml-rpc.so*"))
    if not real:
        pytest.skip("not a Linux wheel layout")
    (tmp_path / "libggml-rpc.so.0").write_bytes(real[0].read_bytes())
    monkeypatch.setattr(rpc, "_lib_dir", lambda: tmp_path)
    lib = rpc._load("ggml-rpc")
    assert hasattr(lib, "ggml_backend_rpc_add_server")
    with pytest.raises(rpc.RemoteError, match="no RPC backend"):
        rpc._load("ggml-nonexistent")
