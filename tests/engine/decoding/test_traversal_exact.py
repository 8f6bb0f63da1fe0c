"""Traversal Verification is exact: the whole outcome distribution of one step,
enumerated over every draft draw and every coin of the verifier, equals the
target's distribution of the text it emits.

No sampling error here: small vocabularies and trees make every branch
enumerable, so the comparison is to 1e-9.  Trees cover chains, several draws
per node with and without replacement, deterministic children mixed with
sampled ones, and shapes that depend on the drawn values.
"""

from __future__ import annotations

import copy
import hashlib
import itertools

import numpy as np
import pytest

from engine.decoding.tree import DRAFT, NGRAM, ROOT, Tree
from engine.decoding.verify import traverse

V = 3


def dist(seed: int, path: tuple[int, ...], temp: float = 1.0) -> np.ndarray:
    digest = hashlib.blake2b(repr((seed, path)).encode(), digest_size=8).digest()
    g = np.random.default_rng(int.from_bytes(digest, "little"))
    z = g.standard_normal(V) * 1.5 / temp
    p = np.exp(z - z.max())
    if g.random() < 0.3:
        p[g.integers(V)] = 0.0  # zero-probability tokens happen (top-k / top-p)
    return p / p.sum()


def draw_options(q: np.ndarray, k: int, replacement: bool):
    """Every ordered sequence of k draws from q, with its probability."""
    for seq in itertools.product(range(V), repeat=k):
        if not replacement and len(set(seq)) < k:
            continue
        prob, left = 1.0, 1.0
        for x in seq:
            if left <= 0:
                prob = 0.0
                break
            prob *= q[x] / left
            if not replacement:
                left -= q[x]
        if prob > 0:
            yield prob, list(seq)


def all_trees(rule, q_at):
    """(probability, tree) for every way the drafter can draw its tree.  `rule(tree,
    node, path)` says how `node` is expanded: (sampling kind or None, k, deterministic tokens)."""
    out = []

    def rec(tree: Tree, frontier: list[int], prob: float) -> None:
        if not frontier:
            out.append((prob, tree))
            return
        node, rest = frontier[0], frontier[1:]
        path = tree.path_tokens(node) if node != ROOT else ()
        kind, k, det = rule(tree, node, path)
        options = [(1.0, [])] if kind is None else list(draw_options(q_at(path), k, kind == "with"))
        for p_draw, draws in options:
            t = copy.deepcopy(tree)
            new: list[int] = []
            if kind is not None:
                q = q_at(path)
                t.q_dist[node] = q
                if kind == "with":
                    t.draws[node] = list(draws)
                for x in draws:
                    c = t.add(node, x, DRAFT, 0.5, q=float(q[x]), sampled=True)
                    if c not in new:
                        new.append(c)
            for x in det:
                c = t.add(node, x, NGRAM, 0.5)
                if c not in new:
                    new.append(c)
            rec(t, rest + new, prob * p_draw)

    rec(Tree(), [ROOT], 1.0)
    return out


class ScriptedCoin:
    """Plays back a list of coin results, then takes `True` and notes the other
    branch to explore; keeps the probability of the branch taken."""

    def __init__(self, script: list[bool], pending: list[list[bool]]) -> None:
        self.script, self.pending = script, pending
        self.taken = list(script)
        self.weight = 1.0
        self.pos = 0

    def __call__(self, a: float) -> bool:
        i = self.pos
        self.pos += 1
        if i < len(self.script):
            b = self.script[i]
        else:
            if 0.0 < a < 1.0:
                self.pending.append([*self.taken[:i], False])
            b = a > 0.0
            self.taken.append(b)
        self.weight *= a if b else 1.0 - a
        return b


def traversal_outcomes(tree: Tree, p_at):
    """(probability, accepted node, bonus distribution) over every coin sequence."""
    results = []
    pending: list[list[bool]] = [[]]
    while pending:
        coin = ScriptedCoin(pending.pop(), pending)
        node, p = traverse(tree, lambda v: p_at(tree.path_tokens(v) if v != ROOT else ()).copy(), coin)
        if coin.weight > 0:
            results.append((coin.weight, node, p))
    return results


