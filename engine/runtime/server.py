"""The engine as a separate process, for the GUI.

The GUI starts `python -m engine.runtime.server` and talks JSON lines over its stdin and
stdout, so a crash inside llama.cpp kills only this process, never the window.

Requests (one JSON object per line):
    {"op": "load", "load": {LoadSettings}}             -> "loaded" or "error"
    {"op": "generate", "id": ID, "messages": [...], "settings": {GenerationSettings}, "record_margins": false}
                                                       -> "progress" (prompt tokens read), "text"/"step"/"notice"
                                                          events, then "done" or "error"
    {"op": "cancel", "id": ID}                         -> the generation ends with reason "cancelled"
    {"op": "measure"}                                  -> "measured" (re-measures costs and baseline)
    {"op": "forget_warm"}                              -> deletes the saved conversation cache (no reply)
    {"op": "forget_history"}                           -> "history_forgotten" (deletes the speculation history)
    {"op": "ping"}                                     -> "pong"
    {"op": "serve", "id": ID, "host": H, "port": P, "api_key": K or null, "settings": {GenerationSettings}}
                                                       -> "serving" {url, warning} or "error"
    {"op": "serve_settings", "settings": {...}}        -> (the API's defaults follow the app's settings)
    {"op": "unserve", "id": ID}                        -> "unserved"
    {"op": "shutdown"}
Every event carries the request's "id" (load/measure use the id given, if any).
Engine events are engine/decoding/events.py dataclasses as dicts.

The app's "Local server" switch (issue 15) runs the OpenAI-compatible API
(engine/api) inside this process: its requests join the same job queue as the
window's, so one Engine, one set of KV caches and one worker thread serve both, in
the order requests arrive.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import traceback
from typing import Any, TextIO

from engine import faults
from engine.decoding.events import ErrorEvent, to_dict
from engine.errors import Cancelled, TandemError
from engine.settings import GenerationSettings, LoadSettings


class Server:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.engine = None
        self._write_lock = threading.Lock()
        self._jobs: queue.Queue[dict | None] = queue.Queue()
        self._cancels: dict[str, threading.Event] = {}
        self._cancelled: set[str] = set()
        self.http = None  # engine.api.serve.HttpServer while the app's "Local server" switch is on
        self._api_model = None  # engine.api.jobs.ModelInfo of the loaded pair, for the API
        self._api_settings = GenerationSettings()

    # ------------------------------------------------------------------ io

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, ensure_ascii=False)
        with self._write_lock:
            self.out.write(line + "\n")
            self.out.flush()

    def send_error(self, req_id: str | None, exc: BaseException) -> None:
        if isinstance(exc, TandemError):
            message = str(exc)
        else:
            message = f"internal error: {type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        self.send({**to_dict(ErrorEvent(message, type(exc).__name__)), "id": req_id})

    # ------------------------------------------------------------------ loop

    def serve(self, inp: TextIO) -> None:
        worker = threading.Thread(target=self._work, name="engine-worker", daemon=True)
        worker.start()
        self.send({"type": "ready", "pid": os.getpid()})
        for line in inp:
            line = line.strip()
            if not line:
                continue
            try:
                req = json.loads(line)
                op = req["op"]
            except (ValueError, KeyError, TypeError):
                self.send({"type": "error", "id": None, "message": f"bad request: {line[:200]}", "kind": "protocol"})
                continue
            if op == "cancel":
                self._cancel(req.get("id"))
            elif op == "ping":
                self.send({"type": "pong", "id": req.get("id")})
            elif op == "shutdown":
                break
            elif op in ("serve", "serve_settings", "unserve"):
                self._http_op(op, req)
            else:
                if op == "generate":
                    self._cancels[req.get("id")] = threading.Event()
                self._jobs.put(req)
        self._stop_http()
        self._jobs.put(None)
        for event in self._cancels.values():
            event.set()
        worker.join(timeout=30)

    def _cancel(self, req_id: str | None) -> None:
        event = self._cancels.get(req_id)
        if event is not None:
            event.set()
        self._cancelled.add(req_id)

    def _work(self) -> None:
        while True:
            req = self._jobs.get()
            if req is None:
                break
            req_id = req.get("id")
            try:
                faults.point(str(req["op"]))  # inert unless TANDEM_FAULT is set (engine/faults.py)
                handler = getattr(self, f"_op_{req['op']}", None)
                if handler is None:
                    raise TandemError(f"unknown request {req['op']!r}")
                handler(req)
            except Cancelled:
                pass
            except BaseException as exc:  # report everything; the process must keep serving
                self.send_error(req_id, exc)
            finally:
                self._cancels.pop(req_id, None)
        if self.engine is not None:
            self.engine.knowledge.save()

    # ------------------------------------------------------------------ ops

    def _op_load(self, req: dict) -> None:
        from engine.runtime.session import Engine

        load = LoadSettings.from_dict(req["load"])
        self.send({"type": "loading", "id": req.get("id"), "message": "loading models"})
        self._api_model = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        engine = Engine(load, require_compatible_draft=False)
        self.engine = engine
        self.send({"type": "loading", "id": req.get("id"), "message": "measuring this machine's decode speed"})
        cost = engine.cost_model()
        baseline = engine.baseline_tps()
        from engine.runtime.api_jobs import model_info

        self._api_model = model_info(engine)
        self.send({
            "type": "loaded",
            "id": req.get("id"),
            "target": describe(engine.target_model),
            "draft": describe(engine.draft_model) if engine.draft_model is not None else None,
            "draft_problem": engine.draft_problem,
            "remote": engine.remote.describe() if engine.remote is not None else None,
            "notices": engine.notices,
            "n_ctx": engine.target.n_ctx,
            "threads": engine.threads,
            "baseline_tps": baseline,
            "cost": {"target": cost.target.to_dict(), "draft": cost.draft.to_dict() if cost.draft else None},
        })

    def _op_measure(self, req: dict) -> None:
        engine = self._engine()
        before = engine.baseline_tps()
        cost = engine.cost_model(remeasure=True)
        baseline = engine.baseline_tps(remeasure=True)
        # what the user asked for, reported back: the new figure, the old one, and whether
        # the machine let the measurement run at the speed its own cost curve allows
        self.send({"type": "measured", "id": req.get("id"), "baseline_tps": baseline,
                   "previous_baseline_tps": before, "decode_ms": 1000 * cost.target(1),
                   "plausible": engine._plausible_baseline(baseline),
                   "cost": {"target": cost.target.to_dict(), "draft": cost.draft.to_dict() if cost.draft else None}})

    def _op_forget_warm(self, _req: dict) -> None:
        if self.engine is not None:
            self.engine.forget_warm()

    def _op_forget_history(self, req: dict) -> None:
        """Settings → "Forget speculation history": works with or without a model loaded."""
        if self.engine is not None:
            files = self.engine.forget_history()
        else:
            from engine.drafters.history import forget_all
            from engine.models.paths import data_dir

            files = forget_all(data_dir())
        self.send({"type": "history_forgotten", "id": req.get("id"), "files": files})

    def _op_generate(self, req: dict) -> None:
        req_id = req.get("id")
        engine = self._engine()
        cancel = self._cancels.get(req_id) or threading.Event()
        if req_id in self._cancelled:
            cancel.set()
        settings = GenerationSettings.from_dict(req.get("settings") or {})

        def forward(event: object) -> None:
            self.send({**to_dict(event), "id": req_id})

        engine.reply(req["messages"], settings, cancel=cancel, on_event=forward,
                     record_margins=bool(req.get("record_margins")))

    def _op_api(self, req: dict) -> None:
        from engine.runtime.api_jobs import run_job

        run_job(self.engine, req["job"])  # answers the HTTP client, whatever happens

    # ------------------------------------------------------------------ local server

    def _http_op(self, op: str, req: dict) -> None:
        """The app's "Local server" switch.  Runs on the reader thread: starting and
        stopping the HTTP thread never waits for the engine."""
        req_id = req.get("id")
        try:
            if "settings" in req:
                self._api_settings = GenerationSettings.from_dict(req.get("settings") or {})
            if op == "serve":
                self._start_http(str(req.get("host") or "127.0.0.1"), int(req.get("port", 8080)),
                                 req.get("api_key") or None)
                self.send({"type": "serving", "id": req_id, "url": self.http.url, "warning": self.http.warning()})
            elif op == "unserve":
                self._stop_http()
                self.send({"type": "unserved", "id": req_id})
        except BaseException as exc:  # a port in use, the web stack missing: told, never fatal
            self.send_error(req_id, exc)

    def _start_http(self, host: str, port: int, api_key: str | None) -> None:
        from engine.api.jobs import Backend
        from engine.api.serve import HttpServer

        self._stop_http()
        backend = Backend(submit=lambda job: self._jobs.put({"op": "api", "id": None, "job": job}),
                          model=lambda: self._api_model, defaults=lambda: self._api_settings)
        server = HttpServer(backend, host, port, api_key)
        server.start()
        self.http = server

    def _stop_http(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None

    def _engine(self):
        if self.engine is None:
            raise TandemError("no model loaded")
        return self.engine


def describe(model: Any) -> dict:
    return {
        "path": str(model.path),
        "name": model.path.name,
        "description": model.description,
        "n_vocab": model.n_vocab,
        "n_layer": model.n_layer,
        "size_bytes": model.size_bytes,
        "n_gpu_layers": model.n_gpu_layers,
    }


def main() -> int:
    # Keep the protocol stream clean: anything native code prints to fd 1 goes to
    # stderr instead.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    # the local server's warnings and failures go to stderr, which the window keeps for its crash details
    logging.basicConfig(level=logging.WARNING, format="[tandem api] %(message)s", stream=sys.stderr)
    Server(protocol).serve(sys.stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
