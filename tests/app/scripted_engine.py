"""A stand-in engine process that answers every question with a scripted text, for tests
of what the window does with hostile model output (tests/app/test_reliability_text.py).

It speaks engine/runtime/server.py's protocol (ready, loading/loaded, text/step/done) and streams
the text of the JSON file named by SCRIPTED_ENGINE_TEXT in random pieces.  Every line is
written a few bytes at a time with pauses, as raw UTF-8 (like the real server), so the
window's reads end in the middle of multi-byte characters and of JSON lines.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.decoding.events import DoneEvent, TextEvent, to_dict
from engine.decoding.stats import ReplyStats


def write(message: dict, rng: random.Random) -> None:
    data = (json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8")
    out = sys.stdout.buffer
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 7)  # a multi-byte character often straddles two writes
        out.write(data[pos:pos + n])
        out.flush()
        pos += n
        if rng.random() < 0.2:
            time.sleep(0.002)  # let the reader see the partial line


def main() -> int:
    script = json.loads(Path(os.environ["SCRIPTED_ENGINE_TEXT"]).read_text(encoding="utf-8"))
    text: str = script["text"]
    rng = random.Random(script.get("seed", 0))
    write({"type": "ready", "pid": os.getpid()}, rng)
    for line in sys.stdin:
        req = json.loads(line)
        op, req_id = req.get("op"), req.get("id")
        if op == "load":
            write({"type": "loading", "id": req_id, "message": "loading models"}, rng)
            write({"type": "loaded", "id": req_id, "target": {"name": "scripted.gguf", "path": "scripted.gguf"},
                   "draft": None, "draft_problem": None, "notices": [], "n_ctx": 4096, "threads": 1,
                   "baseline_tps": 50.0, "cost": {"target": None, "draft": None}}, rng)
        elif op == "generate":
            pos = 0
            while pos < len(text):  # pieces of 1-12 characters, cut anywhere
                n = rng.randint(1, 12)
                write({**to_dict(TextEvent([(text[pos:pos + n], "target")])), "id": req_id}, rng)
                pos += n
            stats = ReplyStats()
            write({**to_dict(DoneEvent("stop", text, stats.snapshot())), "id": req_id}, rng)
        elif op == "shutdown":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
