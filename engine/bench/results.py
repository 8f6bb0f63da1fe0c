"""What one benchmark run (one arm on one prompt) produced, and how arms are named.

An arm is written `kind[:key=value,...]`, e.g. `chain:n_max=3,p_min=0.5` or
`llama.cpp-draft:n_max=16,p_min=0.75`; the whole string is the arm's name in
tables, so several settings of one kind can run side by side.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from engine.errors import TandemError


@dataclass(frozen=True)
class ArmSpec:
    name: str
    kind: str
    params: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> ArmSpec:
        text = text.strip()
        kind, _, rest = text.partition(":")
        params: dict[str, str] = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise TandemError(f"arm {text!r}: expected key=value, got {item!r}")
            params[key.strip()] = value.strip()
        if kind == "off":
            kind = "plain"
        return cls(text if text != "off" else "plain", kind, params)


def children_cpu() -> float:
    """CPU seconds used so far by finished child processes (subprocess arms)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


@dataclass
class RunResult:
    arm: str
    prompt_id: str
    category: str
    prompt_tokens: int = 0  # the whole conversation's, for a later turn
    turn: int = 1  # of a multi-turn question
    tokens: list[int] | None = None  # emitted token ids, where the arm exposes them
    text: str = ""
    n_tokens: int = 0
    # prompt processing, reported apart from generation (both models for speculative arms)
    t_prefill: float | None = None
    prefill_tokens: int | None = None
    # generation
    t_generate: float | None = None
    steps: int | None = None  # target passes
    t_draft: float | None = None
    t_verify: float | None = None
    t_overhead: float | None = None
    t_decode: float | None = None  # time inside llama_decode (target and draft) while generating
    drafted: int | None = None
    tested: int | None = None
    accepted: int | None = None
    margins: list[float] | None = None  # plain arm only: greedy top-2 margin per token
    stats: dict | None = None  # the engine's ReplyStats.snapshot()
    extra: dict = field(default_factory=dict)  # arm specific: command line, parsed peer output, ...
    error: str | None = None  # "crashed: ..." when the arm failed on this prompt
    wall: float = 0.0
    # CPU time the run got / (wall time x threads): far below 1 means other processes
    # took the cores and the timing says little (llama.cpp threads spin-wait).
    cpu_share: float | None = None
    check: dict | None = None  # equivalence with plain decoding (engine.bench.equivalence)

    @property
    def ok(self) -> bool:
        return self.error is None and self.t_generate is not None

    @property
    def tokens_per_s(self) -> float | None:
        return self.n_tokens / self.t_generate if self.ok and self.t_generate else None

    @property
    def overhead_per_step(self) -> float | None:
        """Seconds per target pass spent outside every llama_decode call."""
        if not self.ok or self.t_decode is None or not self.steps:
            return None
        return max(0.0, self.t_generate - self.t_decode) / self.steps

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tokens_per_s"] = self.tokens_per_s
        d["overhead_per_step"] = self.overhead_per_step
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunResult:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})
