"""Predicting whether the target will accept a candidate token.

Tree size, pruning and the decision to speculate at all rest on these
estimates, so they are learned from what the loaded pair actually does:

* `NodeClassifier` — C2T (arXiv 2502.13652): a tiny MLP on (joint draft
  probability along the path, entropy of the draft distribution at the parent,
  depth) trained on this pair's own accept/reject log and persisted per pair.
  Untrained it returns the joint probability, which is what the plain dynamic
  tree ranks by, so it is never worse than `tree` before it has learned.
* `RateTable` — acceptance rates of n-gram candidates by kind and match length,
  with a Beta prior, for the zero-cost stage.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np

MIN_SAMPLES = 400  # below this the untrained default is used
MAX_SAMPLES = 20000
HIDDEN = 48


def node_features(log_joint: np.ndarray, parent_entropy: np.ndarray, depth: np.ndarray) -> np.ndarray:
    return np.stack(
        [np.clip(log_joint, -20.0, 0.0) / 10.0, np.asarray(parent_entropy) / 5.0, np.asarray(depth) / 8.0],
        axis=-1,
    ).astype(np.float64)


class NodeClassifier:
    def __init__(self, path: Path | None = None, seed: int = 0) -> None:
        self.path = path
        self._rng = np.random.default_rng(seed)
        self.w1 = self.b1 = self.w2 = self.b2 = None
        self._x: list[np.ndarray] = []
        self._y: list[float] = []
        self._new = 0
        self._lock = threading.Lock()
        if path is not None and path.exists():
            self._load(path)

    @property
    def trained(self) -> bool:
        return self.w1 is not None

    @property
    def n_samples(self) -> int:
        return len(self._y)

    # -- prediction

    def predict(self, log_joint: np.ndarray, parent_entropy: np.ndarray, depth: np.ndarray) -> np.ndarray:
        log_joint = np.asarray(log_joint, dtype=np.float64)
        if not self.trained:
            return np.exp(np.clip(log_joint, -50.0, 0.0))
        x = node_features(log_joint, parent_entropy, depth)
        h = np.tanh(x @ self.w1 + self.b1)
        z = h @ self.w2 + self.b2
        return 1.0 / (1.0 + np.exp(-z))

    # -- learning

    def record(self, features: np.ndarray, accepted: np.ndarray) -> None:
        with self._lock:
            self._x.extend(np.asarray(features, dtype=np.float64))
            self._y.extend(np.asarray(accepted, dtype=np.float64))
            self._new += len(accepted)
            if len(self._y) > MAX_SAMPLES:
                del self._x[: len(self._y) - MAX_SAMPLES]
                del self._y[: len(self._y) - MAX_SAMPLES]

    def maybe_fit(self, min_new: int = 200) -> bool:
        """Refit when enough new samples arrived (cheap: ~50 ms)."""
        if len(self._y) < MIN_SAMPLES or self._new < min_new:
            return False
        self.fit()
        return True

    def fit(self, epochs: int = 300, lr: float = 0.02) -> None:
        with self._lock:
            x = np.array(self._x)
            y = np.array(self._y)
            self._new = 0
        if len(y) == 0 or y.min() == y.max():
            return
        rng = self._rng
        w1 = rng.standard_normal((x.shape[1], HIDDEN)) * 0.5
        b1 = np.zeros(HIDDEN)
        w2 = rng.standard_normal(HIDDEN) * 0.1
        b2 = np.array(0.0)
        params = [w1, b1, w2, b2]
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        for t in range(1, epochs + 1):
            h = np.tanh(x @ w1 + b1)
            pred = 1.0 / (1.0 + np.exp(-(h @ w2 + b2)))
            g = (pred - y) / len(y)  # d(BCE)/dz
            gw2 = h.T @ g
            gb2 = g.sum()
            gh = np.outer(g, w2) * (1.0 - h * h)
            gw1 = x.T @ gh
            gb1 = gh.sum(axis=0)
            for i, grad in enumerate((gw1, gb1, gw2, gb2)):
                m[i] = 0.9 * m[i] + 0.1 * grad
                v[i] = 0.999 * v[i] + 0.001 * grad * grad
                step = lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
                params[i] -= step
            w1, b1, w2, b2 = params
        self.w1, self.b1, self.w2, self.b2 = w1, b1, w2, float(b2)

    # -- persistence (per model pair)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            data = {"x": np.array(self._x).reshape(-1, 3), "y": np.array(self._y)}
        if self.trained:
            data.update(w1=self.w1, b1=self.b1, w2=self.w2, b2=np.array(self.b2))
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, **data)
        tmp.replace(self.path)

    def _load(self, path: Path) -> None:
        try:
            with np.load(path) as data:
                self._x = list(data["x"])
                self._y = list(data["y"])
                if "w1" in data:
                    self.w1, self.b1, self.w2 = data["w1"], data["b1"], data["w2"]
                    self.b2 = float(data["b2"])
        except (OSError, ValueError, KeyError):
            # A damaged log only costs the learning; start over.
            self._x, self._y = [], []
            self.w1 = None


class RateTable:
    """Beta-smoothed acceptance rates keyed by a short string."""

    def __init__(self, prior: dict[str, tuple[float, float]] | None = None, path: Path | None = None) -> None:
        self.prior = prior or {}
        self.counts: dict[str, list[float]] = {}
        self.path = path
        if path is not None and path.exists():
            try:
                self.counts = {k: list(v) for k, v in json.loads(path.read_text()).items()}
            except (OSError, ValueError):
                self.counts = {}

    def rate(self, key: str, default: tuple[float, float] = (1.0, 3.0)) -> float:
        a0, b0 = self.prior.get(key, default)
        acc, tot = self.counts.get(key, (0.0, 0.0))
        return (a0 + acc) / (a0 + b0 + tot)

    def record(self, key: str, accepted: bool) -> None:
        c = self.counts.setdefault(key, [0.0, 0.0])
        c[0] += 1.0 if accepted else 0.0
        c[1] += 1.0
        if c[1] > 4000:  # forget slowly so the table follows the conversation
            c[0] *= 0.5
            c[1] *= 0.5

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.counts))
            tmp.replace(self.path)
