"""Speed of light: how many tokens per target pass deterministic speculation could
get at best, next to the τ each arm measured (benchmarks with sampling).

Pankratov & Alistarh, "Speculative Decoding Speed-of-Light: Optimal Lower
Bounds via Branching Random Walks" (arXiv 2512.11718) bound the tokens accepted
per step of any deterministic speculation with a verifier capacity of P tokens:

    E[X] <= (mu + mu2) ln(P) / mu^2 + O(1)

with mu the expected entropy of the target's output distribution and mu2 its
second log-moment, E[sum_x p(x) ln^2 p(x)].  The constant in O(1) is not
published in a form we can evaluate, so that expression (`paper_term`, P = the
arm's verified nodes per step + 1) is reported as the leading term only: it is
not a number τ must stay under.

The number τ is compared with (`best_tree_tau`) is computed from first
principles.  With deterministic candidates, a tree of n nodes verified by
sample-and-match accepts node v exactly when the target's own sample starts
with v's path, so its expected accepted length is sum_v P_target(path v); no
tree of n nodes does better than the n most probable paths, and no lossless
rule accepts a node more often than its target probability, so this also caps
sampled trees.  The target's probabilities on paths it did not take are not
known, so, like the paper's branching random walk (which draws every node's
distribution from one law), we model them: a node at depth d below a step
starting at position t has children with the target's sorted probabilities
measured at position t + d - 1 of a plain reply (its own sampled text, same
temperature/top-k/top-p), which keeps runs of easy and hard positions as they
occur.  The bound is 1 (bonus token) + the best n-node tree's sum, averaged over
every start position, with n = the arm's verified nodes per step (concave in
n, so using the mean over-estimates the mean of per-step bounds: still a bound).
`summary` attaches it to every arm on the prompts where plain ran.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from engine.decoding.sampling import distribution
from engine.llama.lm import TIP
from engine.settings import SamplingParams

TOP = 32  # probabilities kept per position: trees never verify more siblings than this
CHUNK = 64  # positions re-evaluated per target decode


def position_stats(p: np.ndarray, top: int = TOP) -> tuple[list[float], float, float]:
    """(largest probabilities, most likely first; entropy; second log-moment), nats."""
    nz = p[p > 0]
    logs = np.log(nz)
    k = min(top, len(nz))
    best = np.sort(np.partition(nz, len(nz) - k)[len(nz) - k:])[::-1]
    return [float(x) for x in best], float(-(nz * logs).sum()), float((nz * logs * logs).sum())


def measure_target(lm, prompt: Sequence[int], generated: Sequence[int], params: SamplingParams) -> dict:
    """The target's distribution statistics at every position of a reply it
    generated: the prompt's cache is rebuilt and the reply decoded as one path of
    pending nodes (one row per position), then dropped again."""
    lm.truncate(len(prompt) - 1)
    nodes = list(generated[:-1])
    tops, ent, m2 = [], [], []
    chain, parent, i = [prompt[-1]], TIP, 0
    while True:
        part = nodes[i:i + CHUNK]
        base = lm.n_pending
        parents = [parent, *range(base, base + len(part) - 1)] if part else []
        rows = lm.decode(chain, parents, part)
        for row in rows:
            t, h, s = position_stats(distribution(row, params))
            tops.append([round(x, 6) for x in t])
            ent.append(round(h, 6))
            m2.append(round(s, 6))
        i += len(part)
        if i >= len(nodes):
            break
        chain, parent = [], base + len(part) - 1
    lm.truncate(len(prompt) - 1)
    return {"top": tops[: len(generated)], "entropy": ent[: len(generated)], "m2": m2[: len(generated)]}


def best_tree_value(profiles: Sequence[Sequence[float]], n: int) -> float:
    """Sum of the n largest path probabilities in the tree whose nodes at depth d
    have children with probabilities `profiles[d]` (sorted, largest first)."""
    if n <= 0 or not profiles or not len(profiles[0]):
        return 0.0
    # best-first: popping in decreasing probability keeps the set closed under ancestors
    heap = [(-profiles[0][0], 0, 0, 1.0)]  # (-prob, depth index, rank, parent prob)
    total = 0.0
    for _ in range(n):
        if not heap:
            break
        neg, d, rank, parent = heapq.heappop(heap)
        prob = -neg
        total += prob
        if rank + 1 < len(profiles[d]):
            heapq.heappush(heap, (-parent * profiles[d][rank + 1], d, rank + 1, parent))
        if d + 1 < len(profiles) and len(profiles[d + 1]):
            heapq.heappush(heap, (-prob * profiles[d + 1][0], d + 1, 0, prob))
    return total


def best_tree_tau(tops: Sequence[Sequence[float]], n: float) -> float | None:
    """1 + the best n-node tree's expected accepted tokens, averaged over start
    positions; n may be fractional (linear between neighbours)."""
    if not tops:
        return None
    lo = int(np.floor(n))
    frac = n - lo

    def mean_value(m: int) -> float:
        return float(np.mean([best_tree_value(tops[t:], m) for t in range(len(tops))]))

    value = mean_value(lo)
    if frac > 0:
        value += frac * (mean_value(lo + 1) - value)
    return 1.0 + value


def paper_term(entropy: Sequence[float], m2: Sequence[float], n: float) -> float | None:
    """(mu + mu2) ln(P) / mu^2 with P = n + 1 tokens per pass (no O(1) term)."""
    if not entropy:
        return None
    mu, mu2 = float(np.mean(entropy)), float(np.mean(m2))
    if mu <= 0:
        return None
    return (mu + mu2) * float(np.log(n + 1)) / (mu * mu)
