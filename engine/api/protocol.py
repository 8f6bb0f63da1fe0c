"""OpenAI's wire format: validating requests, error objects, response bodies.

Pure functions on plain data (no HTTP, no engine), so every rule here is tested
without a server.  Requests are checked by hand rather than by a schema library:
each bad input must get OpenAI's error object with the right status and a message
that says what to change, and the limits (the context size, the loaded model's
names) are only known at run time.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from engine.api.jobs import ModelInfo
from engine.errors import Cancelled, ContextOverflowError, EngineError, IncompatiblePairError, TandemError
from engine.settings import GenerationSettings

MAX_STOPS = 4  # as OpenAI
MAX_STOP_CHARS = 200
MAX_TEMPERATURE = 2.0  # as OpenAI
MAX_SEED = 2**63 - 1
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}

# Fields a request may carry.  Those not in SAMPLING are accepted only with the one
# value that means "nothing special" (NEUTRAL), so a client never silently gets
# something other than what it asked for.
COMMON = {"model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop",
          "n", "user", "presence_penalty", "frequency_penalty", "logprobs", "logit_bias"}
CHAT_FIELDS = COMMON | {"messages", "max_completion_tokens", "top_logprobs", "parallel_tool_calls", "tools",
                        "tool_choice", "response_format"}
COMPLETION_FIELDS = COMMON | {"prompt", "echo", "suffix", "best_of"}
NEUTRAL: dict[str, tuple[Any, ...] | None] = {
    "n": (1,), "best_of": (1,), "presence_penalty": (0, 0.0), "frequency_penalty": (0, 0.0),
    "logprobs": (False, None), "top_logprobs": (None, 0), "logit_bias": (None, {}), "echo": (False,),
    "suffix": (None, ""), "tools": (None, []), "tool_choice": (None, "none"), "parallel_tool_calls": (None,),
    "response_format": (None, {"type": "text"}), "user": None,  # None: any value, ignored
}


class ApiError(Exception):
    """An answer in OpenAI's error format: {"error": {message, type, param, code}}."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def error_from_exception(exc: BaseException) -> ApiError:
    """What a failure inside the engine means to the client.  Unexpected exceptions
    become a 500 naming only the exception's type; the server log has the rest."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, str(exc), param="messages", code="context_length_exceeded")
    if isinstance(exc, Cancelled):
        return ApiError(503, "the request was cancelled: the server is stopping or the model is being replaced",
                        type="server_error", code="cancelled")
    if isinstance(exc, EngineError | IncompatiblePairError):
        return ApiError(500, f"the engine failed: {exc}", type="server_error")
    if isinstance(exc, TandemError):  # e.g. the model's chat template refuses this conversation
        return ApiError(400, str(exc))
    return ApiError(500, f"internal error ({type(exc).__name__}); the server log has the details",
                    type="server_error")


# ---------------------------------------------------------------------- requests


@dataclass
class Request:
    """A validated chat or completion request."""

    model: str
    settings: GenerationSettings
    stream: bool
    include_usage: bool
    stop: list[str]
    messages: list[dict[str, str]] | None = None  # chat
    prompt: str | None = None  # completion


def parse_chat(body: Any, model: ModelInfo, defaults: GenerationSettings) -> Request:
    common = _parse_common(body, CHAT_FIELDS, model, defaults, max_tokens_field="max_completion_tokens")
    if "messages" not in body:
        raise bad("'messages' is required: a list of {role, content} objects", "messages", "missing_required_parameter")
    common.messages = parse_messages(body["messages"])
    return common


def parse_completion(body: Any, model: ModelInfo, defaults: GenerationSettings) -> Request:
    common = _parse_common(body, COMPLETION_FIELDS, model, defaults)
    if "prompt" not in body:
        raise bad("'prompt' is required: the text to complete", "prompt", "missing_required_parameter")
    prompt = body["prompt"]
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad("'prompt' must be a string (lists of prompts and token ids are not supported)", "prompt")
    if not prompt:
        raise bad("'prompt' is empty", "prompt")
    common.prompt = prompt
    return common


def parse_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise bad("'messages' must be a non-empty list of {role, content} objects", "messages")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(f"{where} must be an object with 'role' and 'content'", where)
        extra = set(message) - {"role", "content", "name"}
        if extra:
            raise bad(f"{where}: unsupported field(s) {', '.join(sorted(extra))} (tool calls are not supported)",
                      where, "unsupported_parameter")
        role = message.get("role")
        if role not in ROLES:
            raise bad(f"{where}.role must be one of system, developer, user, assistant (not {role!r})",
                      f"{where}.role")
        out.append({"role": ROLES[role], "content": _content(message.get("content"), f"{where}.content")})
    return out


def _content(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad(f"{where}: only text parts are supported ({{'type': 'text', 'text': ...}})", where,
                          "unsupported_parameter")
            texts.append(part["text"])
        return "".join(texts)
    raise bad(f"{where} must be a string or a list of text parts", where)


def _parse_common(body: Any, allowed: set[str], model: ModelInfo, defaults: GenerationSettings,
                  max_tokens_field: str | None = None) -> Request:
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    for key in sorted(set(body) - allowed):
        raise bad(f"unsupported parameter {key!r}", key, "unsupported_parameter")
    for key, values in NEUTRAL.items():
        if key in body and values is not None and not _same(body[key], values):
            raise bad(f"{key}={body[key]!r} is not supported by this server", key, "unsupported_parameter")

    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise bad("'model' is required: use the id from GET /v1/models", "model", "missing_required_parameter")
    if name not in model.names():
        raise ApiError(404, f"the model {name!r} does not exist here; this server has "
                            f"{' and '.join(repr(n) for n in model.names())}", param="model", code="model_not_found")

    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad("'stream' must be true or false", "stream")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or set(options) - {"include_usage"}
                                or not isinstance(options.get("include_usage", False), bool)):
        raise bad("'stream_options' may only hold include_usage (true or false)", "stream_options")
    include_usage = bool(options and options.get("include_usage"))

    changes: dict[str, Any] = {}
    for field in filter(None, ("max_tokens", max_tokens_field)):
        if body.get(field) is not None:
            changes["max_tokens"] = _max_tokens(body[field], field, model.n_ctx)
    if body.get("temperature") is not None:
        changes["temperature"] = _number(body["temperature"], "temperature", 0.0, MAX_TEMPERATURE)
    if body.get("top_p") is not None:
        top_p = _number(body["top_p"], "top_p", 0.0, 1.0)
        if top_p <= 0:
            raise bad("'top_p' must be greater than 0 (use temperature 0 for greedy decoding)", "top_p")
        changes["top_p"] = top_p
    if body.get("top_k") is not None:
        changes["top_k"] = _integer(body["top_k"], "top_k", 0, 1 << 31)
    if body.get("seed") is not None:
        changes["seed"] = _integer(body["seed"], "seed", 0, MAX_SEED)
    settings = replace(defaults, spec=replace(defaults.spec), **changes)
    return Request(model=name, settings=settings, stream=stream, include_usage=include_usage,
                   stop=_stops(body.get("stop")))


def _same(value: Any, allowed: tuple[Any, ...]) -> bool:
    # bool is an int in Python: True must not pass for 1
    return any(type(value) is type(a) and value == a for a in allowed)


def _integer(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{name}' must be an integer", name)
    if not lo <= value <= hi:
        raise bad(f"'{name}' must be between {lo} and {hi}, not {value}", name)
    return value


def _max_tokens(value: Any, name: str, n_ctx: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{name}' must be a positive integer", name)
    if value < 1:
        raise bad(f"'{name}' must be at least 1, not {value}", name)
    if value > n_ctx:
        raise bad(f"'{name}' is {value} but the model's context holds only {n_ctx} tokens (prompt and reply)",
                  name)
    return value


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise bad(f"'{name}' must be a number", name)
    if not lo <= value <= hi:
        raise bad(f"'{name}' must be between {lo:g} and {hi:g}, not {value}", name)
    return float(value)


def _stops(stop: Any) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise bad("'stop' must be a non-empty string or a list of them", "stop")
    if len(stops) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stops):
        raise bad(f"'stop' takes at most {MAX_STOPS} strings of at most {MAX_STOP_CHARS} characters", "stop")
    return stops


# ---------------------------------------------------------------------- stop strings


class StopScanner:
    """Cuts streamed text at the first stop string.  Text that could be the start of
    a stop string is held back until the next piece decides it, so a client never
    sees part of a stop string."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.held = ""
        self.hit = False

    def push(self, text: str) -> str:
        """The part of `text` (with what was held) that is safe to send now."""
        if self.hit:
            return ""
        buf = self.held + text
        found = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if found:
            self.hit = True
            self.held = ""
            return buf[:min(found)]
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), keep, -1):
                if buf.endswith(s[:k]):
                    keep = k
                    break
        self.held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep]

    def flush(self) -> str:
        """At the end of the reply: what was held back was not a stop string."""
        out, self.held = ("" if self.hit else self.held), ""
        return out


