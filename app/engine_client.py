"""The GUI's only line to the engine: a child process speaking JSON lines
(engine/runtime/server.py), wrapped in Qt signals.

The engine runs in its own process so that a crash inside llama.cpp takes down only
that process: the window sees `crashed` and offers a restart.  Everything here is
asynchronous (QProcess signals); nothing waits on the engine on the GUI thread.

Requests are queued until the server says "ready", so callers can `start()` and
`load()` in one breath.  Each request gets an id; events carry it back, which is how
late events of a cancelled generation are told apart from the next one's.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
from collections import deque
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from engine.llama import hugepages
from engine.llama.rpc import EXIT_REMOTE_LOST
from engine.settings import GenerationSettings, LoadSettings

STDERR_LINES = 60  # kept for the crash report
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def server_command() -> list[str]:
    """How to start the engine: `python -m engine.runtime.server`, or the frozen app itself."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--engine-server"]
    return [sys.executable, "-m", "engine.runtime.server"]


def describe_exit(exit_code: int, crashed: bool) -> str:
    if crashed:
        # QProcess reports the terminating signal as the exit code of a crashed child (Unix)
        try:
            name = signal.Signals(exit_code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {exit_code} ({name})" if exit_code else "crashed"
    if exit_code == EXIT_REMOTE_LOST:
        return "the remote device stopped answering"
    return f"exited with code {exit_code}"


class EngineClient(QObject):
    ready = Signal(int)  # pid of the engine process
    loading = Signal(str, str)  # request id, what it is doing
    loaded = Signal(str, dict)  # request id, models, baseline, costs
    text = Signal(str, list)  # request id, [(text, source), ...]
    step = Signal(str, dict, dict)  # request id, step stats, reply snapshot
    progress = Signal(str, str, int, int)  # request id, stage ("prompt"), done, total
    notice = Signal(str, str)  # request id, message
    done = Signal(str, dict)  # request id, DoneEvent as dict
    error = Signal(str, str, str)  # request id ("" if none), message, kind
    measured = Signal(str, dict)
    history_forgotten = Signal(str, int)  # request id, history files deleted
    crashed = Signal(str, str)  # what happened, last lines of the engine's stderr
    serving = Signal(str, dict)  # request id, {"url", "warning"}: the local API server is up
    unserved = Signal(str)  # request id: the local API server has stopped
    running_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None, command: list[str] | None = None) -> None:
        super().__init__(parent)
        self.command = command or server_command()
        self._proc: QProcess | None = None
        self._buffer = bytearray()
        self._err_buffer = bytearray()
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._pending: list[bytes] = []  # requests written before "ready"
        self._ready = False
        self._stopping = False
        self._ids = itertools.count(1)
        self.pid: int | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.state() != QProcess.ProcessState.NotRunning

    @property
    def is_ready(self) -> bool:
        return self.running and self._ready

    def start(self) -> None:
        if self.running:
            return
        self._buffer.clear()
        self._err_buffer.clear()
        self._stderr.clear()
        self._ready = False
        self._stopping = False
        proc = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        if not getattr(sys, "frozen", False):
            # `-m engine.runtime.server` must import this checkout's engine, installed or not
            env.insert("PYTHONPATH", os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.value("PYTHONPATH")])))
        env.insert("PYTHONUTF8", "1")
        if hugepages.applies():  # huge pages for the weights (engine/llama/hugepages.py)
            env.insert("GLIBC_TUNABLES", hugepages.merged(env.value("GLIBC_TUNABLES")))
        env.insert("PYTHONUNBUFFERED", "1")
        proc.setProcessEnvironment(env)
        # handlers check which process spoke: a killed predecessor's last signals are ignored
        proc.readyReadStandardOutput.connect(lambda p=proc: self._on_stdout(p))
        proc.readyReadStandardError.connect(lambda p=proc: self._on_stderr(p))
        proc.finished.connect(lambda code, status, p=proc: self._on_finished(p, code, status))
        proc.errorOccurred.connect(lambda error, p=proc: self._on_error(p, error))
        self._proc = proc
        proc.start(self.command[0], self.command[1:])
        self.running_changed.emit(True)

    def stop(self, wait_ms: int = 0) -> None:
        """Ask the engine to shut down; kill it if it has not after a grace period.
        wait_ms > 0 waits (only at application exit, when blocking is fine)."""
        proc = self._proc
        if proc is None or proc.state() == QProcess.ProcessState.NotRunning:
            return
        self._stopping = True
        if self._ready:
            proc.write(b'{"op": "shutdown"}\n')
        proc.closeWriteChannel()  # EOF also ends the server's read loop
        if wait_ms > 0:
            if not proc.waitForFinished(wait_ms):
                proc.kill()
                proc.waitForFinished(1000)
        else:
            QTimer.singleShot(3000, lambda p=proc: p.state() != QProcess.ProcessState.NotRunning and p.kill())

    def restart(self) -> None:
        proc, self._proc = self._proc, None  # from here on, the old process's signals are ignored
        if proc is not None:
            if proc.state() != QProcess.ProcessState.NotRunning:
                proc.kill()
                proc.waitForFinished(2000)  # a killed process is reaped at once
            proc.deleteLater()
        self._ready = False
        self._pending.clear()
        self.start()

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    # ---------------------------------------------------------------- requests

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    def load(self, load: LoadSettings) -> str:
        req_id = self.new_id("load")
        self._send({"op": "load", "id": req_id, "load": load.to_dict()})
        return req_id

    def generate(self, messages: list[dict[str, str]], settings: GenerationSettings) -> str:
        req_id = self.new_id("gen")
        self._send({"op": "generate", "id": req_id, "messages": messages, "settings": settings.to_dict()})
        return req_id

    def cancel(self, req_id: str) -> None:
        self._send({"op": "cancel", "id": req_id})

    def measure(self) -> str:
        req_id = self.new_id("measure")
        self._send({"op": "measure", "id": req_id})
        return req_id

    def forget_warm(self) -> None:
        """The engine deletes its saved copy of the last conversation's cache."""
        self._send({"op": "forget_warm", "id": self.new_id("forget")})

    def forget_history(self) -> str:
        """Delete the speculation history (earlier prompts and replies the engine
        keeps to guess repeated text); the chats themselves stay."""
        req_id = self.new_id("forget")
        self._send({"op": "forget_history", "id": req_id})
        return req_id

    def ping(self) -> str:
        req_id = self.new_id("ping")
        self._send({"op": "ping", "id": req_id})
        return req_id

    def serve(self, host: str, port: int, api_key: str | None, settings: GenerationSettings) -> str:
        """Start the OpenAI-compatible server inside the engine process (engine/api)."""
        req_id = self.new_id("serve")
        self._send({"op": "serve", "id": req_id, "host": host, "port": port, "api_key": api_key,
                    "settings": settings.to_dict()})
        return req_id

    def serve_settings(self, settings: GenerationSettings) -> None:
        """The API's defaults follow the window's settings."""
        self._send({"op": "serve_settings", "settings": settings.to_dict()})

    def unserve(self) -> str:
        req_id = self.new_id("unserve")
        self._send({"op": "unserve", "id": req_id})
        return req_id

    def _send(self, request: dict[str, Any]) -> None:
        # ASCII-only JSON: the child's stdin encoding can never mangle a message
        line = (json.dumps(request, ensure_ascii=True) + "\n").encode("ascii")
        if self._proc is None or not self._ready:
            self._pending.append(line)
            return
        self._proc.write(line)

    # ---------------------------------------------------------------- process events

    def _on_stdout(self, proc: QProcess) -> None:
        if proc is not self._proc:
            return
        self._buffer += bytes(proc.readAllStandardOutput().data())
        while True:
            nl = self._buffer.find(b"\n")
            if nl < 0:
                break
            raw = bytes(self._buffer[:nl])
            del self._buffer[: nl + 1]
            if raw.strip():
                self._dispatch_line(raw)

    def _on_stderr(self, proc: QProcess) -> None:
        if proc is not self._proc:
            return
        self._err_buffer += bytes(proc.readAllStandardError().data())
        *lines, rest = self._err_buffer.split(b"\n")
        self._err_buffer = bytearray(rest)
        for line in lines:
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self._stderr.append(text)

    def _dispatch_line(self, raw: bytes) -> None:
        try:
            event = json.loads(raw.decode("utf-8", "replace"))
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            self._stderr.append(f"[tandem] unreadable engine output: {raw[:200]!r}")
            return
        req_id = str(event.get("id") or "")
        if kind == "ready":
            self.pid = int(event.get("pid") or 0) or None
            self._ready = True
            pending, self._pending = self._pending, []
            for line in pending:
                assert self._proc is not None
                self._proc.write(line)
            self.ready.emit(self.pid or 0)
        elif kind == "text":
            self.text.emit(req_id, [tuple(p) for p in event.get("pieces", [])])
        elif kind == "step":
            self.step.emit(req_id, event.get("step", {}), event.get("reply", {}))
        elif kind == "progress":
            self.progress.emit(req_id, str(event.get("stage", "")), int(event.get("done", 0)),
                               int(event.get("total", 0)))
        elif kind == "loading":
            self.loading.emit(req_id, str(event.get("message", "")))
        elif kind == "loaded":
            self.loaded.emit(req_id, event)
        elif kind == "notice":
            self.notice.emit(req_id, str(event.get("message", "")))
        elif kind == "done":
            self.done.emit(req_id, event)
        elif kind == "error":
            self.error.emit(req_id, str(event.get("message", "")), str(event.get("kind", "error")))
        elif kind == "measured":
            self.measured.emit(req_id, event)
        elif kind == "serving":
            self.serving.emit(req_id, event)
        elif kind == "unserved":
            self.unserved.emit(req_id)
        elif kind == "history_forgotten":
            self.history_forgotten.emit(req_id, int(event.get("files") or 0))

    def _on_error(self, proc: QProcess, error: QProcess.ProcessError) -> None:
        if proc is self._proc and error == QProcess.ProcessError.FailedToStart:
            self._stderr.append(f"[tandem] could not start the engine: {' '.join(self.command)}")
            self._report_end("could not be started")

    def _on_finished(self, proc: QProcess, exit_code: int, status: QProcess.ExitStatus) -> None:
        if proc is not self._proc:
            return
        self._on_stdout(proc)  # events and last words still in the pipes
        self._on_stderr(proc)
        crashed = status == QProcess.ExitStatus.CrashExit
        self._report_end(describe_exit(exit_code, crashed))

    def _report_end(self, what: str) -> None:
        was_stopping = self._stopping
        self._ready = False
        self._pending.clear()
        self.pid = None
        self.running_changed.emit(False)
        if not was_stopping:
            self.crashed.emit(what, self.stderr_tail())
