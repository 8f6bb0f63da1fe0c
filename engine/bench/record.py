"""`tandem bench --record`: make a TraceSet from real runs of the loaded pair.

The target's reply is plain greedy decoding through the engine.  The draft then
reads prompt + reply in one pass (teacher forcing): one decode whose every row
is the draft's distribution for the next reply token given the target's text.
Only the top-k ids and probabilities per row are kept, never whole logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from engine.bench.costs import describe
from engine.bench.suites import BenchPrompt
from engine.bench.trace import PromptTrace, TraceSet
from engine.decoding.sampling import fast_top_k
from engine.errors import TandemError
from engine.settings import GenerationSettings, SpecSettings

CHUNK = 256  # rows per draft decode (the context's batch holds 512)


def record_prompt(engine, prompt: BenchPrompt, max_tokens: int, top_k: int) -> PromptTrace:
    tokens = engine.chat_tokens(prompt.messages)
    engine.target.truncate(0)
    engine.draft.truncate(0)
    settings = GenerationSettings(max_tokens=max_tokens, spec=SpecSettings(mode="off"))
    reply = engine.generate_tokens(tokens, settings, record_margins=True)
    engine.target.truncate(0)
    out = np.asarray(reply.tokens, dtype=np.int32)
    ids, probs, ent = teacher_forced_top_k(engine.draft, tokens, list(reply.tokens), top_k)
    return PromptTrace(prompt.id, prompt.category, np.asarray(tokens, dtype=np.int32), out,
                       np.asarray(reply.margins, dtype=np.float32), ids, probs, ent,
                       plain_tps=reply.stats.tokens_per_s)


def teacher_forced_top_k(draft, prompt: list[int], reply: list[int], k: int) -> tuple[np.ndarray, ...]:
    """Row j: the draft's top-k for reply[j] given prompt + reply[:j]."""
    draft.truncate(0)
    head = prompt[:-1]
    if head:
        draft.decode(head)
    n0 = len(head)
    seq = [prompt[-1], *reply[:-1]]
    ids = np.zeros((len(seq), k), dtype=np.int32)
    probs = np.zeros((len(seq), k), dtype=np.float32)
    ent = np.zeros(len(seq), dtype=np.float32)
    try:
        # Straight to the context: the model-level interface returns only the tip's row.
        for s in range(0, len(seq), CHUNK):
            part = seq[s : s + CHUNK]
            rows = draft.ctx.decode(part, list(range(n0 + s, n0 + s + len(part))), [[0]] * len(part),
                                    [True] * len(part))
            for j in range(len(part)):
                i, p, e = fast_top_k(rows[j], k)
                ids[s + j, : len(i)], probs[s + j, : len(p)], ent[s + j] = i, p, e
    finally:
        draft.ctx.seq_rm(0, n0, -1)  # back to what LlamaLM believes the cache holds
        draft.truncate(0)
    return ids, probs, ent


def record(
    engine, prompts: Sequence[BenchPrompt], *, max_tokens: int = 256, top_k: int = 8,
    log: Callable[[str], None] = print, meta: dict | None = None,
) -> TraceSet:
    if engine.draft is None:
        raise TandemError("recording needs the draft model (it reads the target's replies)")
    engine.baseline_tps()
    # The replay's conclusions hang on the curves: measure them afresh (contention-filtered).
    costs = engine.cost_model(remeasure=True)
    log("decode cost (ms, target/draft): " + describe(costs))
    traces = []
    for i, p in enumerate(prompts, 1):
        t = record_prompt(engine, p, max_tokens, top_k)
        agree = float(np.mean(t.draft_ids[:, 0] == t.tokens)) if len(t) else 0.0
        log(f"[{i}/{len(prompts)}] {p.id}: {len(t)} tokens, plain {t.plain_tps:.1f} tok/s, "
            f"draft top-1 agreement {agree:.3f}")
        traces.append(t)
    return TraceSet(traces, costs, dict(meta or {}, top_k=top_k, max_tokens=max_tokens))
