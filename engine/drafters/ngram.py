"""The zero-cost speculation stage: candidates that need no model call.

* `NgramIndex` — prompt lookup with back-off (Saxena's prompt lookup decoding;
  the n-gram stage of staged speculative decoding, Spector & Ré, arXiv
  2308.04623): the longest suffix of the text that occurred before proposes what
  followed it then.  Covers the conversation and everything generated in it.
* `RecyclingTable` — Token Recycling (arXiv 2408.08696): the target's own top-k
  next tokens at every verified position, kept as successor lists per token, from
  which branches are proposed.  These candidates were computed anyway; keeping
  them costs one top-k per verified position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.decoding.sampling import fast_top_k

MAX_N = 4  # longest n-gram indexed
MAX_MATCH = 16  # longest match length measured (confidence saturates)


@dataclass
class Continuation:
    tokens: list[int]
    match_len: int  # how many tokens before the continuation matched the current suffix


class NgramIndex:
    def __init__(self) -> None:
        self.tokens: list[int] = []
        self._index: dict[tuple[int, ...], list[int]] = {}

    def reset(self) -> None:
        self.tokens.clear()
        self._index.clear()

    def sync(self, stream: Sequence[int]) -> None:
        """Follow the token stream; a stream that diverged (edited history) rebuilds."""
        n = len(self.tokens)
        if len(stream) < n or (n and stream[n - 1] != self.tokens[-1]):
            self.reset()
            n = 0
        for t in stream[n:]:
            self._append(int(t))

    def _append(self, token: int) -> None:
        self.tokens.append(token)
        end = len(self.tokens)
        for n in range(1, MAX_N + 1):
            if end - n < 0:
                break
            key = tuple(self.tokens[end - n : end])
            self._index.setdefault(key, []).append(end)

    def continuations(self, max_len: int, branches: int = 2) -> list[Continuation]:
        """Up to `branches` continuations with distinct first tokens, longest
        suffix match first, most recent occurrence first among equals."""
        toks = self.tokens
        end = len(toks)
        found: list[Continuation] = []
        firsts: set[int] = set()
        for n in range(min(MAX_N, end), 0, -1):
            positions = self._index.get(tuple(toks[end - n :]), ())
            for pos in reversed(positions):
                if pos >= end or len(found) >= branches:
                    continue
                first = toks[pos]
                if first in firsts:
                    continue
                m = n
                while m < MAX_MATCH and pos - m - 1 >= 0 and toks[pos - m - 1] == toks[end - m - 1]:
                    m += 1
                found.append(Continuation(toks[pos : pos + max_len], m))
                firsts.add(first)
            if len(found) >= branches:
                break
        return found


class RecyclingTable:
    def __init__(self, k: int = 8) -> None:
        self.k = k
        self.successors: dict[int, np.ndarray] = {}

    def reset(self) -> None:
        self.successors.clear()

    def learn(self, token: int, logits_row: np.ndarray) -> None:
        """`logits_row` is the target's distribution right after `token`."""
        ids, _, _ = fast_top_k(logits_row, self.k)
        self.successors[int(token)] = ids.copy()

    def get(self, token: int) -> np.ndarray | None:
        return self.successors.get(int(token))
