"""Statistics of speculation, exactly as DESIGN §4 defines them.

* drafted: candidate tokens produced (any stage); tested: sent to the target;
  ignored: drafted but never tested.  drafted = tested + ignored.
* accepted / rejected: tested candidates on / off the accepted path.
* acceptance rate = accepted / tested.
* tau (mean accepted length) = emitted tokens / target passes, bonus included.
* acceptance by depth d = P(accept at depth d | reached depth d).
* speed: tokens/s of the reply vs plain decoding's, estimated live from this
  reply's own steps (engine/decoding/baseline.py; the start-up measurement only
  until the first step); time split draft / verify / overhead.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields

from engine.decoding.baseline import PlainEstimate

STAGES = ("draft", "ngram")


@dataclass
class StepStats:
    index: int
    mode: str  # what ran this step: "plain", "ngram", "draft", "staged", ...
    drafted: dict[str, int]
    tested: dict[str, int]
    accepted: dict[str, int]
    emitted: int  # tokens emitted this step (accepted + bonus, after stops)
    depth_reached: list[int]  # index d-1: 1 if the walk reached depth d with candidates
    depth_accepted: list[int]
    t_draft: float
    t_verify: float
    t_overhead: float

    @property
    def rejected(self) -> dict[str, int]:
        return {s: self.tested.get(s, 0) - self.accepted.get(s, 0) for s in self.tested}

    @property
    def ignored(self) -> dict[str, int]:
        return {s: self.drafted.get(s, 0) - self.tested.get(s, 0) for s in self.drafted}

    @property
    def n_accepted(self) -> int:
        return sum(self.accepted.values())

    @property
    def n_tested(self) -> int:
        return sum(self.tested.values())

    def to_dict(self) -> dict:
        # every step, for the GUI: a shallow copy, not dataclasses.asdict's deep one
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("drafted", "tested", "accepted", "depth_reached", "depth_accepted"):
            d[key] = d[key].copy()
        d["rejected"] = self.rejected
        d["ignored"] = self.ignored
        return d


@dataclass
class ReplyStats:
    """Running totals for one reply; `snapshot()` is what the GUI and CLI show."""

    baseline_tps: float | None = None  # measured at start-up: a fallback only, see `plain`
    prompt_tokens: int = 0
    draft_model: str | None = None  # the draft model's file when one was loaded for this reply
    prefill_tokens: int = 0  # prompt tokens actually decoded (the rest came from the cache)
    t_prefill: float = 0.0
    drafted: Counter = field(default_factory=Counter)
    tested: Counter = field(default_factory=Counter)
    accepted: Counter = field(default_factory=Counter)
    provenance: Counter = field(default_factory=Counter)
    tokens: int = 0
    steps: int = 0  # target passes
    t_draft: float = 0.0
    t_verify: float = 0.0
    t_overhead: float = 0.0
    depth_reached: list[int] = field(default_factory=list)
    depth_accepted: list[int] = field(default_factory=list)
    accepted_len: list[int] = field(default_factory=list)  # per step, bonus included
    modes: Counter = field(default_factory=Counter)
    plain: PlainEstimate = field(default_factory=PlainEstimate)  # live plain-decoding speed

    def __post_init__(self) -> None:
        if self.plain.startup_tps is None:
            self.plain.startup_tps = self.baseline_tps

    def add(self, step: StepStats, sources: list[str]) -> None:
        self.steps += 1
        self.tokens += step.emitted
        self.drafted.update(step.drafted)
        self.tested.update(step.tested)
        self.accepted.update(step.accepted)
        self.provenance.update(sources)
        self.t_draft += step.t_draft
        self.t_verify += step.t_verify
        self.t_overhead += step.t_overhead
        self.accepted_len.append(step.emitted)
        self.modes[step.mode] += 1
        self.plain.observe(1 + step.n_tested, step.t_draft, step.t_verify, step.t_overhead)
        for d, (r, a) in enumerate(zip(step.depth_reached, step.depth_accepted, strict=True)):
            while len(self.depth_reached) <= d:
                self.depth_reached.append(0)
                self.depth_accepted.append(0)
            self.depth_reached[d] += r
            self.depth_accepted[d] += a

    @property
    def t_generate(self) -> float:
        return self.t_draft + self.t_verify + self.t_overhead

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.t_generate if self.t_generate > 0 else 0.0

    @property
    def tau(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0

    @property
    def acceptance_rate(self) -> float | None:
        tested = sum(self.tested.values())
        return sum(self.accepted.values()) / tested if tested else None

    @property
    def speedup(self) -> float | None:
        return self._speedup(self.plain.estimate())

    def _speedup(self, live: dict) -> float | None:
        if not live["tps"] or not self.tokens:
            return None
        return self.tokens_per_s / live["tps"]

    def acceptance_by_depth(self) -> list[float | None]:
        return [a / r if r else None for r, a in zip(self.depth_reached, self.depth_accepted, strict=True)]

    def snapshot(self, per_step: bool = True) -> dict:
        """Totals so far.  The per-step list of accepted lengths grows with the reply,
        so step events leave it out (`per_step=False`) and only the last snapshot has it."""
        tested = dict(self.tested)
        accepted = dict(self.accepted)
        drafted = dict(self.drafted)
        live = self.plain.estimate()
        return {
            "tokens": self.tokens,
            "steps": self.steps,
            "tokens_per_s": self.tokens_per_s,
            "baseline_tps": live["tps"],  # plain decoding under this reply's conditions
            "baseline": live,  # how that figure was estimated and how much to trust it
            "startup_baseline_tps": self.baseline_tps,
            "speedup": self._speedup(live),
            "tau": self.tau,
            "acceptance_rate": self.acceptance_rate,
            "drafted": drafted,
            "tested": tested,
            "accepted": accepted,
            "rejected": {s: tested.get(s, 0) - accepted.get(s, 0) for s in tested},
            "ignored": {s: drafted.get(s, 0) - tested.get(s, 0) for s in drafted},
            "provenance": dict(self.provenance),
            "t_draft": self.t_draft,
            "t_verify": self.t_verify,
            "t_overhead": self.t_overhead,
            "t_prefill": self.t_prefill,
            "prompt_tokens": self.prompt_tokens,
            "draft_model": self.draft_model,
            "prefill_tokens": self.prefill_tokens,
            "acceptance_by_depth": self.acceptance_by_depth(),
            "accepted_len": list(self.accepted_len) if per_step else [],
            "modes": dict(self.modes),
        }
