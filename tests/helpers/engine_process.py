"""`python -m engine.runtime.server` driven over its JSON-lines protocol, as the GUI drives it:
for tests that kill the engine process, and for "a fresh engine answers the same
conversation" comparisons (issue 6, item 1)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from engine.settings import GenerationSettings, LoadSettings

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120.0


class EngineDied(RuntimeError):
    pass


class EngineProcess:
    def __init__(self, fault: str | None = None, env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT), "PYTHONUTF8": "1"}
        full_env.pop("TANDEM_FAULT", None)  # never inherit a fault meant for another process
        if fault:
            full_env["TANDEM_FAULT"] = fault
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process; see close())
        self._stderr_text = ""
        self.proc = subprocess.Popen([sys.executable, "-m", "engine.runtime.server"], cwd=ROOT, env=full_env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        # a reader thread, so that every wait has a timeout even if the engine hangs
        threading.Thread(target=self._read, daemon=True).start()
        self.events: list[dict[str, Any]] = []
        self.pid = int(self.expect("ready")["pid"])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()

    def next_event(self, timeout: float = TIMEOUT_S) -> dict[str, Any] | None:
        """The next event, or None once the process has closed its output."""
        line = self._lines.get(timeout=timeout)
        if line is None:
            self._lines.put(None)  # stay at EOF
            return None
        event = json.loads(line)
        self.events.append(event)
        return event

    def expect(self, kind: str, req_id: str | None = None, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        while True:
            event = self.next_event(timeout)
            if event is None:
                raise EngineDied(f"engine exited ({self.proc.wait(30)}) waiting for {kind}: {self.stderr()[-800:]}")
            mine = req_id is None or event.get("id") == req_id
            if event["type"] == "error" and mine:
                raise RuntimeError(f"engine error: {event['message']}")
            if event["type"] == kind and mine:
                return event

    def load(self, load: LoadSettings, req_id: str = "load", timeout: float = TIMEOUT_S) -> dict[str, Any]:
        self.send({"op": "load", "id": req_id, "load": load.to_dict()})
        return self.expect("loaded", req_id, timeout)

    def generate(self, messages: list[dict[str, str]], settings: GenerationSettings | dict[str, Any],
                 req_id: str = "gen", record_margins: bool = False) -> dict[str, Any]:
        data = settings.to_dict() if isinstance(settings, GenerationSettings) else settings
        self.send({"op": "generate", "id": req_id, "messages": messages, "settings": data,
                   "record_margins": record_margins})
        return self.expect("done", req_id)

    def text_of(self, req_id: str) -> str:
        """What the text events of `req_id` streamed so far, joined."""
        return "".join(p[0] for e in self.events if e["type"] == "text" and e.get("id") == req_id
                       for p in e["pieces"])

    def wait_exit(self, timeout: float = TIMEOUT_S) -> int:
        """Read to the end of the output and return the exit status."""
        while self.next_event(timeout) is not None:
            pass
        return self.proc.wait(timeout)

    def stderr(self) -> str:
        if self._stderr.closed:
            return self._stderr_text
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"op": "shutdown"})
                self.proc.wait(60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
        if not self._stderr.closed:
            self._stderr_text = self.stderr()  # still readable after close()
            self._stderr.close()


def fresh_reply(load: LoadSettings, messages: list[dict[str, str]], settings: GenerationSettings | dict[str, Any],
                record_margins: bool = False) -> dict[str, Any]:
    """The "done" event of a brand-new engine process answering `messages`."""
    engine = EngineProcess()
    try:
        engine.load(load)
        return engine.generate(messages, settings, record_margins=record_margins)
    finally:
        engine.close()
