"""One API request on its way through the engine's queue, and what the HTTP side
needs from whoever owns the engine.

The HTTP side runs on an asyncio loop; the engine runs on its own worker thread.
They meet only here: the worker calls `Job.started/on_event/fail`, which hand plain
items to `Job.sink` (the HTTP side makes it a thread-safe put into an asyncio queue),
and the HTTP side sets `Job.cancel` when the client goes away, which the generation
loop checks before every step.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.decoding.events import DoneEvent, Event, TextEvent
from engine.settings import GenerationSettings

_ids = itertools.count(1)


@dataclass(frozen=True)
class ModelInfo:
    """The loaded model as the API names it."""

    id: str  # the target's file name without .gguf
    n_ctx: int
    created: int  # unix time the model was loaded
    draft: str | None = None  # the draft's id, for /v1/models and /health

    # "tandem" always names whatever model is loaded, so a client configured once keeps
    # working when the user switches models in the app
    ALIAS = "tandem"

    def names(self) -> tuple[str, ...]:
        return (self.id, self.ALIAS)


@dataclass(eq=False)  # each job is itself (kept in sets of running jobs)
class Job:
    """A chat (`messages`) or a plain completion (`prompt`) with its settings."""

    settings: GenerationSettings
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    # receives ("start", prompt_tokens), ("text", str), ("done", DoneEvent), ("error", exception)
    sink: Callable[[str, Any], None] = lambda _kind, _value: None
    number: int = field(default_factory=lambda: next(_ids))
    # set by the engine thread when the job is over: how it ended (the engine's reason,
    # "cancelled" included, or "error") and how many tokens it generated
    ended: threading.Event = field(default_factory=threading.Event)
    reason: str | None = None
    tokens: int = 0

    def started(self, prompt_tokens: int) -> None:
        self.sink("start", prompt_tokens)

    def on_event(self, event: Event) -> None:
        if isinstance(event, TextEvent):
            self.sink("text", "".join(text for text, _source in event.pieces))
        elif isinstance(event, DoneEvent):
            self.sink("done", event)

    def fail(self, exc: BaseException) -> None:
        self.sink("error", exc)


@dataclass
class Backend:
    """The engine's owner, as the HTTP side sees it.

    submit    queue a job for the engine thread; jobs run one at a time, in order
    model     the loaded model, or None while none is (the API then answers 503)
    defaults  generation settings for what a request leaves out: the app's settings
              or `tandem serve`'s flags (pair, speculation mode, sampling)
    """

    submit: Callable[[Job], None]
    model: Callable[[], ModelInfo | None]
    defaults: Callable[[], GenerationSettings]
