"""Suffix index with frequency counts: the model-free candidate structure
(SuffixDecoding, arXiv 2411.04975; SAM-Decoding's exact longest match).

What a suffix tree over a token corpus answers, from compact arrays:

* the longest suffix of a query (at least `key_len`, at most `max_depth` tokens)
  that occurs in the corpus followed by at least one more token of the same
  document, and every place it occurs (the suffix tree node) — exact, except that
  a `key_len`-gram seen more than MAX_OCCURRENCES times is judged on its most
  recent occurrences;
* the counts below that node: how often each continuation followed it.  A
  speculation tree grown best-first from those counts estimates a token's
  probability as the empirical frequency of its path, as SuffixDecoding does.

Why not a pointer-based tree: a global corpus of thousands of replies is millions
of tokens, and Python objects per node would cost gigabytes.  Here each position
costs 16 bytes: the token (int32), and the hash of the `key_len` tokens ending
there with the position, sorted by hash (uint64 + int32).  A lookup is one binary
search plus a vectorised backward comparison of the candidate occurrences; a new
document merges into the sorted arrays in O(n) (one memcpy), and tokens appended
one at a time (the conversation) go to a dict until the next merge.

Documents are separated by `SEP`, which equals no token, so no match or
continuation crosses a document boundary.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SEP = -1
_MUL = 0x9E3779B97F4A7C15  # odd 64-bit multiplier of the rolling hash
_MASK = (1 << 64) - 1
_BLOCK = 16  # depths compared per vectorised step of the backward extension
BULK = 256  # tokens appended at once that are hashed vectorised
# A key that occurred more often than this (boilerplate in a big history) is judged on
# its most recent occurrences: a sample of its counts, and the per-step cost stays flat.
MAX_OCCURRENCES = 256
MERGE_AFTER = 4096  # tokens appended one by one before they are merged into the sorted arrays


def _hash_scalar(tokens: Sequence[int]) -> int:
    h = 0
    for t in tokens:
        h = (h * _MUL + int(t) + 1) & _MASK
    return h


def _hash_windows(tokens: np.ndarray, k: int) -> np.ndarray:
    """Hash of tokens[p-k:p] for every p in [k, len]: the same value as `_hash_scalar`."""
    n = len(tokens) - k + 1
    t = tokens.astype(np.uint64) + np.uint64(1)
    h = np.zeros(n, dtype=np.uint64)
    mul = np.uint64(_MUL)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * mul + t[j : j + n]
    return h


@dataclass
class Match:
    length: int  # tokens of the query's suffix that matched
    ends: np.ndarray  # positions of the token that followed each occurrence


@dataclass
class Candidate:
    parent: int  # index into the returned list, -1 for the root
    token: int
    prob: float  # empirical frequency of the path: its occurrences / the match's
    count: int  # occurrences that continued with this path


class SuffixIndex:
    def __init__(self, key_len: int = 2, max_depth: int = 64) -> None:
        if key_len < 1 or max_depth < key_len:
            raise ValueError("need 1 <= key_len <= max_depth")
        self.key_len = key_len
        self.max_depth = max_depth
        self.clear()

    def clear(self) -> None:
        self._buf = np.empty(1024, dtype=np.int32)
        self.n = 0
        self._keys = np.empty(0, dtype=np.uint64)
        self._pos = np.empty(0, dtype=np.int32)
        self._recent: dict[int, list[int]] = {}
        self._n_recent = 0

    @property
    def tokens(self) -> np.ndarray:
        return self._buf[: self.n]

    def nbytes(self) -> int:
        return 4 * self.n + 12 * (len(self._keys) + self._n_recent)

    # ------------------------------------------------------------------ build

    def _reserve(self, extra: int) -> None:
        if self.n + extra > len(self._buf):
            grown = np.empty(max(2 * len(self._buf), self.n + extra), dtype=np.int32)
            grown[: self.n] = self._buf[: self.n]
            self._buf = grown

    def append(self, token: int) -> None:
        """One more token of the current document (a conversation, token by token)."""
        self._reserve(1)
        self._buf[self.n] = token
        self.n += 1
        k = self.key_len
        if self.n >= k and token != SEP:
            window = self._buf[self.n - k : self.n].tolist()
            if SEP not in window:
                self._recent.setdefault(_hash_scalar(window), []).append(self.n)
                self._n_recent += 1
                if self._n_recent >= MERGE_AFTER:
                    self._merge_recent()

    def extend(self, tokens: Sequence[int]) -> None:
        """More tokens of the current document; many at once (a new conversation's
        prompt) are hashed in one vectorised pass."""
        if len(tokens) < BULK:
            for t in tokens:
                self.append(int(t))
            return
        arr = np.asarray(tokens, dtype=np.int32)
        start, k = self.n, self.key_len
        self._reserve(len(arr))
        self._buf[start : start + len(arr)] = arr
        self.n += len(arr)
        lo = max(0, start - k + 1)
        seg = self._buf[lo : self.n]
        keys = _hash_windows(seg, k)  # window j is seg[j:j+k], followed by position lo+j+k
        pos = np.arange(lo + k, self.n + 1)
        seps = np.concatenate([[0], np.cumsum(seg == SEP)])
        keep = (pos > start) & (seps[k:] == seps[:-k])  # new, and no separator inside
        self._merge(keys[keep], pos[keep].astype(np.int32))

    def add_document(self, tokens: Sequence[int]) -> None:
        """A whole document at once, then a separator (the history: one reply)."""
        doc = np.asarray(tokens, dtype=np.int32)
        if len(doc) and (doc < 0).any():
            raise ValueError("token ids must be non-negative")
        if self.n and self._buf[self.n - 1] != SEP:
            self.append(SEP)
        start = self.n
        self._reserve(len(doc) + 1)
        self._buf[start : start + len(doc)] = doc
        self._buf[start + len(doc)] = SEP
        self.n += len(doc) + 1
        if len(doc) >= self.key_len:
            keys = _hash_windows(doc, self.key_len)
            pos = np.arange(start + self.key_len, start + len(doc) + 1, dtype=np.int32)
            self._merge(keys, pos)

    def _merge_recent(self) -> None:
        keys = [k for k, ps in self._recent.items() for _ in ps]
        pos = [p for ps in self._recent.values() for p in ps]
        self._recent.clear()
        self._n_recent = 0
        self._merge(np.array(keys, dtype=np.uint64), np.array(pos, dtype=np.int32))

    def _merge(self, keys: np.ndarray, pos: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        keys, pos = keys[order], pos[order]
        at = np.searchsorted(self._keys, keys, side="right")
        self._keys = np.insert(self._keys, at, keys)
        self._pos = np.insert(self._pos, at, pos)

    def rebuild(self, documents: Sequence[Sequence[int]]) -> None:
        """Replace the corpus with `documents` (loading, or after the oldest were dropped)."""
        self.clear()
        self._reserve(sum(len(d) for d in documents) + len(documents))
        keys, pos = [], []
        for doc in documents:
            arr = np.asarray(doc, dtype=np.int32)
            start = self.n
            self._buf[start : start + len(arr)] = arr
            self._buf[start + len(arr)] = SEP
            self.n += len(arr) + 1
            if len(arr) >= self.key_len:
                keys.append(_hash_windows(arr, self.key_len))
                pos.append(np.arange(start + self.key_len, start + len(arr) + 1, dtype=np.int32))
        if keys:
            k, p = np.concatenate(keys), np.concatenate(pos)
            order = np.argsort(k, kind="stable")
            self._keys, self._pos = k[order], p[order]

    # ------------------------------------------------------------------ query

    def _occurrences(self, key: int) -> np.ndarray:
        k = np.uint64(key)
        lo = int(np.searchsorted(self._keys, k, side="left"))
        hi = int(np.searchsorted(self._keys, k, side="right"))
        found = self._pos[lo:hi]
        recent = self._recent.get(key)
        if recent:
            found = np.concatenate([found, np.array(recent, dtype=np.int32)])
        return found

    def match(self, query: Sequence[int]) -> Match | None:
        """The longest suffix of `query` (key_len..max_depth tokens) that occurs
        followed by a token of the same document, and where it occurs."""
        k = self.key_len
        q = [int(t) for t in query[-self.max_depth :]]
        if len(q) < k:
            return None
        ends = self._occurrences(_hash_scalar(q[-k:]))
        if not len(ends):
            return None
        buf = self._buf
        ends = ends[ends < self.n]
        ends = ends[buf[ends] != SEP][-MAX_OCCURRENCES:]  # positions ascend: the most recent
        if not len(ends):
            return None
        # Backward extension, _BLOCK depths at a time: matched[i] = how many tokens
        # before ends[i] equal the query's tail (a hash collision matches < k).
        rev = np.array(q[::-1], dtype=np.int64)
        matched = np.zeros(len(ends), dtype=np.int64)
        alive = np.arange(len(ends))
        for d0 in range(0, len(q), _BLOCK):
            d1 = min(d0 + _BLOCK, len(q))
            idx = ends[alive, None].astype(np.int64) - 1 - np.arange(d0, d1)
            ok = idx >= 0
            eq = ok & (buf[np.where(ok, idx, 0)] == rev[d0:d1])
            run = np.cumprod(eq, axis=1).sum(axis=1)
            matched[alive] += run
            alive = alive[run == d1 - d0]
            if not len(alive):
                break
        best = int(matched.max())
        if best < k:
            return None
        return Match(best, ends[matched == best])

    def speculate(self, match: Match, max_tokens: int, min_prob: float = 0.1) -> list[Candidate]:
        """Up to `max_tokens` continuation nodes, most frequent paths first
        (best-first on path frequency), none below `min_prob`.  Parents come
        before children."""
        out: list[Candidate] = []
        if max_tokens <= 0:
            return out
        buf, n = self._buf, self.n
        # heap of (-prob, tie, parent index, token, positions of the token after it)
        heap: list[tuple[float, int, int, int, np.ndarray]] = []
        tie = 0

        def expand(parent: int, prob: float, nxt: np.ndarray) -> None:
            nonlocal tie
            total = len(nxt)  # every occurrence of the path so far, continued or not
            nxt = nxt[nxt < n]
            toks = buf[nxt]
            live = toks != SEP
            nxt, toks = nxt[live], toks[live]
            if not len(toks):
                return
            values, counts = np.unique(toks, return_counts=True)
            for v, c in zip(values.tolist(), counts.tolist(), strict=True):
                p = prob * c / total
                if p >= min_prob:
                    heapq.heappush(heap, (-p, tie, parent, v, nxt[toks == v] + 1))
                    tie += 1

        expand(-1, 1.0, match.ends)
        while heap and len(out) < max_tokens:
            negp, _, parent, token, nxt = heapq.heappop(heap)
            prob = -negp
            out.append(Candidate(parent, token, prob, len(nxt)))
            if len(nxt) == 1:
                # A single occurrence continues as one chain at the same frequency, and
                # nothing in the heap is likelier (best-first): copy it in one slice.
                p = int(nxt[0])
                chain = buf[p : min(n, p + max_tokens - len(out))]
                seps = np.flatnonzero(chain == SEP)
                for t in (chain[: seps[0]] if len(seps) else chain).tolist():
                    out.append(Candidate(len(out) - 1, t, prob, 1))
                continue
            expand(len(out) - 1, prob, nxt)
        return out


def branches(
    index: SuffixIndex, query: Sequence[int], max_len: int, n_branches: int = 2
) -> list[tuple[list[int], int]]:
    """Up to `n_branches` chains with distinct first tokens, most frequent first, each
    following its most frequent child: [(tokens, match length)].  The shape the
    benchmark's replay policies read (engine/bench/replay.py)."""
    m = index.match(query)
    if m is None:
        return []
    cands = index.speculate(m, max_len * n_branches, min_prob=0.0)
    out: list[tuple[list[int], int]] = []
    for i, c in enumerate(cands):
        if c.parent != -1 or len(out) >= n_branches:
            continue
        chain, j = [c.token], i
        while len(chain) < max_len:
            kids = [k for k in range(j + 1, len(cands)) if cands[k].parent == j]
            if not kids:
                break
            j = kids[0]  # the first child taken is the most frequent
            chain.append(cands[j].token)
        out.append((chain, m.length))
    return out
