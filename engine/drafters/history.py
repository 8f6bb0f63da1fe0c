"""The user's speculation history: a suffix index over earlier prompts and replies.

People re-ask, paste the same code and ask for revisions of an earlier answer, so
what the engine produced before is the best model-free guess of what it produces
next (SuffixDecoding's global tree, arXiv 2411.04975).  Every reply the engine
finished is added, with the part of its prompt not seen before.

Kept on this computer only, in the user's data directory: an append-only file of
token documents (int32 length, then the tokens), so adding a reply writes only that
reply.  Bounded: the newest `max_docs` documents and `max_bytes` of index in memory;
past either, the oldest tenth is dropped and the file rewritten.  `forget()` empties
it and deletes the file.  Nothing here is ever sent anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.drafters.suffix_tree import SEP, SuffixIndex

MAX_DOCS = 5000
MAX_BYTES = 100 * 1024 * 1024
KEY_LEN = 8  # a history match shorter than this is noise: another conversation's common words
MAX_DEPTH = 64
FILE_NAME = "history.bin"


class SpeculationHistory:
    def __init__(
        self,
        directory: Path | None,
        *,
        max_docs: int = MAX_DOCS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        """`directory=None` keeps the history in memory only (benchmarks, tests)."""
        self.path = directory / FILE_NAME if directory is not None else None
        self.max_docs = max_docs
        self.max_bytes = max_bytes
        self.index = SuffixIndex(key_len=KEY_LEN, max_depth=MAX_DEPTH)
        self.lengths: list[int] = []
        self._load()

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def n_tokens(self) -> int:
        return sum(self.lengths)

    def documents(self) -> list[np.ndarray]:
        """Every document, oldest first (views into the index's buffer)."""
        out, start, toks = [], 0, self.index.tokens
        for n in self.lengths:
            out.append(toks[start : start + n])
            start += n + 1  # the separator
        return out

    # ------------------------------------------------------------------ change

    def add(self, tokens: Sequence[int]) -> None:
        doc = np.asarray(tokens, dtype=np.int32)
        if len(doc) < KEY_LEN + 1:  # nothing a later match could continue into
            return
        self.index.add_document(doc)
        self.lengths.append(len(doc))
        if len(self.lengths) > self.max_docs or self.index.nbytes() > self.max_bytes:
            self._drop_oldest()
            self._rewrite()
        elif self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as f:
                np.concatenate([np.array([len(doc)], dtype=np.int32), doc]).tofile(f)

    def forget(self) -> None:
        """Empty it, here and on disk."""
        self.index.clear()
        self.lengths.clear()
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def _drop_oldest(self) -> None:
        docs = self.documents()
        keep = len(docs)
        # drop a tenth below both bounds at once, so rewrites stay rare
        while keep and (keep > 0.9 * self.max_docs or self._bytes(docs[-keep:]) > 0.9 * self.max_bytes):
            keep -= max(1, keep // 10)
        kept = [d.copy() for d in docs[len(docs) - keep :]] if keep else []
        self.lengths = [len(d) for d in kept]
        self.index.rebuild(kept)

    @staticmethod
    def _bytes(docs: list[np.ndarray]) -> int:
        n = sum(len(d) + 1 for d in docs)
        return 16 * n  # what SuffixIndex.nbytes() counts per token

    # ------------------------------------------------------------------ disk

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            raw = np.fromfile(self.path, dtype=np.int32)
        except (OSError, ValueError):
            raw = np.empty(0, dtype=np.int32)
        docs, i, damaged = [], 0, False
        while i < len(raw):
            n = int(raw[i])
            if n <= 0 or i + 1 + n > len(raw) or (raw[i + 1 : i + 1 + n] < 0).any():
                damaged = True  # a torn last write or a damaged file: keep what came before
                break
            docs.append(raw[i + 1 : i + 1 + n])
            i += 1 + n
        self.lengths = [len(d) for d in docs]
        self.index.rebuild(docs)
        if len(docs) > self.max_docs or self.index.nbytes() > self.max_bytes:
            self._drop_oldest()
            damaged = True
        if damaged:
            self._rewrite()

    def _rewrite(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        parts = []
        for d in self.documents():
            parts += [np.array([len(d)], dtype=np.int32), d]
        (np.concatenate(parts) if parts else np.empty(0, dtype=np.int32)).astype(np.int32).tofile(tmp)
        tmp.replace(self.path)


def new_part(prompt: Sequence[int], previous: Sequence[int]) -> list[int]:
    """The tokens of `prompt` after its longest common prefix with `previous` (the
    last prompt + reply the engine saw): a follow-up turn's new message, or a whole
    new conversation."""
    n, limit = 0, min(len(prompt), len(previous))
    while n < limit and prompt[n] == previous[n]:
        n += 1
    return [int(t) for t in prompt[n:]]




def history_dir(data_dir: Path, target: Path) -> Path:
    """Token ids belong to the target's vocabulary: one history per target file."""
    import hashlib

    st = target.stat()
    key = hashlib.sha256(f"{target.name}:{st.st_size}".encode()).hexdigest()[:16]
    return data_dir / "speculation" / key


def forget_all(data_dir: Path) -> int:
    """Delete every target's speculation history under `data_dir`; how many files went."""
    gone = 0
    for path in (data_dir / "speculation").glob(f"*/{FILE_NAME}"):
        path.unlink(missing_ok=True)
        gone += 1
    return gone


__all__ = ["SEP", "SpeculationHistory", "forget_all", "history_dir", "new_part"]