# ---------------------------------------------------------------------- responses


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def finish_reason(engine_reason: str, stopped: bool) -> str:
    """The engine's "stop" (end of turn) and a stop string are "stop"; the token limit
    and a full context are "length"."""
    return "stop" if stopped or engine_reason == "stop" else "length"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def tandem_stats(mode: str, stats: dict[str, Any]) -> dict[str, Any]:
    """Speculation statistics of one reply, in an extra field standard clients ignore
    (names as DESIGN §4 and the app's statistics dock)."""
    return {
        "mode": mode,
        "modes": stats.get("modes", {}),  # what ran, step by step (auto picks per step)
        "tau": stats.get("tau"),
        "acceptance_rate": stats.get("acceptance_rate"),
        "drafted": stats.get("drafted", {}),
        "accepted": stats.get("accepted", {}),
        "tokens_per_s": stats.get("tokens_per_s"),
        "baseline_tps": stats.get("baseline_tps"),
        "speedup": stats.get("speedup"),
        "steps": stats.get("steps"),
        "prompt_tokens_cached": (stats.get("prompt_tokens") or 0) - (stats.get("prefill_tokens") or 0),
    }


def models_list(model: ModelInfo) -> dict[str, Any]:
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": model.created, "owned_by": "tandem",
         "context_length": model.n_ctx, "draft": model.draft}
        for name in model.names()
    ]}


def chat_response(rid: str, created: int, model: str, text: str, finish: str, use: dict, extra: dict) -> dict:
    return {
        "id": rid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                     "finish_reason": finish}],
        "usage": use, "tandem": extra,
    }


def chat_chunk(rid: str, created: int, model: str, delta: dict, finish: str | None = None) -> dict:
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def completion_response(rid: str, created: int, model: str, text: str, finish: str, use: dict, extra: dict) -> dict:
    return {
        "id": rid, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        "usage": use, "tandem": extra,
    }


def completion_chunk(rid: str, created: int, model: str, text: str, finish: str | None = None) -> dict:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}
