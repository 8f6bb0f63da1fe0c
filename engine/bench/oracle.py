"""Ceilings: the fastest any per-step policy could be with these parts.

The oracle knows, at every position, how many draft tokens (the draft's greedy
chain, teacher-forced) and how many n-gram tokens (the better of the index's
continuations) the target will accept, and chooses each step's action to
minimise the total time of the reply: an exact dynamic programme over
(position, draft lag), with the same time model as engine/bench/replay.py.

Actions per step (those allowed by `sources`):
* plain: verify nothing.                               target(1)
* n-gram: verify m accepted n-gram tokens.             target(m + 1)
* draft: draft n tokens (n <= accepted + 1), verify.   draft(lag) + (n-1)·draft(1) + target(n + 1)
* staged (both sources): m n-gram tokens in the draft's catch-up batch, then n
  draft tokens after them.                             draft(lag + m) + (n-1)·draft(1) + target(m + n + 1)

The draft lag (tokens the draft has not seen, root included) is capped at
LAG_CAP; beyond it catch-up is charged as LAG_CAP tokens, which can only make
the ceiling higher.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from engine.bench.replay import NGRAM_MAX, SimResult, ngram_table
from engine.bench.trace import PromptTrace, TraceSet
from engine.decoding.costmodel import CostModel

LAG_CAP = 32
N_MAX = 16  # longest draft chain considered


@dataclass(frozen=True)
class Ceiling:
    name: str
    sources: frozenset[str]  # {"draft"}, {"ngram"} or both
    draft_scale: float = 1.0


DEFAULT_CEILINGS = (
    Ceiling("draft chain only", frozenset({"draft"})),
    Ceiling("n-gram only", frozenset({"ngram"})),
    Ceiling("chain + n-gram", frozenset({"draft", "ngram"})),
    Ceiling("chain + n-gram, draft 2× cheaper", frozenset({"draft", "ngram"}), 0.5),
)


def draft_run(trace: PromptTrace) -> np.ndarray:
    """a[i]: how many draft top-1 tokens from position i on the target accepts."""
    agree = trace.draft_ids[:, 0] == trace.tokens
    run = np.zeros(len(agree) + 1, dtype=np.int64)
    for i in range(len(agree) - 1, -1, -1):
        run[i] = run[i + 1] + 1 if agree[i] else 0
    return np.minimum(run, N_MAX)


def ngram_run(trace: PromptTrace) -> np.ndarray:
    """m[i]: accepted length of the better n-gram continuation at position i."""
    table = ngram_table(trace)
    n = len(trace.tokens)
    out = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        best = 0
        for toks, _ in table[i]:
            k = 0
            while k < len(toks) and i + k < n and toks[k] == trace.tokens[i + k]:
                k += 1
            best = max(best, k)
        out[i] = min(best, NGRAM_MAX)
    return out


def ceiling_time(trace: PromptTrace, costs: CostModel, sources: Iterable[str], draft_scale: float = 1.0,
                 overhead: float = 0.0) -> float:
    sources = set(sources)
    n = len(trace.tokens)
    if n == 0:
        return 0.0
    tc = np.array([costs.target(k) + overhead for k in range(N_MAX + NGRAM_MAX + 2)])
    dc = np.array([draft_scale * costs.draft(k) for k in range(LAG_CAP + NGRAM_MAX + 1)])
    use_d, use_n = "draft" in sources, "ngram" in sources
    a_d = draft_run(trace) if use_d else np.zeros(n + 1, dtype=np.int64)
    a_n = ngram_run(trace) if use_n else np.zeros(n + 1, dtype=np.int64)
    best = np.full((n + 1, LAG_CAP + 1), np.inf)
    best[0, 1] = 0.0

    def relax(i: int, lag: int, value: float) -> None:
        lag = min(lag, LAG_CAP)
        if value < best[i, lag]:
            best[i, lag] = value

    for i in range(n):
        for lag in np.flatnonzero(np.isfinite(best[i])):
            v = best[i, lag]
            left = n - i
            relax(i + 1, lag + 1, v + tc[1])
            for m in range(1, int(a_n[i]) + 1) if use_n else ():
                adv = min(m + 1, left)
                relax(i + adv, lag + adv, v + tc[m + 1])
            if use_d:
                _draft_actions(i, 0, lag, v, a_d, tc, dc, left, relax)
            if use_d and use_n:
                for m in range(1, min(int(a_n[i]), left - 1) + 1):
                    _draft_actions(i, m, lag, v, a_d, tc, dc, left, relax)
    return float(best[n].min())


def _draft_actions(i, m, lag, v, a_d, tc, dc, left, relax) -> None:
    """m accepted n-gram tokens (0: none) then a draft chain of n tokens."""
    acc_d = int(a_d[i + m])
    catch_up = dc[min(lag, LAG_CAP) + m]
    for n in range(1, min(acc_d + 1, N_MAX) + 1):
        acc = m + min(n, acc_d)
        adv = min(acc + 1, left)
        keeps = m + n - 1  # the last drafted token is never decoded by the draft
        relax(i + adv, adv - min(acc, keeps), v + catch_up + (n - 1) * dc[1] + tc[m + n + 1])


def ceiling_set(traces: TraceSet, ceiling: Ceiling, overhead: float = 0.0) -> dict[str, SimResult]:
    out: dict[str, SimResult] = {}
    for t in traces.prompts:
        r = SimResult(tokens=len(t), plain_time=len(t) * (traces.costs.target(1) + overhead))
        r.time = ceiling_time(t, traces.costs, ceiling.sources, ceiling.draft_scale, overhead)
        for key in (t.category, "all"):
            out.setdefault(key, SimResult()).add(r)
    return out