def emitted_distribution(trees, p_at, length: int) -> dict[tuple[int, ...], float]:
    """P(first `length` tokens) when the step's output is continued by the target."""
    # mass of (accepted path, bonus distribution), pooled over trees and coins
    pooled: dict[tuple[int, ...], np.ndarray] = {}
    for prob, tree in trees:
        for w, node, bonus in traversal_outcomes(tree, p_at):
            path = tree.path_tokens(node) if node != ROOT else ()
            pooled[path] = pooled.get(path, 0.0) + w * prob * bonus
    out = {s: 0.0 for s in itertools.product(range(V), repeat=length)}
    for s in out:
        for path, mass in pooled.items():
            d = len(path)
            if s[:d] == path:
                x = mass[s[d]]
                for j in range(d + 1, length):
                    x *= p_at(s[:j])[s[j]]
                out[s] += x
    return out


def target_distribution(p_at, length: int) -> dict[tuple[int, ...], float]:
    out = {}
    for s in itertools.product(range(V), repeat=length):
        x = 1.0
        for j in range(length):
            x *= p_at(s[:j])[s[j]]
        out[s] = x
    return out


def chain(tree, node, path):
    return ("without", 1, []) if len(path) < 3 else (None, 0, [])


def two_by_two(tree, node, path):
    return ("without", 2, []) if len(path) < 2 else (None, 0, [])


def with_replacement(tree, node, path):
    if not path:
        return "with", 3, []
    return ("with", 2, []) if len(path) < 2 and tree.nodes[node].order == 0 else (None, 0, [])


def mixed(tree, node, path):
    if not path:
        return "without", 1, [2, 0]  # a draw, then n-gram style candidates
    if len(path) == 1 and path[0] != 1:
        return None, 0, [path[0]]  # a deterministic grandchild
    if len(path) == 1:
        return "with", 2, []
    return None, 0, []


def value_dependent(tree, node, path):
    """Expand a node only if its token is not 0 and it was drawn first: the shape
    depends on the drawn values (as EAGLE-style beams do)."""
    if not path:
        return "without", 2, []
    if len(path) < 3 and path[-1] != 0 and tree.nodes[node].order == 0:
        return "without", 2, []
    return None, 0, []


@pytest.mark.parametrize("rule", [chain, two_by_two, with_replacement, mixed, value_dependent])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("compact", [False, True], ids=["vocab", "support"])
def test_traversal_verification_emits_the_target_distribution(
    rule, seed: int, compact: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.decoding.verify as verify_module

    # the support path (what top-k makes common) and the whole-vocabulary path
    monkeypatch.setattr(verify_module, "COMPACT_BELOW", 1.0 if compact else 0.0)
    def p_at(path):
        return dist(seed, path)

    def q_at(path):
        return dist(seed + 100, path, temp=0.7)  # a draft that differs from the target

    trees = all_trees(rule, q_at)
    assert abs(sum(p for p, _ in trees) - 1.0) < 1e-9
    depth = max((n.depth for _, t in trees for n in t.nodes), default=0)
    got = emitted_distribution(trees, p_at, depth + 1)
    want = target_distribution(p_at, depth + 1)
    err = max(abs(got[s] - want[s]) for s in want)
    assert err < 1e-9, f"{rule.__name__}: off by {err:.2e}"


def test_the_exact_check_catches_a_biased_traversal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Power: forgetting to carry the parent's slack (alpha stays at its old value
    after a rejection) is caught by the same comparison."""
    import engine.decoding.verify as verify_module

    real = verify_module.Proposals.residual

    def forgetful(self, alpha, p, x, kind):
        return real(self, 1.0, p, x, kind)  # residual as if alpha were 1

    monkeypatch.setattr(verify_module.Proposals, "residual", forgetful)

    def p_at(path):
        return dist(0, path)

    def q_at(path):
        return dist(100, path, temp=0.7)

    trees = all_trees(two_by_two, q_at)
    got = emitted_distribution(trees, p_at, 3)
    want = target_distribution(p_at, 3)
    assert max(abs(got[s] - want[s]) for s in want) > 1e-3
