"""How long a decode of n tokens takes on this machine, measured, not assumed.

DESIGN §2: on this CPU verifying 8 tokens costs several single steps, on a GPU
about one.  `auto` sizes trees from this curve (Sequoia's hardware-aware rule,
CAST's cost-aware drafting).  Measured once per model file, backend, threads and
GPU layers, cached in the user cache directory, re-measured on request.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.llama.lm import TIP, LanguageModel

SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


@dataclass
class CostCurve:
    sizes: list[int]
    seconds: list[float]

    def __call__(self, n: int) -> float:
        if n <= 0:
            return 0.0
        xs, ys = self.sizes, self.seconds
        if n >= xs[-1]:
            # beyond the measured range: extend with the last slope
            slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) if len(xs) > 1 else ys[-1] / xs[-1]
            return ys[-1] + slope * (n - xs[-1])
        return float(np.interp(n, xs, ys))

    def to_dict(self) -> dict:
        return {"sizes": self.sizes, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict) -> CostCurve:
        return cls(list(d["sizes"]), list(d["seconds"]))


@dataclass
class CostModel:
    target: CostCurve
    draft: CostCurve | None = None


def measure(lm: LanguageModel, sizes: tuple[int, ...] = SIZES, repeats: int = 3, context: int = 256) -> CostCurve:
    """Time of one decode of n tokens (a chain off the tip, the same work as a tree
    of n nodes) after `context` tokens of filler.  Leaves `lm` empty.

    The fastest of the repeats, not the median: another process can only ever make
    a decode slower, and one stall must not become the curve every later session
    sizes its trees from."""
    lm.truncate(0)
    context = max(8, min(context, lm.n_ctx - max(sizes) - 2))  # small contexts (tests) still fit
    filler = [(i * 7919) % max(lm.n_vocab - 1, 1) + 1 for i in range(context)]
    lm.decode(filler[:-1])
    seconds = []
    for n in sizes:
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            lm.decode([filler[-1]], [TIP, *range(n - 2)] if n > 1 else [], [filler[0]] * (n - 1))
            runs.append(time.perf_counter() - start)
            lm.truncate(context - 1)
        seconds.append(float(min(runs)))
    lm.truncate(0)
    # Larger batches never really cost less: make the curve non-decreasing.
    seconds = list(np.maximum.accumulate(seconds))
    return CostCurve(list(sizes), seconds)


def cache_key(model_path: Path, backend: str, threads: int, gpu_layers: int) -> str:
    st = model_path.stat()
    text = f"{model_path.name}|{st.st_size}|{backend}|{threads}|{gpu_layers}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def load_cached(cache_dir: Path, key: str) -> CostCurve | None:
    path = cache_dir / "costs" / f"{key}.json"
    try:
        return CostCurve.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError):
        return None


def save_cached(cache_dir: Path, key: str, curve: CostCurve) -> None:
    path = cache_dir / "costs" / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(curve.to_dict()))
