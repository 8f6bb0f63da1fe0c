"""A stand-in engine process that plays a scripted reply at a set pace, for tests of what
the window shows while it waits and what speed figures it draws (tests/app/test_honest_speed.py).

Speaks engine/runtime/server.py's protocol.  The JSON file named by PACED_ENGINE_SCRIPT says:
    startup_tps      the "measured at load" figure the loaded event carries
    prompt_tokens    tokens to "read" before the first token, in 256-token chunks ...
    chunk_s          ... each taking this long (a cancel between chunks ends the reply, "cancelled")
    steps            [[mode, tested, accepted, seconds], ...]: one target pass each; mode
                     "plain" passes test nothing; statistics are the engine's own ReplyStats
    cpu_share        what the live plain estimate is told the engine's CPU share was
    measured         the "measured" event's fields for a measure request
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.decoding.events import DoneEvent, ProgressEvent, StepEvent, TextEvent, to_dict
from engine.decoding.stats import ReplyStats, StepStats

CHUNK = 256


def write(message: dict) -> None:
    sys.stdout.write(json.dumps(message, ensure_ascii=False) + "\n")
    sys.stdout.flush()


_buffer = bytearray()


def read_line(block: bool) -> bytes | None:
    """The next request line; None when none is waiting (block=False); b"" at EOF.
    Raw reads on fd 0, so no line hides in a buffer from select()."""
    while b"\n" not in _buffer:
        if not block and not select.select([0], [], [], 0)[0]:
            return None
        chunk = os.read(0, 65536)
        if not chunk:
            return b""
        _buffer.extend(chunk)
    n = _buffer.index(b"\n") + 1
    line = bytes(_buffer[:n])
    del _buffer[:n]
    return line


def cancelled(req_id: str) -> bool:
    """A cancel for `req_id` has arrived (the real server reads it on another thread)."""
    while True:
        line = read_line(block=False)
        if line is None:
            return False
        if not line:
            return True
        req = json.loads(line)
        if req.get("op") == "cancel" and req.get("id") == req_id:
            return True


def generate(script: dict, req_id: str) -> None:
    total = int(script.get("prompt_tokens", 0))
    for done in range(CHUNK, total + CHUNK, CHUNK):
        if cancelled(req_id):  # as the real engine: a reply with nothing in it
            write({**to_dict(DoneEvent("cancelled", "", ReplyStats().snapshot())), "id": req_id})
            return
        time.sleep(float(script.get("chunk_s", 0)))
        write({**to_dict(ProgressEvent("prompt", min(done, total), total)), "id": req_id})
    stats = ReplyStats(baseline_tps=script.get("startup_tps"))
    share = script.get("cpu_share")
    stats.plain.cpu_share = lambda: share
    text = []
    for i, (mode, tested, accepted, seconds) in enumerate(script["steps"]):
        counts = {"ngram": tested} if tested else {}
        step = StepStats(i, mode, dict(counts), dict(counts), {"ngram": accepted} if tested else {}, accepted + 1,
                         [], [], 0.0, seconds * 0.97, seconds * 0.03)
        stats.add(step, ["ngram"] * accepted + ["target"])
        piece = "x" * (accepted + 1)
        text.append(piece)
        write({**to_dict(TextEvent([(piece, "target")])), "id": req_id})
        write({**to_dict(StepEvent(step.to_dict(), stats.snapshot(per_step=False))), "id": req_id})
    write({**to_dict(DoneEvent("length", "".join(text), stats.snapshot())), "id": req_id})


def main() -> int:
    script = json.loads(Path(os.environ["PACED_ENGINE_SCRIPT"]).read_text(encoding="utf-8"))
    write({"type": "ready", "pid": os.getpid()})
    while True:
        line = read_line(block=True)
        if not line:
            break
        req = json.loads(line)
        op, req_id = req.get("op"), req.get("id")
        if op == "load":
            write({"type": "loaded", "id": req_id, "target": {"name": "paced.gguf", "path": "paced.gguf"},
                   "draft": None, "draft_problem": None, "notices": [], "n_ctx": 4096, "threads": 1,
                   "baseline_tps": script.get("startup_tps"), "cost": {"target": None, "draft": None}})
        elif op == "generate":
            generate(script, req_id)
        elif op == "measure":
            write({"type": "measured", "id": req_id, **script.get("measured", {})})
        elif op == "shutdown":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
