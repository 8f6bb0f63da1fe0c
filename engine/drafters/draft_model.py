"""The draft model's KV cache, kept in step with the accepted text.

Each step begins with `sync`: the accepted tokens the draft has not seen (the
bonus token, accepted n-gram tokens, the prompt on the first step) are decoded
in one batch, together with any nodes the caller wants evaluated right away.
After verification `settle` keeps the draft's own nodes that were accepted, so
they are not decoded twice.  The prompt is never re-processed: only a divergence
(a new conversation, an edited message) truncates the cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.llama.lm import TIP, LanguageModel, cached_path


class DraftModel:
    def __init__(self, lm: LanguageModel, eog_mask: np.ndarray) -> None:
        self.lm = lm
        self.eog_mask = eog_mask
        self.decodes = 0  # draft llama_decode calls (statistics)

    def sync(
        self, stream: Sequence[int], parents: Sequence[int] = (), tokens: Sequence[int] = ()
    ) -> np.ndarray:
        """Bring the committed text to `stream` and evaluate the given nodes (hanging
        off the root, stream[-1]).  Returns rows [root, node 0, ...]."""
        lm = self.lm
        lm.discard()
        have = lm.tokens
        n = 0
        limit = min(len(have), len(stream) - 1)
        while n < limit and have[n] == stream[n]:
            n += 1
        if n < len(have):
            lm.truncate(n)
        self.decodes += 1
        return lm.decode(list(stream[n:]), parents, tokens)

    def prefill(self, tokens: Sequence[int]) -> None:
        """Bring the cache to `tokens` (the prompt minus its last token) before the
        first step, so prompt processing is not counted as drafting time."""
        lm = self.lm
        lm.discard()
        have = lm.tokens
        n = 0
        while n < min(len(have), len(tokens)) and have[n] == tokens[n]:
            n += 1
        lm.truncate(n)
        if len(tokens) > n:
            lm.decode(list(tokens[n:]))

    def expand(self, parents: Sequence[int], tokens: Sequence[int]) -> np.ndarray:
        """Evaluate more nodes; parents are draft-cache node ids or TIP (the root)."""
        self.decodes += 1
        return self.lm.decode([], parents, tokens)

    def settle(self, accepted_tokens: Sequence[int]) -> None:
        """Keep the longest cached chain of accepted tokens; drop the other nodes."""
        self.lm.commit(cached_path(self.lm, accepted_tokens))

    def room(self) -> int:
        return self.lm.room()


__all__ = ["TIP", "DraftModel"]
