"""The token tree one speculative step proposes to the target.

Node ids are indices; -1 is the root, the last emitted token (not yet in the
target's cache).  Parents always come before children, so the node order is a
valid batch order for tree attention.  A parent never has two children with the
same token: proposals from different stages merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ROOT = -1

# Where a candidate came from (DESIGN §4 provenance).
DRAFT = "draft"
NGRAM = "ngram"  # the conversation's own text (suffix index over prompt + reply)
HISTORY = "history"  # the user's earlier prompts and replies (engine/drafters/history.py)
RECYCLE = "recycle"  # the target's own earlier top-k successors (Token Recycling)
TARGET = "target"
MODEL_FREE = (NGRAM, HISTORY, RECYCLE)


@dataclass
class Node:
    token: int
    parent: int
    depth: int
    source: str
    # Estimated probability that the target accepts this node (product along the
    # path of per-edge estimates).  Used to size and prune the tree.
    p_accept: float
    # Draft probability of this token at its parent, and whether the child was
    # *sampled* from that distribution (without replacement, in `order`) rather
    # than picked deterministically.  Only sampled children enter the
    # multi-step speculative sampling rule.
    q: float = 0.0
    sampled: bool = False
    order: int = 0
    # Whatever the drafter needs to learn from this node's fate (C2T features,
    # n-gram rate key); carried through pruning.
    info: dict = field(default_factory=dict)
    children: list[int] = field(default_factory=list)


@dataclass
class Tree:
    nodes: list[Node] = field(default_factory=list)
    root_children: list[int] = field(default_factory=list)
    # Draft distributions (dense, after the user's sampling settings) at nodes
    # whose children were sampled from them; key ROOT for the root.
    q_dist: dict[int, np.ndarray] = field(default_factory=dict)
    # Nodes whose children were drawn from q_dist *with* replacement: every draw's
    # token in draw order, repeats included (duplicates share one child node but
    # each draw is one step of the verifier's rule).  Absent: without replacement.
    draws: dict[int, list[int]] = field(default_factory=dict)
    # Candidates produced but not sent to the target, by stage (statistics).
    ignored: dict[str, int] = field(default_factory=dict)
    # The tree as proposed before pruning: every candidate, tested or not, is
    # labelled later against the text that actually followed (learning).
    full: Tree | None = None

    def __len__(self) -> int:
        return len(self.nodes)

    def children(self, i: int) -> list[int]:
        return self.root_children if i == ROOT else self.nodes[i].children

    def child_with_token(self, i: int, token: int) -> int | None:
        for c in self.children(i):
            if self.nodes[c].token == token:
                return c
        return None

    def add(
        self,
        parent: int,
        token: int,
        source: str,
        p_accept: float,
        *,
        q: float = 0.0,
        sampled: bool = False,
        info: dict | None = None,
    ) -> int:
        """Add a child (or return the existing child with that token, keeping the
        higher acceptance estimate and the draft's sampling information)."""
        existing = self.child_with_token(parent, token)
        if existing is not None:
            node = self.nodes[existing]
            node.p_accept = max(node.p_accept, p_accept)
            if info:
                node.info.update(info)
            if sampled and not node.sampled:
                node.sampled, node.q = True, q
                node.order = sum(1 for c in self.children(parent) if self.nodes[c].sampled)
            return existing
        depth = 1 if parent == ROOT else self.nodes[parent].depth + 1
        order = sum(1 for c in self.children(parent) if self.nodes[c].sampled) if sampled else 0
        self.nodes.append(Node(token, parent, depth, source, p_accept, q, sampled, order, dict(info or {})))
        idx = len(self.nodes) - 1
        self.children(parent).append(idx)
        return idx

    @property
    def parents(self) -> list[int]:
        return [n.parent for n in self.nodes]

    @property
    def tokens(self) -> list[int]:
        return [n.token for n in self.nodes]

    def path_tokens(self, i: int) -> tuple[int, ...]:
        out = []
        while i != ROOT:
            out.append(self.nodes[i].token)
            i = self.nodes[i].parent
        return tuple(out[::-1])

    def path(self, i: int) -> list[int]:
        out = []
        while i != ROOT:
            out.append(i)
            i = self.nodes[i].parent
        return out[::-1]

    def count_by_source(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.source] = counts.get(n.source, 0) + 1
        return counts

    def note_ignored(self, source: str, n: int = 1) -> None:
        if n:
            self.ignored[source] = self.ignored.get(source, 0) + n

    def keep(self, ids: list[int] | set[int]) -> Tree:
        """A new tree with only `ids` (closed under ancestors), in parent-first
        order.  Dropped nodes are counted as ignored."""
        keep = set(ids)
        for i in list(keep):
            p = self.nodes[i].parent
            while p != ROOT and p not in keep:
                keep.add(p)
                p = self.nodes[p].parent
        out = Tree(ignored=dict(self.ignored), full=self.full or self)
        remap: dict[int, int] = {ROOT: ROOT}
        for i, n in enumerate(self.nodes):  # original order is parent-first
            if i not in keep:
                out.note_ignored(n.source)
                continue
            j = len(out.nodes)
            remap[i] = j
            out.nodes.append(
                Node(n.token, remap[n.parent], n.depth, n.source, n.p_accept, n.q, n.sampled, n.order, n.info)
            )
            out.children(remap[n.parent]).append(j)
        out.q_dist = {remap[k]: v for k, v in self.q_dist.items() if k in remap}
        out.draws = {remap[k]: list(v) for k, v in self.draws.items() if k in remap}
        draws = {p: sum(1 for c in self.children(p) if self.nodes[c].sampled) for p in self.q_dist}
        out._demote_partial_draws({remap[p]: n for p, n in draws.items() if p in remap})
        return out

    def _demote_partial_draws(self, draws_before: dict[int, int]) -> None:
        """Multi-step speculative sampling is exact only for the complete set of
        draws at a node.  Pruning picks survivors by their value, so where any draw
        was dropped the survivors are verified as deterministic candidates (the
        sample-and-match rule, exact for any candidate set)."""
        for parent, n_before in draws_before.items():
            kept = [c for c in self.children(parent) if self.nodes[c].sampled]
            if len(kept) < n_before:
                for c in kept:
                    self.nodes[c].sampled = False
                self.draws.pop(parent, None)

    def best(self, budget: int) -> list[int]:
        """The `budget` nodes with the highest acceptance estimates (an estimate never
        grows along a path, so the set is closed under ancestors up to ties)."""
        if budget >= len(self.nodes):
            return list(range(len(self.nodes)))
        order = sorted(range(len(self.nodes)), key=lambda i: (-self.nodes[i].p_accept, self.nodes[i].depth))
        return order[:budget]

    def n_leaves(self) -> int:
        return sum(1 for n in self.nodes if not n.children)
