"""How many candidates to send to the target.

Sequoia's hardware-aware rule (arXiv 2402.12374), as in DESIGN §3: with
per-node acceptance estimates P(v), a tree of the n best nodes is expected to
yield 1 + sum P(v) tokens for one target pass of n + 1 tokens.  Pick the n that
maximises tokens per second given the measured cost curve and the drafting time
already spent; n = 0 is plain decoding.  HierSpec's observation that a 4-bit
target on a CPU makes big trees costly falls out of the measured curve.
"""

from __future__ import annotations

import numpy as np

from engine.decoding.costmodel import CostCurve
from engine.decoding.tree import Tree


def ranked(tree: Tree) -> list[int]:
    """Nodes by decreasing estimate, ancestors before descendants on ties."""
    return sorted(range(len(tree.nodes)), key=lambda i: (-tree.nodes[i].p_accept, tree.nodes[i].depth))


def closed_prefix(tree: Tree, order: list[int]) -> list[int]:
    """Drop nodes whose parent comes later in `order` (rare: estimate ties)."""
    seen: set[int] = set()
    out = []
    for i in order:
        p = tree.nodes[i].parent
        if p == -1 or p in seen:
            seen.add(i)
            out.append(i)
    return out


def best_size(tree: Tree, verify_cost: CostCurve, spent: float, budget: int) -> tuple[list[int], float]:
    """(node ids to keep, expected tokens per second)."""
    order = closed_prefix(tree, ranked(tree))[:budget]
    p = np.array([tree.nodes[i].p_accept for i in order], dtype=np.float64)
    expected = 1.0 + np.concatenate([[0.0], np.cumsum(p)])
    times = np.array([spent + verify_cost(n + 1) for n in range(len(order) + 1)])
    rate = expected / times
    n = int(np.argmax(rate))
    return order[:n], float(rate[n])


def expected_rate(tree: Tree, ids: list[int], verify_cost: CostCurve, spent: float) -> float:
    e = 1.0 + sum(tree.nodes[i].p_accept for i in ids)
    return e / (spent + verify_cost(len(ids) + 1))


def fit_to_limits(tree: Tree, max_nodes: int, max_leaves: int) -> Tree:
    """Shrink a tree to what the target's cache, batch and sequence ids allow,
    dropping the least likely nodes first (never crash on a full context)."""
    if len(tree) <= max_nodes and tree.n_leaves() <= max_leaves:
        return tree
    # Pruned sampled draws could no longer be verified by speculative sampling
    # (their survival would depend on their values): verify every node by
    # sample-and-match instead, which is exact for any candidate set.
    for node in tree.nodes:
        node.sampled = False
    keep = closed_prefix(tree, ranked(tree))[: max(0, max_nodes)]
    out = tree.keep(keep)
    while out.n_leaves() > max_leaves and len(out):
        leaves = [i for i, n in enumerate(out.nodes) if not n.children]
        worst = min(leaves, key=lambda i: out.nodes[i].p_accept)
        out = out.keep([i for i in range(len(out.nodes)) if i != worst])
    return out
