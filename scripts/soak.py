#!/usr/bin/env python3
"""Soak test: many consecutive replies in one engine process (issue 6, item 6).

Drives `python -m engine.runtime.server` exactly as the GUI does, cycling through every
speculation mode and several sampling settings, and watches the engine process:
resident memory, open file descriptors and threads.  Every greedy reply is
compared with the plain-decoding reply to the same prompt (the near-tie rule of
tests/engine/decoding/test_greedy_equivalence.py).

    .venv/bin/python scripts/soak.py --replies 300          # the full run (README figures)
    .venv/bin/python scripts/soak.py --replies 40 --json out.json

Exit status 1 when memory grew more than 10% after warm-up, descriptors or threads
leaked, or a greedy reply differed from plain decoding beyond a near-tie.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ["off", "chain", "tree", "c2t", "ngram", "staged", "auto"]
SAMPLING = [{"temperature": 0.0}, {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "seed": 1},
            {"temperature": 1.2, "top_k": 0, "top_p": 1.0, "seed": 2}]
PROMPTS = [
    "Write a Python function that reverses a linked list.",
    "Summarize in one sentence: The meeting moved from Tuesday to Thursday because the room was booked.",
    "Translate into Spanish: The library opens at nine and closes at six.",
    "What is 17 times 23? Answer with the number.",
    "Name three uses of a hash map.",
]
NEAR_TIE = 1.0
WARMUP = 10


def proc_stats(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


class EngineProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "engine.runtime.server"], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.expect("ready")

    def send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def expect(self, kind: str, req_id: str | None = None) -> dict:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"engine process exited ({self.proc.poll()}) while waiting for {kind}")
            event = json.loads(line)
            if event["type"] == "error" and (req_id is None or event.get("id") == req_id):
                raise RuntimeError(f"engine error: {event['message']}")
            if event["type"] == kind and (req_id is None or event.get("id") == req_id):
                return event

    def close(self) -> None:
        self.send({"op": "shutdown"})
        self.proc.wait(timeout=60)


def compare(plain: dict, other: dict) -> str:
    for i, (a, b) in enumerate(zip(plain["tokens"], other["tokens"], strict=False)):
        if a != b:
            margin = plain["margins"][i]
            return f"near-tie at {i} ({margin:.3f})" if margin <= NEAR_TIE else f"MISMATCH at {i} (margin {margin:.3f})"
    return "identical" if len(plain["tokens"]) == len(other["tokens"]) else "MISMATCH (length)"


def run(replies: int, max_tokens: int, target: str, draft: str) -> dict:
    engine = EngineProcess()
    engine.send({"op": "load", "id": "load", "load": {"target": target, "draft": draft, "n_ctx": 2048}})
    engine.expect("loaded", "load")
    samples, verdicts, plain = [], {}, {}
    combos = itertools.cycle(itertools.product(MODES, SAMPLING))
    started = time.time()
    for n in range(replies):
        mode, sampling = next(combos)
        prompt = PROMPTS[n % len(PROMPTS)]
        settings = {"max_tokens": max_tokens, "spec": {"mode": mode}, **sampling}
        req = f"r{n}"
        engine.send({"op": "generate", "id": req, "messages": [{"role": "user", "content": prompt}],
                     "settings": settings, "record_margins": True})
        done = engine.expect("done", req)
        if sampling["temperature"] == 0.0:
            if mode == "off" and prompt not in plain:
                plain[prompt] = done
            elif prompt in plain:
                verdicts.setdefault(compare(plain[prompt], done).split(" ")[0], []).append(f"{req}:{mode}")
        samples.append({"reply": n, **proc_stats(engine.proc.pid)})
    engine.close()
    after = samples[min(WARMUP, len(samples) - 1)]
    last = samples[-1]
    growth = (last["rss_kb"] - after["rss_kb"]) / after["rss_kb"]
    return {
        "replies": replies,
        "seconds": round(time.time() - started, 1),
        "rss_mb_first": round(samples[0]["rss_kb"] / 1024, 1),
        "rss_mb_after_warmup": round(after["rss_kb"] / 1024, 1),
        "rss_mb_last": round(last["rss_kb"] / 1024, 1),
        "rss_mb_max": round(max(s["rss_kb"] for s in samples) / 1024, 1),
        "rss_growth_after_warmup": round(growth, 4),
        "fds": [after["fds"], last["fds"]],
        "threads": [after["threads"], last["threads"]],
        "greedy_verdicts": {k: len(v) for k, v in verdicts.items()},
        "mismatches": verdicts.get("MISMATCH", []),
        "ok": growth <= 0.10 and last["fds"] <= after["fds"] and last["threads"] <= after["threads"]
        and not verdicts.get("MISMATCH"),
    }


def main() -> int:
    from engine.models import catalog, provision
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replies", type=int, default=300)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    pair = catalog.default_pair()
    target, draft = provision.local_path(pair.target), provision.local_path(pair.draft)
    if target is None or draft is None:
        print("soak: the default pair is not provisioned (tandem models pull --default-pair)", file=sys.stderr)
        return 2
    result = run(args.replies, args.max_tokens, str(target), str(draft))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
