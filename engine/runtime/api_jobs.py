"""API requests (engine/api) answered by an Engine, on the one thread that drives it.

`tandem serve` runs a JobWorker; the app's engine process (server.py) puts jobs on
its own worker queue instead, between the window's requests.  Either way one thread
owns the Engine and requests are answered one at a time, in the order they came.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

from engine.api.jobs import Job, ModelInfo
from engine.api.protocol import ApiError
from engine.errors import Cancelled, ContextOverflowError, TandemError
from engine.runtime.session import Engine

log = logging.getLogger("tandem.api")


def model_info(engine: Engine) -> ModelInfo:
    draft = Path(engine.load_settings.draft).stem if engine.draft is not None and engine.load_settings.draft else None
    return ModelInfo(id=Path(engine.load_settings.target).stem, n_ctx=engine.target.n_ctx,
                     created=int(time.time()), draft=draft)


def prompt_tokens(engine: Engine, job: Job) -> list[int]:
    """The prompt as `tandem generate` makes it: the model's chat template (sandboxed)
    for messages, the text as is for a completion (as `generate --raw`).  Unlike the
    app, nothing is dropped to make room: a client that sends too much is told so."""
    if job.messages is not None:
        tokens = engine.chat_tokens(job.messages)
        what = "the messages are"
    else:
        tokens = engine.target_model.tokenize(job.prompt or "", add_special=True, parse_special=False)
        what = "the prompt is"
    n_ctx = engine.target.n_ctx
    if not tokens:
        raise TandemError("the prompt is empty")
    if len(tokens) >= n_ctx:
        raise ContextOverflowError(f"{what} {len(tokens)} tokens but the model's context holds {n_ctx} "
                                   "(prompt and reply together); send less")
    return tokens


def run_job(engine: Engine | None, job: Job) -> None:
    """Answer one job; everything that goes wrong goes to the job, never up."""
    job.reason = "error"
    try:
        if job.cancel.is_set():
            raise Cancelled("cancelled before it started")
        if engine is None:  # the window's models failed to load while this request waited
            raise ApiError(503, "no model is loaded", type="server_error", code="model_not_loaded")
        tokens = prompt_tokens(engine, job)
        job.started(len(tokens))
        reply = engine.generate_tokens(tokens, job.settings, cancel=job.cancel, on_event=job.on_event)
        job.reason, job.tokens = reply.reason, len(reply.tokens)
    except BaseException as exc:
        if not isinstance(exc, TandemError | ApiError):
            log.exception("request %d failed", job.number)
        job.fail(exc)
    finally:
        job.ended.set()


class JobWorker:
    """The thread that owns the Engine in `tandem serve`: jobs in, one at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="engine-worker", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            run_job(self.engine, job)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish (cancelled jobs end at their next step) and stop the thread."""
        self._jobs.put(None)
        self._thread.join(timeout)
