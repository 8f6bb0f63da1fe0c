"""Replay per-step speculation policies on recorded traces, in seconds.

A policy sees a `StepView` (the text so far, the n-gram index, what the draft
would propose, the draft cache's lag, the cost curves) and returns a `Proposal`:
the candidate chain the target verifies, and the draft decodes it made.  The
simulator scores it against the target's recorded reply:

    accepted = common prefix of the candidates and the target's next tokens
    time     = Σ draft_curve(batch) (× draft_scale) + target_curve(len(candidates) + 1) + overhead

and advances by accepted + 1 tokens, exactly as the engine's loop does (one
target pass per step, bonus token included).  Speedup = plain time (one
target_curve(1) per token) / policy time over the same tokens.

Teacher forcing: the draft's top-k at position j is recorded given the
target's text.  Along a chain that still matches the target this is exactly
what the draft would see; past the first wrong token it stands in for the
draft's unrecorded view (those candidates are rejected anyway; only how many
get drafted is approximate).

A new policy is a class with `name`, `reset(trace)`, `propose(view)` and
`observe(view, proposal, accepted)` (see engine/bench/policies.py); pass it to
`replay_set`, or name a factory with `tandem bench --replay DIR --policies mod:func`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from engine.bench.trace import PromptTrace, TraceSet
from engine.decoding.costmodel import CostModel
from engine.drafters.suffix_tree import SuffixIndex, branches

NGRAM_MAX = 16  # longest n-gram continuation the replay precomputes
NGRAM_BRANCHES = 2


@dataclass
class Proposal:
    tokens: list[int] = field(default_factory=list)  # candidates after the root, verified in one target pass
    draft_batches: list[int] = field(default_factory=list)  # sizes of this step's draft decodes ([]: draft unused)
    draft_keeps: int = 0  # leading candidates left in the draft's cache (kept where accepted)
    sources: list[str] = field(default_factory=list)  # optional, per candidate: "draft" / "ngram"


class StepView:
    """What a policy may look at: nothing of the target's future."""

    def __init__(self, trace: PromptTrace, pos: int, draft_lag: int, costs: CostModel) -> None:
        self.trace = trace
        self.pos = pos  # reply tokens emitted so far
        self.draft_lag = draft_lag  # tokens the draft has to catch up (root included, so >= 1)
        self.costs = costs

    @property
    def remaining(self) -> int:
        return len(self.trace.tokens) - self.pos

    def draft_top(self, depth: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Draft's top-k (ids, probs) for the token at `depth` (1 = the next one)."""
        j = self.pos + depth - 1
        if j >= len(self.trace.tokens):
            return None
        return self.trace.draft_ids[j], self.trace.draft_p[j]

    def draft_entropy(self, depth: int) -> float | None:
        j = self.pos + depth - 1
        return float(self.trace.draft_entropy[j]) if j < len(self.trace.tokens) else None

    def draft_chain(self, n_max: int, p_min: float = 0.0, depth0: int = 1) -> tuple[list[int], list[float], bool]:
        """The draft's greedy chain from `depth0`: (tokens, top-1 probabilities,
        stopped_by_p_min).  Stops at n_max tokens, below p_min, or at the trace end."""
        toks: list[int] = []
        probs: list[float] = []
        for d in range(depth0, depth0 + n_max):
            top = self.draft_top(d)
            if top is None:
                return toks, probs, False
            if float(top[1][0]) < p_min:
                return toks, probs, True
            toks.append(int(top[0][0]))
            probs.append(float(top[1][0]))
        return toks, probs, False

    def ngram(self, max_len: int = NGRAM_MAX) -> list[tuple[list[int], int]]:
        """Prompt-lookup continuations (engine.drafters.suffix_tree over prompt + reply
        so far): [(tokens, match length)], best first."""
        conts = ngram_table(self.trace)[self.pos]
        return [(toks[:max_len], m) for toks, m in conts]


class Policy(Protocol):
    name: str

    def reset(self, trace: PromptTrace) -> None: ...

    def propose(self, view: StepView) -> Proposal: ...

    def observe(self, view: StepView, proposal: Proposal, accepted: int) -> None: ...


def ngram_table(trace: PromptTrace) -> list[list[tuple[list[int], int]]]:
    """N-gram continuations at every reply position, computed once per trace."""
    if "ngram" not in trace.cache:
        index = SuffixIndex(key_len=1)
        stream = [int(t) for t in trace.prompt]
        index.extend(stream)
        table = []
        for pos in range(len(trace.tokens) + 1):
            table.append(branches(index, stream, NGRAM_MAX, NGRAM_BRANCHES))
            if pos < len(trace.tokens):
                stream.append(int(trace.tokens[pos]))
                index.append(stream[-1])
        trace.cache["ngram"] = table
    return trace.cache["ngram"]


def accepted_prefix(candidates: Sequence[int], truth: np.ndarray) -> int:
    n = 0
    for c, t in zip(candidates, truth, strict=False):
        if int(c) != int(t):
            break
        n += 1
    return n


@dataclass
class SimResult:
    tokens: int = 0
    steps: int = 0
    time: float = 0.0
    plain_time: float = 0.0
    t_draft: float = 0.0
    t_verify: float = 0.0
    tested: int = 0
    accepted: int = 0

    def add(self, other: SimResult) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def speedup(self) -> float:
        return self.plain_time / self.time if self.time > 0 else 0.0


def simulate(trace: PromptTrace, policy: Policy, costs: CostModel, *, draft_scale: float = 1.0,
             overhead: float = 0.0) -> SimResult:
    truth = trace.tokens
    n = len(truth)
    res = SimResult(tokens=n, plain_time=n * (costs.target(1) + overhead))
    pos, lag = 0, 1  # prompt[:-1] is prefilled in both caches; the root is not
    policy.reset(trace)
    while pos < n:
        view = StepView(trace, pos, lag, costs)
        prop = policy.propose(view)
        a = accepted_prefix(prop.tokens, truth[pos:])
        emitted = min(a + 1, n - pos)
        t_draft = draft_scale * sum(costs.draft(b) for b in prop.draft_batches)
        t_verify = costs.target(len(prop.tokens) + 1)
        res.time += t_draft + t_verify + overhead
        res.t_draft += t_draft
        res.t_verify += t_verify
        res.steps += 1
        res.tested += len(prop.tokens)
        res.accepted += min(a, emitted)
        lag = emitted - min(a, prop.draft_keeps) if prop.draft_batches else lag + emitted
        policy.observe(view, prop, a)
        pos += emitted
    return res


def replay_set(traces: TraceSet, policy: Policy, *, draft_scale: float = 1.0,
               overhead: float = 0.0) -> dict[str, SimResult]:
    """{category: pooled result, ..., "all": pooled result}."""
    out: dict[str, SimResult] = {}
    for t in traces.prompts:
        r = simulate(t, policy, traces.costs, draft_scale=draft_scale, overhead=overhead)
        for key in (t.category, "all"):
            out.setdefault(key, SimResult()).add(r)
    return out
