"""The HTTP application: OpenAI's endpoints on Starlette.

    GET  /v1/models            the loaded model (and the alias "tandem")
    POST /v1/chat/completions  messages -> reply (stream: server-sent events, then `data: [DONE]`)
    POST /v1/completions       prompt -> continuation, no chat template
    GET  /health               {"status": "ok"} once a model is loaded, else 503

Every request passes the guard first: the Host header must name this machine when
the server listens on loopback (a web page cannot reach it through DNS rebinding),
and with an API key `Authorization: Bearer KEY` must match.  POST bodies must be JSON
sent as application/json, which a web page cannot send to another origin without a
CORS preflight this server never grants.  Whatever goes wrong, the client gets an
OpenAI error object and the server keeps serving; tracebacks go to the log only.

A request is a Job queued for the engine thread (jobs.py); the reply streams back
through an asyncio queue.  When the client disconnects, the Job's cancel event is
set and the generation loop stops at its next step (Starlette cancels a streaming
response whose client has gone; a waiting non-streaming request polls for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.api import protocol
from engine.api.jobs import Backend, Job, ModelInfo
from engine.api.protocol import ApiError

log = logging.getLogger("tandem.api")

MAX_BODY_BYTES = 8 << 20  # far more text than any context holds
POLL_S = 0.25  # how often a request still waiting for the engine checks that its client is there
LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


def error_response(err: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


class ClientGone(Exception):
    pass


class Guard:
    """ASGI middleware: Host check (loopback only) and API key, before any route."""

    def __init__(self, app: ASGIApp, api_key: str | None, loopback: bool) -> None:
        self.app = app
        self.api_key = api_key
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            err = self.check(headers)
            if err is not None:
                await error_response(err)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def check(self, headers: dict[str, str]) -> ApiError | None:
        if self.loopback and not is_loopback_host(headers.get("host", "")):
            return ApiError(400, "this server only answers requests addressed to localhost / 127.0.0.1",
                            code="invalid_host")
        if self.api_key is not None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
                return ApiError(401, "a valid API key is required: send 'Authorization: Bearer <key>'",
                                code="invalid_api_key")
        return None


def is_loopback_host(host: str) -> bool:
    """True for Host headers naming this machine: localhost, 127.x.y.z, [::1], with any port."""
    name = host.strip()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Pipe:
    """Items from the engine thread, delivered on the event loop."""

    def __init__(self, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def sink(kind: str, value: Any) -> None:
            # a closed loop means the server has stopped: nobody is listening any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))

        job.sink = sink

    async def get(self, request: Request | None = None) -> tuple[str, Any]:
        """The next item; with `request`, raise ClientGone if its client disconnects meanwhile."""
        if request is None:
            return await self.queue.get()
        while True:
            try:
                return await asyncio.wait_for(self.queue.get(), POLL_S)
            except TimeoutError:
                if await request.is_disconnected():
                    raise ClientGone from None


class Api:
    def __init__(self, backend: Backend, api_key: str | None = None, loopback: bool = True) -> None:
        self.backend = backend
        self.loopback = loopback
        self.running: set[Job] = set()  # submitted and not finished: cancelled when the server stops
        routes = [
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
        ]
        handlers = {HTTPException: self._http_error, ApiError: self._api_error, Exception: self._crash}
        self.app = Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]
        self.asgi: ASGIApp = Guard(self.app, api_key, loopback)

    def cancel_all(self) -> None:
        for job in list(self.running):
            job.cancel.set()

    # ---------------------------------------------------------------- errors

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            err = ApiError(404, f"no such endpoint: {request.method} {request.url.path}", code="unknown_url")
        elif exc.status_code == 405:
            err = ApiError(405, f"{request.method} is not allowed on {request.url.path}", code="method_not_allowed")
        else:
            err = ApiError(exc.status_code, str(exc.detail))
        return error_response(err)

    async def _api_error(self, _request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def _crash(self, request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(protocol.error_from_exception(exc))

    # ---------------------------------------------------------------- endpoints

    async def health(self, _request: Request) -> Response:
        model = self.backend.model()
        if model is None:
            return JSONResponse({"status": "loading", "model": None}, status_code=503)
        return JSONResponse({"status": "ok", "model": model.id, "draft": model.draft, "n_ctx": model.n_ctx})

    async def models(self, _request: Request) -> Response:
        return JSONResponse(protocol.models_list(self._model()))

    async def chat(self, request: Request) -> Response:
        body = await read_json(request)
        req = protocol.parse_chat(body, self._model(), self.backend.defaults())
        return await self._answer(request, Job(req.settings, messages=req.messages), req, chat=True)

    async def completions(self, request: Request) -> Response:
        body = await read_json(request)
        req = protocol.parse_completion(body, self._model(), self.backend.defaults())
        return await self._answer(request, Job(req.settings, prompt=req.prompt), req, chat=False)

    def _model(self) -> ModelInfo:
        model = self.backend.model()
        if model is None:
            raise ApiError(503, "no model is loaded yet; try again in a moment", type="server_error",
                           code="model_not_loaded")
        return model

    # ---------------------------------------------------------------- answering

    async def _answer(self, request: Request, job: Job, req: protocol.Request, *, chat: bool) -> Response:
        pipe = Pipe(job, asyncio.get_running_loop())
        self.running.add(job)
        self.backend.submit(job)
        handed_over = False  # to the streaming body, which then owns the job's end
        try:
            kind, value = await pipe.get(request)  # waits for its turn in the queue
            if kind == "error":
                return self._failed(job, value)
            prompt_tokens = int(value)
            if req.stream:
                handed_over = True
                return JobStream(self, job, self._events(job, pipe, req, prompt_tokens, chat))
            return await self._whole(request, job, pipe, req, prompt_tokens, chat)
        except ClientGone:
            log.info("request %d: client disconnected; cancelled", job.number)
            return Response(status_code=499)
        finally:
            if not handed_over:
                job.cancel.set()  # a no-op once the job has finished
                self.running.discard(job)

    def _failed(self, job: Job, exc: BaseException) -> Response:
        err = protocol.error_from_exception(exc)
        if err.status >= 500:
            log.error("request %d failed: %s", job.number, err.message,
                      exc_info=exc if not isinstance(exc, ApiError) else None)
        return error_response(err)

    async def _whole(self, request: Request, job: Job, pipe: Pipe, req: protocol.Request, prompt_tokens: int,
                     chat: bool) -> Response:
        scanner = protocol.StopScanner(req.stop)
        parts: list[str] = []
        while True:
            kind, value = await pipe.get(request)
            if kind == "text":
                parts.append(scanner.push(value))
                if scanner.hit:
                    job.cancel.set()  # the rest would be cut anyway: the engine stops at its next step
            elif kind == "error":
                return self._failed(job, value)
            elif kind == "done":
                parts.append(scanner.flush())
                break
        text = "".join(parts)
        finish = protocol.finish_reason(value.reason, scanner.hit)
        use = protocol.usage(prompt_tokens, len(value.tokens))
        extra = protocol.tandem_stats(req.settings.spec.mode, value.stats)
        self._log(job, value, finish)
        build = protocol.chat_response if chat else protocol.completion_response
        return JSONResponse(build(protocol.new_id("chatcmpl" if chat else "cmpl"), protocol.now(), req.model, text,
                                  finish, use, extra))

    async def _events(self, job: Job, pipe: Pipe, req: protocol.Request, prompt_tokens: int,
                      chat: bool) -> AsyncIterator[str]:
        rid, created, model = protocol.new_id("chatcmpl" if chat else "cmpl"), protocol.now(), req.model
        scanner = protocol.StopScanner(req.stop)

        def chunk(text: str, finish: str | None = None) -> dict:
            if chat:
                return protocol.chat_chunk(rid, created, model, {"content": text} if text or not finish else {},
                                           finish)
            return protocol.completion_chunk(rid, created, model, text, finish)

        finished = False
        try:  # JobStream cancels the job and forgets it however this ends
            if chat:
                yield sse(protocol.chat_chunk(rid, created, model, {"role": "assistant", "content": ""}))
            while True:
                kind, value = await pipe.get()
                if kind == "text":
                    text = scanner.push(value)
                    if text:
                        yield sse(chunk(text))
                    if scanner.hit:
                        job.cancel.set()
                elif kind == "error":
                    yield sse(protocol.error_from_exception(value).body())
                    break
                elif kind == "done":
                    tail = scanner.flush()
                    if tail:
                        yield sse(chunk(tail))
                    finish = protocol.finish_reason(value.reason, scanner.hit)
                    use = protocol.usage(prompt_tokens, len(value.tokens))
                    last = chunk("", finish)
                    last["usage"] = use
                    last["tandem"] = protocol.tandem_stats(req.settings.spec.mode, value.stats)
                    yield sse(last)
                    if req.include_usage:
                        yield sse({"id": rid, "object": last["object"], "created": created, "model": model,
                                   "choices": [], "usage": use})
                    self._log(job, value, finish)
                    break
            yield "data: [DONE]\n\n"
            finished = True
        finally:
            if not finished:  # Starlette cancelled this body: the client went away
                log.info("request %d: client disconnected mid-stream; cancelled", job.number)

    @staticmethod
    def _log(job: Job, done: Any, finish: str) -> None:
        stats = done.stats
        log.info("request %d: %d tokens, %s, %.1f tok/s, speed-up %s", job.number, len(done.tokens), finish,
                 stats.get("tokens_per_s") or 0.0,
                 f"{stats['speedup']:.2f}x" if stats.get("speedup") else "n/a")


class JobStream(StreamingResponse):
    """Server-sent events of one job.  However the response ends (finished, client
    gone before or during the stream, server stopping), the job is cancelled, which
    is a no-op once it has finished."""

    def __init__(self, api: Api, job: Job, events: AsyncIterator[str]) -> None:
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.api = api
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel.set()
            self.api.running.discard(self.job)


def sse(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def read_json(request: Request) -> Any:
    """The body as JSON, or the error that says what is wrong with it."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "send the request body as JSON with 'Content-Type: application/json'",
                       code="unsupported_media_type")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is larger than {MAX_BODY_BYTES >> 20} MiB", code="body_too_large")
    chunks, size = [], 0
    async for piece in request.stream():
        size += len(piece)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"the request body is larger than {MAX_BODY_BYTES >> 20} MiB", code="body_too_large")
        chunks.append(piece)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
