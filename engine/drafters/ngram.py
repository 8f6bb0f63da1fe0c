"""Token Recycling (arXiv 2408.08696): the target's own top-k next tokens at every
verified position, kept as successor lists per token, from which branches are
proposed.  These candidates were computed anyway; keeping them costs one top-k per
verified position.

(The prompt-lookup n-gram index that lived here is replaced by the suffix index,
engine/drafters/suffix_tree.py: exact longest matches of any length with counts.)
"""

from __future__ import annotations

import numpy as np

from engine.decoding.sampling import fast_top_k


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
