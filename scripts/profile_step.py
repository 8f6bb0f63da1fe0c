#!/usr/bin/env python3
"""Where a generation step spends its time outside llama_decode.

    scripts/profile_step.py --spec off --max-tokens 128
    scripts/profile_step.py --spec tree --budget 16 --profile 25

Loads the pair (default: the default pair; --target/--draft as in `tandem generate`),
runs one warm-up reply and then measured replies of a fixed prompt, and prints the
engine's own work per target pass: generation time (as `tandem bench` counts it)
minus the time inside every llama_decode (both models), divided by the steps.  --profile N adds cProfile's top N
functions by own time, llama_decode excluded from nothing (it shows as
`llama_decode`), so the rest of the list is the engine.  Load the real models only
under the shared lock (`flock /tmp/tandem-heavy.lock`).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.bench.engine_arm import DecodeTimer
from engine.cli.common import add_generation_args, add_model_args, generation_settings, open_engine
from engine.llama.chat_template import ChatTemplate

PROMPT = ("Here is a function:\n\ndef mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n"
          "    return total / len(xs)\n\nRewrite it with type hints and a docstring, and make it raise "
          "ValueError on an empty list. Repeat the whole function.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(ap)
    add_generation_args(ap)
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="print cProfile's top N functions")
    ap.add_argument("--replies", type=int, default=2, help="measured replies (after one warm-up)")
    args = ap.parse_args()
    settings = generation_settings(args)
    engine = open_engine(args, settings)
    template = ChatTemplate(engine.target_model.chat_template)
    tokens = engine.target_model.tokenize(template.render([{"role": "user", "content": PROMPT}]))
    timer = DecodeTimer(engine.target.ctx, engine.draft.ctx if engine.draft is not None else None)
    engine.generate_tokens(tokens, settings)  # warm-up: caches, cost curves, first allocations
    prof = cProfile.Profile() if args.profile else None
    steps = n_tokens = 0
    wall = decode = 0.0
    for _ in range(args.replies):
        engine.target.truncate(0)
        if engine.draft is not None:
            engine.draft.truncate(0)
        engine.target.decode(tokens[:-1])  # prompt processing is not a step
        if engine.draft is not None and settings.spec.uses_draft_model:
            engine.draft.decode(tokens[:-1])
        timer.reset()
        if prof:
            prof.enable()
        reply = engine.generate_tokens(tokens, settings)
        # the reply's own generation time, as `tandem bench` counts it: not the prefill,
        # not the learning that runs between replies (PairKnowledge.end_of_reply)
        wall += reply.stats.t_generate
        if prof:
            prof.disable()
        decode += timer.seconds
        steps += reply.stats.steps
        n_tokens += reply.stats.tokens
    print(f"spec {settings.spec.mode} budget {settings.spec.budget}: {n_tokens} tokens in {steps} steps, "
          f"{1e3 * wall / steps:.2f} ms/step, inside llama_decode {1e3 * decode / steps:.2f} ms/step, "
          f"engine's own work {1e3 * (wall - decode) / steps:.3f} ms/step; modes {dict(reply.stats.modes)}")
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.profile)
        print(out.getvalue())
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
