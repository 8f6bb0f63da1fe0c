"""What the engine reports while it works.

The same events go to an in-process callback (CLI, tests) and, as JSON lines,
from the engine process to the GUI (engine/runtime/server.py).  `to_dict` /
`event_from_dict` are the wire format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TextEvent:
    """New reply text, split by provenance: [(text, source), ...] where source is
    "target" (the target's own token), "draft" or "ngram" (accepted candidates)."""

    pieces: list[tuple[str, str]]
    type: str = "text"


@dataclass
class StepEvent:
    step: dict  # StepStats.to_dict()
    reply: dict  # ReplyStats.snapshot() after this step
    type: str = "step"


@dataclass
class ProgressEvent:
    """Work before the first token: stage "prompt" = `done` of `total` prompt tokens are
    in the target's cache (a cached prefix counts as done)."""

    stage: str
    done: int
    total: int
    type: str = "progress"


@dataclass
class NoticeEvent:
    message: str
    type: str = "notice"


@dataclass
class DoneEvent:
    reason: str  # "stop" (end of turn), "length", "cancelled", "context" (context full)
    text: str
    stats: dict
    tokens: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)  # only when asked for (tests)
    type: str = "done"


@dataclass
class ErrorEvent:
    message: str
    kind: str = "error"  # class name of the error
    type: str = "error"


EVENT_TYPES = {cls.type: cls for cls in (TextEvent, StepEvent, ProgressEvent, NoticeEvent, DoneEvent, ErrorEvent)}

Event = TextEvent | StepEvent | ProgressEvent | NoticeEvent | DoneEvent | ErrorEvent


def to_dict(event: Event) -> dict:
    return asdict(event)


def event_from_dict(data: dict) -> Event:
    cls = EVENT_TYPES[data["type"]]
    kwargs = {k: v for k, v in data.items() if k != "type"}
    if cls is TextEvent:
        kwargs["pieces"] = [tuple(p) for p in kwargs["pieces"]]
    return cls(**kwargs)
