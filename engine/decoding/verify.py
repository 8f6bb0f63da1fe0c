"""Lossless verification of a token tree against the target's logits.

`logits[0]` is the target's row at the root, `logits[i + 1]` the row at node i.
Both rules walk down from the root and stop at the first position where the
target's own token is not among the children; that token is the bonus token.

Greedy: the target's token is its argmax.

Sampling (SpecInfer, arXiv 2305.09781; without replacement as in Sequoia,
arXiv 2402.12374, and Recursive Speculative Decoding, arXiv 2402.14160): the
target's token at a node is drawn so that it is *exactly* distributed as
p_target.  Children that were sampled from the draft distribution q (without
replacement, in draw order) are tried first: accept x with probability
min(1, p(x)/q(x)); on rejection p <- norm(max(0, p - q)) and q loses x.  If no
sampled child is accepted the token is drawn from what is left of p.  Children
chosen deterministically (n-gram stage, top-k) carry no q: they are accepted
exactly when the drawn token equals them, which is unbiased whatever produced
them.
"""

from __future__ import annotations

import numpy as np

from engine.decoding.sampling import distribution, sample
from engine.decoding.tree import ROOT, Tree
from engine.settings import SamplingParams


def verify_greedy(tree: Tree, logits: np.ndarray) -> tuple[list[int], int]:
    path: list[int] = []
    node = ROOT
    while True:
        token = int(np.argmax(logits[node + 1]))
        child = tree.child_with_token(node, token)
        if child is None:
            return path, token
        path.append(child)
        node = child


def verify_sampling(
    tree: Tree, logits: np.ndarray, params: SamplingParams, rng: np.random.Generator
) -> tuple[list[int], int]:
    path: list[int] = []
    node = ROOT
    while True:
        p = distribution(logits[node + 1], params)
        token = draw_target_token(tree, node, p, rng)
        child = tree.child_with_token(node, token)
        if child is None:
            return path, token
        path.append(child)
        node = child


def draw_target_token(tree: Tree, node: int, p: np.ndarray, rng: np.random.Generator) -> int:
    """One token distributed exactly as `p`, preferring the node's sampled children."""
    sampled = sorted((c for c in tree.children(node) if tree.nodes[c].sampled), key=lambda c: tree.nodes[c].order)
    if sampled:
        q = tree.q_dist[node].astype(np.float64, copy=True)
        for c in sampled:
            x = tree.nodes[c].token
            if q[x] <= 0.0:
                break  # not a draw from this q: the rule no longer applies
            if rng.random() * q[x] < p[x]:
                return x
            residual = np.maximum(p - q, 0.0)
            total = residual.sum()
            if total <= 0.0:
                break
            p = residual / total
            q[x] = 0.0
            q_total = q.sum()
            if q_total <= 0.0:
                break
            q /= q_total
    return sample(p, rng)


def verify(
    tree: Tree, logits: np.ndarray, params: SamplingParams, rng: np.random.Generator
) -> tuple[list[int], int]:
    if params.greedy:
        return verify_greedy(tree, logits)
    return verify_sampling(tree, logits, params, rng)
