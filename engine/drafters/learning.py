"""What a model pair learns about itself while it runs, kept between sessions.

Every candidate a drafter proposed — tested or pruned — is labelled once the
text that actually followed is known: it "would have been accepted" if its path
spells that text.  (Exact for greedy decoding; a close estimate under sampling.)
Labelling pruned candidates too matters: a rate learned only from what was
tested would never recover from a pessimistic start.

* The C2T classifier learns P(accepted) of draft candidates from (joint draft
  probability, parent entropy, depth).
* The n-gram rate table learns P(accepted | parent accepted) per kind of model-free
  candidate (source, effective match length, dominance; successor rank).

Stored per (target, draft) pair in the user data directory.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.decoding.acceptance import NodeClassifier, RateTable, node_features
from engine.decoding.drafter import StepOutcome

PRIOR_WEIGHT = 10.0  # the prior counts as this many observations


def lookup_prior(effective_match: int, branch: int = 0) -> float:
    """P(a prompt-lookup token is accepted | the ones before it were), by effective
    match length.  Fitted to 16 recorded replies of the default pair (2816 tokens):
    0.21, 0.47, 0.58, 0.74, 0.80 for 1..5 matched tokens, ~0.9 from 8, 0.98 from 16;
    the second-best continuation is right about half as often."""
    p = 1.0 - 0.8 * math.exp(-(effective_match - 1) / 3.0)
    return p if branch == 0 else 0.55 * p


MATCH_BUCKETS = (*range(1, 17), 24, 32, 48, 64)


def match_bucket(effective_match: int) -> int:
    """Effective match lengths share a learned rate: each one up to 16, then ranges."""
    for b in MATCH_BUCKETS:
        if effective_match <= b:
            return b
    return MATCH_BUCKETS[-1]


def _beta(p: float) -> tuple[float, float]:
    return PRIOR_WEIGHT * p, PRIOR_WEIGHT * (1.0 - p)


# How often a continuation that all / most / some of the matched occurrences took is
# right, relative to a copy of the only occurrence (a prior; the table learns).
DOMINANCE_PRIOR = {"a": 1.0, "m": 0.75, "s": 0.35}
# A match in another conversation says less than one in this conversation: it is
# trusted like one a few tokens shorter.
HISTORY_SHIFT = 4

# Prior acceptance of model-free candidates as (successes, failures).
NGRAM_PRIOR = {
    **{f"conv:e{e}:{d}": _beta(lookup_prior(e) * f) for e in MATCH_BUCKETS for d, f in DOMINANCE_PRIOR.items()},
    **{f"hist:e{e}:{d}": _beta(lookup_prior(max(1, e - HISTORY_SHIFT)) * f)
       for e in MATCH_BUCKETS for d, f in DOMINANCE_PRIOR.items()},
    # a recycled successor: the target's own earlier top-1 after this token is often
    # right again, its 4th choice rarely
    **{f"recycle:r{r}:d{d}": (1.0, 2.0 + 3 * r) for r in range(8) for d in range(3)},
}
MAX_PENDING = 4000


def pair_key(target: Path, draft: Path | None) -> str:
    def ident(p: Path | None) -> str:
        if p is None:
            return "none"
        return f"{p.name}:{p.stat().st_size}"

    return hashlib.sha256(f"{ident(target)}|{ident(draft)}".encode()).hexdigest()[:16]


class PairKnowledge:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.classifier = NodeClassifier(directory / "c2t.npz" if directory else None)
        self.rates = RateTable(NGRAM_PRIOR, directory / "ngram_rates.json" if directory else None)
        # (start position in the stream, path tokens, features or None, rate key or None)
        self._pending: list[tuple[int, tuple[int, ...], tuple | None, str | None]] = []

    def observe(self, outcome: StepOutcome) -> None:
        full = outcome.tree.full or outcome.tree
        start = len(outcome.stream) - len(outcome.accepted) - 1
        for i, node in enumerate(full.nodes):
            feat = node.info.get("feat")
            key = node.info.get("key")
            if feat is not None or key is not None:
                self._pending.append((start, full.path_tokens(i), feat, key))
        if len(self._pending) > MAX_PENDING:
            del self._pending[: len(self._pending) - MAX_PENDING]
        self.resolve(outcome.stream)

    def resolve(self, stream: Sequence[int]) -> None:
        """Label every pending candidate whose continuation is now known."""
        n = len(stream)
        feats, labels, keep = [], [], []
        for item in self._pending:
            start, path, feat, key = item
            if start + len(path) > n:
                keep.append(item)
                continue
            actual = tuple(stream[start : start + len(path)])
            took = actual == path
            if feat is not None:
                feats.append(feat)
                labels.append(1.0 if took else 0.0)
            if key is not None and actual[:-1] == path[:-1]:
                self.rates.record(key, took)
        self._pending = keep
        if feats:
            f = np.array(feats, dtype=np.float64)
            self.classifier.record(node_features(f[:, 0], f[:, 1], f[:, 2]), np.array(labels))

    def forget_pending(self) -> None:
        """A new reply starts: candidates of the old one can no longer be labelled."""
        self._pending.clear()

    def end_of_reply(self) -> None:
        self.forget_pending()
        self.classifier.maybe_fit()
        self.save()

    def save(self) -> None:
        if self.directory is not None:
            self.classifier.save()
            self.rates.save()
