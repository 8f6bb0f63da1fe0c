"""Growing the draft model's part of a tree, level by level (EAGLE-2, arXiv
2406.16858): every frontier node proposes its top-k children, all candidates are
scored, and only the `beam` best are decoded to propose the next level.  One
draft decode per level, whatever the beam width.

Children are the draft's top-k (deterministic candidates, verified by
sample-and-match under sampling).  With `sample=True` and a sampling request they
are instead drawn from the draft's distribution without replacement (Gumbel
top-k), or with replacement (k i.i.d. draws, duplicates merged into one
node; multi-candidate speculative sampling, arXiv 2401.06706), and the verifier
applies multi-step speculative sampling to them (engine/decoding/verify.py).
That rule is exact only if whether a node's draws are all kept cannot depend
on their values, so sampled trees are limited by
construction (`max_nodes`, `max_leaves`: decided before a node's children are
drawn) and never pruned afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.decoding.acceptance import NodeClassifier
from engine.decoding.sampling import distribution, entropy, fast_top_k
from engine.decoding.tree import DRAFT, Tree
from engine.drafters.draft_model import DraftModel
from engine.llama.lm import ContextFull
from engine.settings import SamplingParams


@dataclass
class Frontier:
    node: int  # tree node id (ROOT for the root)
    lm_node: int  # draft cache node id (TIP for the root)
    row: np.ndarray  # draft logits after this node
    log_joint: float  # log draft probability of the path to this node
    depth: int  # depth of this node (root 0)


def propose_children(
    row: np.ndarray, params: SamplingParams, rng: np.random.Generator, k: int, sample: bool,
    replacement: bool = False,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray | None, list[int] | None]:
    """(distinct tokens, draft probabilities, entropy at this node, dense q if
    sampled, every draw in order if drawn with replacement)."""
    if params.greedy or not sample:
        ids, probs, ent = fast_top_k(row, k)
        return ids, probs, ent, None, None
    q = distribution(row, params)
    if replacement:
        cum = np.cumsum(q)
        draws = np.minimum(np.searchsorted(cum, rng.random(k) * cum[-1], side="right"), len(q) - 1)
        take = np.array(list(dict.fromkeys(int(x) for x in draws)))
        return take, q[take], entropy(q), q, [int(x) for x in draws]
    support = np.flatnonzero(q)
    keys = np.log(q[support]) + rng.gumbel(size=len(support))
    take = support[np.argsort(-keys)[:k]]  # Gumbel top-k = k draws without replacement
    return take, q[take], entropy(q), q, None


def add_children(
    tree: Tree,
    parent: Frontier,
    params: SamplingParams,
    rng: np.random.Generator,
    k: int,
    scorer: NodeClassifier | None,
    min_score: float = 0.0,
    sample: bool = False,
    replacement: bool = False,
) -> list[tuple[int, Frontier]]:
    """Add the parent's draft children; returns (tree id, partial frontier) of each
    child that was kept (the row is filled in when the child is decoded)."""
    ids, probs, ent, q_dense, draws = propose_children(parent.row, params, rng, k, sample, replacement)
    sampled = q_dense is not None
    if sampled:
        tree.q_dist[parent.node] = q_dense
    if draws is not None:
        tree.draws[parent.node] = draws
    depth = parent.depth + 1
    log_joint = parent.log_joint + np.log(np.maximum(probs, 1e-30))
    if scorer is not None:
        scores = scorer.predict(log_joint, np.full(len(ids), ent), np.full(len(ids), depth))
    else:
        scores = np.exp(log_joint)
    out = []
    for tok, q, lj, score in zip(ids, probs, log_joint, scores, strict=True):
        if score < min_score and not sampled:
            tree.note_ignored(DRAFT)  # drafted, pruned by the classifier, never tested
            continue
        feat = (float(lj), float(ent), depth)
        node = tree.add(parent.node, int(tok), DRAFT, float(score), q=float(q), sampled=sampled, info={"feat": feat})
        out.append((node, Frontier(node, -2, parent.row, float(lj), depth)))
    return out


def grow(
    tree: Tree,
    dm: DraftModel,
    frontier: list[Frontier],
    *,
    params: SamplingParams,
    rng: np.random.Generator,
    k: int,
    beam: int,
    max_depth: int,
    scorer: NodeClassifier | None,
    min_score: float = 0.0,
    keep_going: Callable[[Tree, list[int]], bool] | None = None,
    sample: bool = False,
    max_nodes: int = 1 << 30,
    max_leaves: int = 1 << 30,
    replacement: bool = False,
) -> None:
    """Expand from `frontier` (nodes whose draft rows are known) until max_depth,
    until no candidate is worth expanding, or until `keep_going` says stop."""
    parent_lm = {f.node: f.lm_node for f in frontier}
    sample = sample and not params.greedy
    while frontier:
        level: list[tuple[int, Frontier]] = []
        for f in frontier:
            leaves = tree.n_leaves() - (1 if f.node != -1 and not tree.children(f.node) else 0)
            if len(tree) + k > max_nodes or leaves + k > max_leaves:
                continue
            level.extend(add_children(tree, f, params, rng, k, scorer, min_score, sample, replacement))
        if not level or level[0][1].depth >= max_depth:
            return
        level = [(n, f) for n, f in level if not dm.eog_mask[tree.nodes[n].token]]
        level.sort(key=lambda nf: -tree.nodes[nf[0]].p_accept)
        chosen = level[:beam]
        if not chosen or (keep_going is not None and not keep_going(tree, [n for n, _ in chosen])):
            return
        if dm.room() < len(chosen) + 1:
            return
        parents = [parent_lm[tree.nodes[n].parent] for n, _ in chosen]
        base = dm.lm.n_pending
        try:
            rows = dm.expand(parents, [tree.nodes[n].token for n, _ in chosen])
        except ContextFull:
            return  # no cache room or sequence ids left: the tree stops growing here
        frontier = []
        for i, (n, f) in enumerate(chosen):
            parent_lm[n] = base + i
            frontier.append(Frontier(n, base + i, rows[i], f.log_joint, f.depth))
