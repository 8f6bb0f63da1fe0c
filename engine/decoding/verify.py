"""Lossless verification of a token tree against the target's logits.

`logits[0]` is the target's row at the root, `logits[i + 1]` the row at node i.
Every rule returns (accepted node ids root to deepest, bonus token).

Greedy: walk down from the root while a child equals the target's argmax; the
target's token at the first miss is the bonus token.

Sampling, top-down (`token`; SpecInfer, arXiv 2305.09781; without replacement
as in Sequoia, arXiv 2402.12374, and Recursive Speculative Decoding, arXiv
2402.14160; with replacement as in multi-candidate speculative sampling, arXiv
2401.06706): the target's token at a node is drawn so that it is *exactly*
distributed as p_target.  Children that were sampled from the draft
distribution q are tried first, in draw order: accept x with probability
min(1, p(x)/q(x)); on rejection p <- norm(max(0, p - q)), and without
replacement q also loses x (with replacement q stays, and a repeated draw is
rejected for sure: p(x) is 0 by then).  If no sampled child is accepted the
token is drawn from what is left of p.  Children chosen deterministically
(n-gram stage, top-k) carry no q: they are accepted exactly when the drawn
token equals them, which is unbiased whatever produced them.

Sampling, leaf to root (`traversal`; Traversal Verification, Weng et al.,
arXiv 2505.12398, NeurIPS 2025): see `traverse`.  It decides on whole
sequences instead of single tokens, so a node whose parent the top-down rule
would have rejected can still be accepted with its parent.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.decoding.sampling import distribution, sample
from engine.decoding.tree import ROOT, Tree
from engine.settings import SamplingParams

WITHOUT, WITH, POINT = "without", "with", "point"  # how a child was proposed
TINY = 1e-12


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
    """The top-down rule (`token`)."""
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


def sampled_draws(tree: Tree, node: int) -> tuple[list[int], bool]:
    """(the node's draws from its q in draw order, with replacement?).  Empty when
    its children were not sampled (or the set of draws was cut by pruning)."""
    sampled = [c for c in tree.children(node) if tree.nodes[c].sampled]
    if not sampled or node not in tree.q_dist:
        return [], False
    if node in tree.draws:
        return list(tree.draws[node]), True
    return [tree.nodes[c].token for c in sorted(sampled, key=lambda c: tree.nodes[c].order)], False


def draw_target_token(tree: Tree, node: int, p: np.ndarray, rng: np.random.Generator) -> int:
    """One token distributed exactly as `p`, preferring the node's sampled children."""
    draws, replacement = sampled_draws(tree, node)
    if draws:
        q = tree.q_dist[node].astype(np.float64, copy=True)
        for x in draws:
            if q[x] <= 0.0:
                break  # not a draw from this q: the rule no longer applies
            if rng.random() * q[x] < p[x]:
                return x
            residual = np.maximum(p - q, 0.0)
            total = residual.sum()
            if total <= 0.0:
                break
            p = residual / total
            if not replacement:
                q[x] = 0.0
                q_total = q.sum()
                if q_total <= 0.0:
                    break
                q /= q_total
    return sample(p, rng)


class Proposals:
    """A node's children in the order the verifier tries them, each with the
    distribution it was drawn from given the ones before: the draft's q for
    sampled children (losing each tried token when drawn without replacement),
    then a point mass for each deterministic child (a choice that does not
    depend on the target is a draw from a point mass).

    Works on the vocabulary or, after `compact`, on the few tokens where the
    target or the draft has mass (top-k / top-p leave a handful out of 150k):
    `steps` then give positions in that support."""

    def __init__(self, tree: Tree, node: int) -> None:
        draws, replacement = sampled_draws(tree, node)
        self.q = tree.q_dist[node].astype(np.float64, copy=True) if draws else None
        kind = WITH if replacement else WITHOUT
        self.steps: list[tuple[int, str]] = [(x, kind) for x in draws]
        drawn = set(draws)
        self.steps += [(tree.nodes[c].token, POINT) for c in tree.children(node) if tree.nodes[c].token not in drawn]

    def compact(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(support token ids, p on them); steps and q move to that support."""
        parts = [np.flatnonzero(p), np.array([x for x, _ in self.steps], dtype=np.int64)]
        if self.q is not None:
            parts.append(np.flatnonzero(self.q))
        idx = np.unique(np.concatenate(parts))
        if self.q is not None:
            self.q = self.q[idx]
        self.steps = [(int(np.searchsorted(idx, x)), kind) for x, kind in self.steps]
        return idx, p[idx]

    def prob(self, x: int, kind: str) -> float:
        return 1.0 if kind == POINT else float(self.q[x])

    def residual(self, alpha: float, p: np.ndarray, x: int, kind: str) -> np.ndarray:
        """max(0, alpha p - proposal): the target mass the rejected child did not cover."""
        if kind == POINT:
            r = alpha * p
            r[x] = 0.0
            return r
        return np.maximum(alpha * p - self.q, 0.0)

    def drop(self, x: int, kind: str) -> None:
        if kind == WITHOUT:
            self.q[x] = 0.0
            total = self.q.sum()
            if total > 0.0:
                self.q /= total


# Work on the support of p (and q) when it is at most this share of the vocabulary.
COMPACT_BELOW = 0.25


def traverse(
    tree: Tree, target_at: Callable[[int], np.ndarray], coin: Callable[[float], bool]
) -> tuple[int, np.ndarray]:
    """Traversal Verification (Weng et al., arXiv 2505.12398): returns the accepted
    node (ROOT: none) and the distribution its bonus token is drawn from.

    Every node v carries an acceptance probability alpha(v) for the *sequence*
    root..v and the target distribution p_v it still owes.  alpha(root) = 1 and
    a child x of v, drawn from proposal q_v, starts with
        alpha(x) = min(1, alpha(v) p_v(x) / q_v(x)).
    The tree is walked in post-order, children in draw order (the first leaf
    tried is the deepest leftmost one): a node whose subtree produced nothing is
    accepted with probability alpha, and then the whole path root..node is
    accepted and the bonus token drawn from its p.  When a child x is rejected
    its parent v is left owing r = max(0, alpha(v) p_v - q_v), of total S:
        p_v <- r / S,   alpha(v) <- S / (S + 1 - alpha(v)),
    q_v loses x when drawn without replacement, and the next child starts from
    these.  The root is never rejected: its bonus comes from what p_root has left.

    Why it is exact, by induction from the leaves: a node entered with alpha is
    accepted (itself or through a descendant) with probability alpha in total,
    and given that, what follows it is distributed as p_target.  For a leaf this
    is the coin.  For v, each child is a speculative-sampling proposal for the
    sub-probability alpha(v) p_v: it is accepted with min(q, alpha p) of the
    mass, the rejection leaves max(0, alpha p - q) to be given out in the
    remaining probability 1 - alpha + S, which is exactly the update above;
    after the last child v itself gives out the rest.  At the root alpha = 1,
    so the emitted text is distributed as the target's.  The argument only needs
    each child to be a draw from its stated proposal given everything drafted
    before it, so trees whose shape depends on the draws are fine, and
    deterministic children are point-mass proposals (for them the rule coincides
    with sample-and-match).  On a chain it is block verification (Sun et al.,
    arXiv 2403.10444); compared with the top-down rule, a child accepted at
    alpha(v) < 1 keeps the slack of its parent (min(1, alpha r) >= alpha min(1, r)),
    so deep nodes are accepted more often.
    """

    def visit(v: int, alpha: float) -> tuple[int, np.ndarray] | None:
        children = tree.children(v)
        p = target_at(v) if children else None
        idx = None
        if children:
            props = Proposals(tree, v)
            if np.count_nonzero(p) <= COMPACT_BELOW * len(p):
                idx, p = props.compact(p)
            tried: set[int] = set()
            for x, kind in props.steps:
                qx = props.prob(x, kind)
                if qx <= 0.0:  # not a draw from this q: verify it as a deterministic candidate
                    kind, qx = POINT, 1.0
                if x not in tried:
                    tried.add(x)
                    a = min(1.0, alpha * p[x] / qx)
                    child = tree.child_with_token(v, x if idx is None else int(idx[x]))
                    if a > 0.0 and child is not None:
                        found = visit(child, a)
                        if found is not None:
                            return found
                r = props.residual(alpha, p, x, kind)
                s = float(r.sum())
                if s > TINY:
                    alpha = 1.0 if v == ROOT else s / (s + 1.0 - alpha)
                    p = r / s
                elif v != ROOT:
                    alpha = 0.0  # nothing left for v to give
                props.drop(x, kind)
        if v == ROOT or coin(alpha):
            if p is None:
                return v, target_at(v)
            if idx is None:
                return v, p
            dense = np.zeros(len(target_at(v)), dtype=np.float64)
            dense[idx] = p
            return v, dense
        return None

    found = visit(ROOT, 1.0)
    assert found is not None  # the root always ends it
    return found


def verify_traversal(
    tree: Tree, logits: np.ndarray, params: SamplingParams, rng: np.random.Generator
) -> tuple[list[int], int]:
    """Traversal Verification (`traversal`, arXiv 2505.12398)."""
    rows: dict[int, np.ndarray] = {}

    def target_at(v: int) -> np.ndarray:
        if v not in rows:
            rows[v] = distribution(logits[v + 1], params)
        return rows[v]

    node, p = traverse(tree, target_at, lambda a: rng.random() < a)
    return tree.path(node), sample(p, rng)


def verify(
    tree: Tree, logits: np.ndarray, params: SamplingParams, rng: np.random.Generator, rule: str = "auto"
) -> tuple[list[int], int]:
    """`rule` (SpecSettings.verify) picks the sampling rule.  `auto`: traversal
    where the tree holds draws from the draft (there it accepts at least as
    much); on trees of deterministic candidates both rules have the same outcome
    distribution and the top-down one is cheaper."""
    if params.greedy:
        return verify_greedy(tree, logits)
    if rule == "traversal" or (rule == "auto" and any(n.sampled for n in tree.nodes)):
        return verify_traversal(tree, logits, params, rng)
    return verify_sampling(tree, logits, params, rng)
