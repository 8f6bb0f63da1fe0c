"""What a user can set, in one place, with the defaults the app starts with.

Plain dataclasses so the CLI, the engine process protocol (JSON) and the GUI's
QSettings all carry the same fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

from engine.errors import TandemError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_k: int = 0  # 0 = whole vocabulary
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


SPEC_MODES = ("off", "chain", "tree", "c2t", "ngram", "staged", "auto")
# How a sampled tree is verified (engine/decoding/verify.py): `traversal` is
# Traversal Verification (arXiv 2505.12398), `token` the top-down SpecInfer /
# Sequoia rule, `auto` traversal wherever the tree holds draws from the draft.
VERIFY_RULES = ("auto", "traversal", "token")
# How several children of one node are drawn from the draft under sampling
# (multi-candidate speculative sampling, arXiv 2401.06706): `without`
# replacement (distinct candidates) or `with` replacement (i.i.d. draws).
DRAW_RULES = ("without", "with")


@dataclass
class SpecSettings:
    mode: str = "auto"
    n_max: int = 16  # chain: most tokens drafted per step
    p_min: float = 0.75  # chain: stop drafting below this draft probability
    budget: int = 16  # most candidate tokens sent to the target per step
    top_k_children: int = 4  # tree: children expanded per node
    beam: int = 4  # tree: nodes expanded per depth (EAGLE-2)
    max_depth: int = 8  # tree: deepest draft level
    verify: str = "auto"  # sampling: verification rule, one of VERIFY_RULES
    draws: str = "without"  # sampling: tree children drawn with or without replacement (DRAW_RULES)

    def __post_init__(self) -> None:
        if self.mode not in SPEC_MODES:
            raise TandemError(f"unknown speculation mode {self.mode!r}; choose one of {', '.join(SPEC_MODES)}")
        if self.verify not in VERIFY_RULES:
            raise TandemError(f"unknown verification rule {self.verify!r}; choose one of {', '.join(VERIFY_RULES)}")
        if self.draws not in DRAW_RULES:
            raise TandemError(f"draws must be one of {', '.join(DRAW_RULES)}, not {self.draws!r}")
        if self.n_max < 1 or self.budget < 1 or self.top_k_children < 1 or self.beam < 1 or self.max_depth < 1:
            raise TandemError("n_max, budget, top_k_children, beam and max_depth must be at least 1")
        if not 0.0 <= self.p_min <= 1.0:
            raise TandemError(f"p_min must be between 0 and 1, not {self.p_min}")

    @property
    def uses_draft_model(self) -> bool:
        return self.mode in ("chain", "tree", "c2t", "staged", "auto")


@dataclass
class GenerationSettings:
    max_tokens: int = 512
    temperature: float = 0.0
    top_k: int = 40
    top_p: float = 0.95
    seed: int | None = None
    spec: SpecSettings = field(default_factory=SpecSettings)

    def __post_init__(self) -> None:
        if isinstance(self.spec, dict):
            self.spec = SpecSettings(**self.spec)
        if self.max_tokens < 1:
            raise TandemError("max_tokens must be at least 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise TandemError("temperature >= 0, 0 < top_p <= 1 and top_k >= 0 are required")

    @property
    def sampling(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_k, self.top_p, self.seed)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GenerationSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class LoadSettings:
    target: str
    draft: str | None = None
    n_ctx: int = 4096
    threads: int | None = None  # None: physical cores
    gpu_layers: int = 0
    draft_gpu_layers: int = 0
    # ggml RPC servers ("host:port") that hold the target's layers; the draft stays here
    rpc: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LoadSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
