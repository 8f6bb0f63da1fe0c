"""What a model pair learns about itself while it runs, kept between sessions.

The C2T classifier learns from every tested draft node whether the target took
it; the n-gram rate table learns how often each kind of n-gram candidate is
accepted once its parent was.  Stored per (target, draft) pair in the user data
directory, so a second session starts calibrated.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from engine.acceptance import NodeClassifier, RateTable, node_features
from engine.drafters.base import StepOutcome
from engine.tree import ROOT

# Prior acceptance of n-gram candidates (successes, failures): a long prompt-lookup
# match is usually right, a recycled 4th-ranked successor rarely is.
NGRAM_PRIOR = {
    **{f"lookup:m{m}": (1.0 + m, 4.0) for m in range(1, 17)},
    "lookup:cont": (3.0, 2.0),
    **{f"recycle:r{r}": (1.0, 2.0 + 3 * r) for r in range(8)},
}


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

    def observe(self, outcome: StepOutcome) -> None:
        accepted = set(outcome.accepted)
        feats, labels = [], []
        for i, node in enumerate(outcome.tree.nodes):
            took = i in accepted
            feat = node.info.get("feat")
            if feat is not None:
                feats.append(feat)
                labels.append(1.0 if took else 0.0)
            key = node.info.get("key")
            if key is not None and (node.parent == ROOT or node.parent in accepted):
                self.rates.record(key, took)
        if feats:
            f = np.array(feats, dtype=np.float64)
            self.classifier.record(node_features(f[:, 0], f[:, 1], f[:, 2]), np.array(labels))

    def end_of_reply(self) -> None:
        self.classifier.maybe_fit()
        self.save()

    def save(self) -> None:
        if self.directory is not None:
            self.classifier.save()
            self.rates.save()
