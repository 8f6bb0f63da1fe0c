#!/usr/bin/env python3
"""What the model-free candidate stage costs per step with a full speculation history.

    scripts/stage_cost.py                      # 5,000-reply history, default target's tokenizer
    scripts/stage_cost.py --docs 500 --steps 400

Builds an in-memory speculation history the size of the bound (`--docs` replies of
real text: this repository's sources and documents, tokenized by the target's own
tokenizer and mutated so that no two replies are the same), then walks a revision-like
reply (a pasted file asked back with changes: long copies broken by edits) and times
every step's `CandidateStage.candidates` — the conversation's suffix index, the history
index and Token Recycling — plus feeding the rate table the step's outcome, which is
the stage's share of a step's bookkeeping.  Prints the median and 95th percentile.
No decode runs: the figure is the engine's own work only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.cli.common import resolve_model  # noqa: E402
from engine.decoding.drafter import StepOutcome  # noqa: E402
from engine.decoding.tree import ROOT as TREE_ROOT  # noqa: E402
from engine.drafters.history import SpeculationHistory  # noqa: E402
from engine.drafters.learning import PairKnowledge  # noqa: E402
from engine.drafters.ngram_drafter import CandidateStage  # noqa: E402
from engine.llama.backend import LlamaModel  # noqa: E402


def corpus(model: LlamaModel) -> list[list[int]]:
    files = sorted([*ROOT.glob("engine/**/*.py"), *ROOT.glob("app/**/*.py"), ROOT / "README.md"])
    docs = []
    for f in files:
        toks = model.tokenize(f.read_text(encoding="utf-8", errors="replace"))
        docs += [toks[i : i + 600] for i in range(0, len(toks), 600) if len(toks[i : i + 600]) > 64]
    return docs


def mutate(doc: list[int], rng: np.random.Generator, vocab: int) -> list[int]:
    out = list(doc)
    for _ in range(max(1, len(out) // 40)):  # an edit every ~40 tokens
        out[int(rng.integers(len(out)))] = int(rng.integers(vocab))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=Path, help="GGUF whose tokenizer to use (default: the default pair's target)")
    ap.add_argument("--docs", type=int, default=5000, help="replies in the history (the bound is 5,000)")
    ap.add_argument("--steps", type=int, default=600, help="steps of the reply walked")
    args = ap.parse_args()
    target = args.target or resolve_model(None, "target")
    model = LlamaModel(target, vocab_only=True)
    rng = np.random.default_rng(0)
    base = corpus(model)
    history = SpeculationHistory(None)
    t0 = time.perf_counter()
    for i in range(args.docs):
        history.add(mutate(base[i % len(base)], rng, model.n_vocab))
    built = time.perf_counter() - t0
    print(f"history: {len(history)} replies, {history.n_tokens:,} tokens, "
          f"{history.index.nbytes() / 2**20:.0f} MiB of index, built in {built:.1f} s")

    stage = CandidateStage(PairKnowledge(None), history)
    knowledge = stage.knowledge
    pasted = base[len(base) // 2]
    prompt = [*base[len(base) // 3][:200], *pasted]
    reply = mutate(pasted * 3, rng, model.n_vocab)[: args.steps]
    stream = list(prompt)
    times = []
    pos = 0
    while pos < len(reply) - 1:
        start = time.perf_counter()
        tree = stage.candidates(stream)
        path, node = [], TREE_ROOT  # the candidates that spell what the reply says next
        while pos + len(path) < len(reply) - 1:
            nxt = tree.child_with_token(node, reply[pos + len(path)])
            if nxt is None:
                break
            path.append(nxt)
            node = nxt
        new = [*reply[pos : pos + len(path)], reply[pos + len(path)]]
        knowledge.observe(StepOutcome(tree, path, new[-1], None, stream + new, stream[-1]))
        times.append(time.perf_counter() - start)
        stream += new
        pos += len(new)
    ms = sorted(1e3 * t for t in times)
    print(f"candidate stage + learning per step over {len(ms)} steps: median {statistics.median(ms):.3f} ms, "
          f"95th percentile {ms[int(0.95 * len(ms))]:.3f} ms, max {ms[-1]:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
