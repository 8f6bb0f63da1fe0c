"""The model interface the decision logic sees, and its llama.cpp implementation.

A language model here is a KV state machine:

* `tokens` are *committed*: in the cache on sequence 0, in order.
* `decode(chain, parents, tokens)` appends `chain` to the committed tokens and, in
  the same llama_decode, evaluates *pending* nodes: a forest hanging off the tip
  (parent -1 = the last committed token) or off pending nodes of earlier calls.
  It returns one logits row for the tip (when a chain was given) and one per node.
* `commit(path)` keeps one root-to-node chain of pending nodes (it becomes
  committed) and drops every other pending node; `discard()` drops them all.

Tree attention (DESIGN §2): every pending node lives in the KV cache under the
sequence ids of the paths through it, at position = parent's position + 1.  A
sequence id here always stands for one path "committed prefix + pending chain",
so a node sees exactly its ancestors.  The same interface is implemented by
numpy models in engine/decoding/synthetic.py, so drafting and verification are tested
against known distributions as well as against llama.cpp.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from engine.errors import EngineError, TandemError
from engine.llama.backend import LlamaContext, LlamaModel

TIP = -1


class ContextFull(TandemError):
    """The KV cache has no room for what was asked; the caller shrinks the request."""


class LanguageModel(Protocol):
    n_vocab: int
    n_ctx: int

    @property
    def tokens(self) -> list[int]: ...

    @property
    def n_pending(self) -> int: ...

    def room(self) -> int: ...

    def decode(
        self, chain: Sequence[int], parents: Sequence[int] = (), tokens: Sequence[int] = ()
    ) -> np.ndarray: ...

    def commit(self, path: Sequence[int]) -> None: ...

    def discard(self) -> None: ...

    def truncate(self, n: int) -> None: ...

    def pending(self) -> list[tuple[int, int]]:
        """(parent, token) of each pending node still in the cache."""
        ...


def cached_path(lm: LanguageModel, tokens: Sequence[int]) -> list[int]:
    """The longest chain of pending nodes from the tip spelling a prefix of `tokens`."""
    children: dict[int, dict[int, int]] = {}
    for i, (parent, token) in enumerate(lm.pending()):
        children.setdefault(parent, {}).setdefault(token, i)
    path: list[int] = []
    node = TIP
    for t in tokens:
        nxt = children.get(node, {}).get(t)
        if nxt is None:
            break
        path.append(nxt)
        node = nxt
    return path


@dataclass
class _Pending:
    parent: int
    token: int
    pos: int
    seqs: set[int] = field(default_factory=set)
    n_children: int = 0


class LlamaLM:
    """LanguageModel over one llama.cpp context (n_seq_max paths, unified KV)."""

    def __init__(self, model: LlamaModel, ctx: LlamaContext) -> None:
        self.model = model
        self.ctx = ctx
        self.n_vocab = model.n_vocab
        self.n_ctx = ctx.n_ctx
        self._tokens: list[int] = []
        self._pending: list[_Pending] = []
        self._free = list(range(ctx.n_seq_max - 1, 0, -1))  # seq 0 is the committed text

    @property
    def tokens(self) -> list[int]:
        return self._tokens

    @property
    def n_pending(self) -> int:
        return len(self._pending)

    def room(self) -> int:
        return self.n_ctx - len(self._tokens) - len(self._pending)

    def pending(self) -> list[tuple[int, int]]:
        return [(n.parent, n.token) if n.seqs else (-2, -1) for n in self._pending]

    def watch(self, cancel) -> None:
        """Let `cancel` stop the decodes that follow (a long prompt) mid-way."""
        self.ctx.watch(cancel)

    # ------------------------------------------------------------------ decode

    def decode(
        self, chain: Sequence[int], parents: Sequence[int] = (), tokens: Sequence[int] = ()
    ) -> np.ndarray:
        chain = list(chain)
        if chain and self._pending:
            raise ValueError("commit or discard pending nodes before extending the committed text")
        if len(chain) + len(tokens) > self.room():
            raise ContextFull(f"{len(chain) + len(tokens)} tokens do not fit: {self.room()} cells free")
        limit = self.ctx.n_batch
        if len(tokens) + (1 if chain else 0) > limit:
            raise ContextFull(f"a tree of {len(tokens)} nodes exceeds the batch size {limit}")
        if len(chain) + len(tokens) > limit:
            # Long chains (prompts) go in n_batch pieces; the last piece carries the nodes.
            keep = max(1, limit - len(tokens))
            head, chain = chain[:-keep], chain[-keep:]
            for i in range(0, len(head), limit):
                self._decode_batch(head[i : i + limit], [], [], want_tip=False)
        return self._decode_batch(chain, list(parents), list(tokens), want_tip=bool(chain))

    def _decode_batch(self, chain: list[int], parents: list[int], tokens: list[int], want_tip: bool) -> np.ndarray:
        if not tokens:
            return self._decode_chain(chain, want_tip)
        base = len(self._pending)
        n_new = len(tokens)
        tip_pos = len(self._tokens) + len(chain) - 1
        for i, p in enumerate(parents):
            if p != TIP and not (0 <= p < base + i):
                raise ValueError(f"node {base + i}: parent {p} is not an earlier node")
            if p != TIP and p < base and not self._pending[p].seqs:
                raise ValueError(f"node {base + i}: parent {p} was evicted from the cache")

        # Children among the new nodes; leaves are new nodes without new children.
        has_child = [False] * n_new
        for p in parents:
            if p >= base:
                has_child[p - base] = True
        new_seqs: list[set[int]] = [set() for _ in range(n_new)]
        tip_seqs: set[int] = set()
        claimed: set[int] = set()
        allocated: list[int] = []
        # cached nodes this call builds on (and their ancestors) must survive evictions
        protected: set[int] = set()
        for p in parents:
            while p != TIP and p < base and p not in protected:
                protected.add(p)
                p = self._pending[p].parent
        try:
            for leaf in (i for i in range(n_new) if not has_child[i]):
                top = leaf
                while parents[top] != TIP and parents[top] >= base:
                    top = parents[top] - base
                attach = parents[top]
                s = self._seq_for(attach, claimed, allocated, protected)
                node = leaf
                while True:
                    new_seqs[node].add(s)
                    p = parents[node]
                    if p == TIP or p < base:
                        break
                    node = p - base
                if attach == TIP:
                    tip_seqs.add(s)
        except ContextFull:
            for s in allocated:
                self.ctx.seq_rm(s)
                for node in self._pending:
                    node.seqs.discard(s)
                self._free.append(s)
            raise

        positions, seq_ids, outputs, all_tokens = [], [], [], []
        n0 = len(self._tokens)
        for j, t in enumerate(chain):
            all_tokens.append(t)
            positions.append(n0 + j)
            seq_ids.append([0, *sorted(tip_seqs)])
            outputs.append(want_tip and j == len(chain) - 1)
        node_pos = []
        for i, (p, t) in enumerate(zip(parents, tokens, strict=True)):
            pos = tip_pos + 1 if p == TIP else (node_pos[p - base] if p >= base else self._pending[p].pos) + 1
            node_pos.append(pos)
            all_tokens.append(t)
            positions.append(pos)
            seq_ids.append(sorted(new_seqs[i]))
            outputs.append(True)
        try:
            logits = self.ctx.decode(all_tokens, positions, seq_ids, outputs)
        except BaseException:
            self._resync_after_failure(n0)
            raise
        self._tokens.extend(chain)
        for i, (p, t) in enumerate(zip(parents, tokens, strict=True)):
            self._pending.append(_Pending(p, t, node_pos[i], new_seqs[i]))
            if p != TIP:
                self._pending[p].n_children += 1
        return logits

    def _decode_chain(self, chain: list[int], want_tip: bool) -> np.ndarray:
        """Extend the committed text (every plain step, and prompts): no tree work."""
        n0, n = len(self._tokens), len(chain)
        outputs = [False] * n
        outputs[-1] = want_tip
        try:
            logits = self.ctx.decode(chain, range(n0, n0 + n), [(0,)] * n, outputs)
        except BaseException:
            self._resync_after_failure(n0)
            raise
        self._tokens.extend(chain)
        return logits

    def _seq_for(self, attach: int, claimed: set[int], allocated: list[int], protected: set[int]) -> int:
        """A sequence id holding exactly 'committed prefix + path to attach'."""
        if attach != TIP:
            v = self._pending[attach]
            if v.n_children == 0:
                # v is a leaf: its own sequences end at v, so one of them can carry the
                # new child without copying.
                for s in v.seqs:
                    if s not in claimed:
                        claimed.add(s)
                        return s
        s = self._alloc(claimed, protected)
        allocated.append(s)
        claimed.add(s)
        if attach == TIP:
            self.ctx.seq_cp(0, s)
        else:
            v = self._pending[attach]
            src = next(iter(v.seqs))
            self.ctx.seq_cp(src, s, -1, v.pos + 1)
            node = attach
            while node != TIP:
                self._pending[node].seqs.add(s)
                node = self._pending[node].parent
        return s

    def _alloc(self, claimed: set[int], protected: set[int]) -> int:
        if not self._free:
            self._evict_one(claimed, protected)
        return self._free.pop()

    def _evict_one(self, claimed: set[int], protected: set[int]) -> None:
        """Out of sequence ids: drop the oldest pending leaf path that nothing in the
        current call needs.  Its nodes leave the cache; they can no longer be parents."""
        for i, node in enumerate(self._pending):
            if i in protected or node.n_children or len(node.seqs) != 1:
                continue
            (s,) = node.seqs
            if s in claimed or any(self._pending[p].seqs == {s} for p in protected):
                continue
            self.ctx.seq_rm(s)
            for other in self._pending:
                other.seqs.discard(s)
            self._free.append(s)
            return
        raise ContextFull("no sequence id free for another tree branch")

    def _resync_after_failure(self, n_committed: int) -> None:
        # A failed or aborted decode may leave some ubatches in the cache.
        self.ctx.seq_keep(0)
        self.ctx.seq_rm(0, n_committed, -1)
        self._pending.clear()
        self._free = list(range(self.ctx.n_seq_max - 1, 0, -1))

    # ------------------------------------------------------------------ commit

    def commit(self, path: Sequence[int]) -> None:
        if not self._pending and not path:
            return  # nothing pending: sequence 0 is all the cache holds
        path = list(path)
        expected = TIP
        for node in path:
            if self._pending[node].parent != expected or not self._pending[node].seqs:
                raise ValueError(f"commit path {path} is not a cached chain from the tip")
            expected = node
        if path:
            last = self._pending[path[-1]]
            # Each call scans every KV cell: three scans, not four.  After the rm, s holds
            # the committed prefix plus exactly the path; 0 joins it on the path's cells,
            # and keeping 0 drops every other branch.
            s = min(last.seqs)
            n0 = len(self._tokens)
            self.ctx.seq_rm(s, last.pos + 1, -1)
            self.ctx.seq_cp(s, 0, n0, last.pos + 1)
            self.ctx.seq_keep(0)
            self._tokens.extend(self._pending[n].token for n in path)
        else:
            self.ctx.seq_keep(0)
        self._pending.clear()
        self._free = list(range(self.ctx.n_seq_max - 1, 0, -1))

    def discard(self) -> None:
        self.commit([])

    def truncate(self, n: int) -> None:
        self.discard()
        if n < len(self._tokens):
            self.ctx.seq_rm(0, n, -1)
            del self._tokens[n:]

    def save_state(self, path: str) -> int:
        """The committed text's cache (sequence 0) and tokens to `path`; bytes written."""
        self.discard()
        return self.ctx.save_seq(path, 0, self._tokens)

    def load_state(self, path: str) -> int:
        """Replace the committed text with a saved one; tokens restored (0: none usable)."""
        self.truncate(0)
        tokens = self.ctx.load_seq(path, 0)
        if not tokens or len(tokens) >= self.n_ctx:
            self.ctx.seq_rm(0, -1, -1)
            return 0
        self._tokens = tokens
        try:
            self.check_consistent()
        except EngineError:
            self.ctx.seq_rm(0, -1, -1)
            self._tokens = []
            return 0
        return len(tokens)

    def check_consistent(self) -> None:
        """Raise if llama.cpp's cache disagrees with our bookkeeping (tests, soak)."""
        n = len(self._tokens)
        if self.ctx.seq_pos_max(0) != n - 1:
            raise EngineError(f"KV cache holds up to position {self.ctx.seq_pos_max(0)}, expected {n - 1}")
        if n and self.ctx.seq_pos_min(0) != 0:
            raise EngineError(f"KV cache starts at position {self.ctx.seq_pos_min(0)}, expected 0")
