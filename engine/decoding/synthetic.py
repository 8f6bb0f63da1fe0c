"""Numpy language models with known distributions.

They implement the same LanguageModel interface as llama.cpp contexts
(engine/llama/lm.py), so drafting, verification and the generation loop can be
checked exactly: the probability of any sequence is computable.  Also used by
fuzzing and by the benchmark's offline replay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

from engine.llama.lm import TIP, ContextFull

LogitsFn = Callable[[tuple[int, ...]], np.ndarray]


def markov_logits(n_vocab: int, seed: int, order: int = 2, scale: float = 2.0) -> LogitsFn:
    """Logits depending on the last `order` tokens, drawn once per context from a
    generator seeded by (seed, context): deterministic and cheap to recompute."""
    cache: dict[tuple[int, ...], np.ndarray] = {}

    def fn(context: tuple[int, ...]) -> np.ndarray:
        key = context[-order:] if order else ()
        row = cache.get(key)
        if row is None:
            digest = hashlib.blake2b(repr((seed, key)).encode(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            row = (rng.standard_normal(n_vocab) * scale).astype(np.float32)
            cache[key] = row
        return row

    return fn


def perturbed(base: LogitsFn, n_vocab: int, seed: int, noise: float) -> LogitsFn:
    """A 'draft' close to `base`: same logits plus context-dependent noise."""
    other = markov_logits(n_vocab, seed, order=2, scale=noise)
    return lambda ctx: base(ctx) + other(ctx)


class SyntheticLM:
    """LanguageModel whose logits are `fn(all tokens so far)`."""

    def __init__(self, fn: LogitsFn, n_vocab: int, n_ctx: int = 4096, eog: Sequence[int] = ()) -> None:
        self.fn = fn
        self.n_vocab = n_vocab
        self.n_ctx = n_ctx
        self.eog_mask = np.zeros(n_vocab, dtype=bool)
        self.eog_mask[list(eog)] = True
        self._tokens: list[int] = []
        self._pending: list[tuple[int, int]] = []
        self.n_decodes = 0
        self.batch_sizes: list[int] = []

    @property
    def tokens(self) -> list[int]:
        return self._tokens

    @property
    def n_pending(self) -> int:
        return len(self._pending)

    def room(self) -> int:
        return self.n_ctx - len(self._tokens) - len(self._pending)

    def pending(self) -> list[tuple[int, int]]:
        return list(self._pending)

    def _path(self, node: int) -> list[int]:
        out = []
        while node != TIP:
            parent, token = self._pending[node]
            out.append(token)
            node = parent
        return out[::-1]

    def decode(self, chain: Sequence[int], parents: Sequence[int] = (), tokens: Sequence[int] = ()) -> np.ndarray:
        if chain and self._pending:
            raise ValueError("commit or discard pending nodes before extending the committed text")
        if len(chain) + len(tokens) > self.room():
            raise ContextFull(f"{len(chain) + len(tokens)} tokens do not fit: {self.room()} cells free")
        self.n_decodes += 1
        self.batch_sizes.append(len(chain) + len(tokens))
        self._tokens.extend(chain)
        rows = []
        if chain:
            rows.append(self.fn(tuple(self._tokens)))
        base = len(self._pending)
        for i, (p, t) in enumerate(zip(parents, tokens, strict=True)):
            if p != TIP and not (0 <= p < base + i):
                raise ValueError(f"node {base + i}: parent {p} is not an earlier node")
            self._pending.append((p, t))
            rows.append(self.fn(tuple(self._tokens) + tuple(self._path(base + i))))
        return np.array(rows, dtype=np.float32).reshape(len(rows), self.n_vocab)

    def commit(self, path: Sequence[int]) -> None:
        expected = TIP
        for node in path:
            if self._pending[node][0] != expected:
                raise ValueError(f"commit path {list(path)} is not a chain from the tip")
            expected = node
        self._tokens.extend(self._pending[n][1] for n in path)
        self._pending.clear()

    def discard(self) -> None:
        self._pending.clear()

    def truncate(self, n: int) -> None:
        self._pending.clear()
        del self._tokens[n:]
