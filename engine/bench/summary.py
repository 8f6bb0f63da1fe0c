"""Runs -> one row per (category, arm).

Speeds are pooled (total tokens / total generation time), not averages of
per-prompt ratios, and each arm is compared with plain decoding on exactly the
prompts where both ran, in the same benchmark run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from engine.bench.equivalence import MISMATCH, NEAR
from engine.bench.results import RunResult
from engine.bench.sol import best_tree_tau, paper_term

ALL = "all"
PLAIN = "plain"
FIRST_TURNS, LATER_TURNS = "first turns", "later turns"
TURN_GROUPS = (FIRST_TURNS, LATER_TURNS)
# llama.cpp's own speculation (peer_arm, lookup_arm), and which of it needs no draft model
PEER_SPEC_KINDS = ("llama.cpp-draft", "llama.cpp-ngram", "lcp-lookup")
MODEL_FREE_KINDS = ("llama.cpp-ngram", "lcp-lookup")


@dataclass
class ArmSummary:
    arm: str
    category: str
    runs: int = 0
    failed: int = 0
    tokens: int = 0
    t_generate: float = 0.0
    tokens_per_s: float | None = None
    speedup: float | None = None
    tau: float | None = None
    acceptance: float | None = None
    split: tuple[float, float, float] | None = None  # draft / verify / rest, fractions of generation time
    overhead_ms_per_step: float | None = None  # outside every llama_decode, per target pass
    prefill_tps: float | None = None
    cpu_share: float | None = None  # CPU the runs got / (wall x threads), weighted by generation time
    # speed of light (engine.bench.sol; sampling runs with a plain arm): the best
    # n-node tree's τ on the target's own measured distributions, and the
    # paper's leading term, for n = this arm's verified nodes per step
    tau_bound: float | None = None
    tau_paper: float | None = None
    nodes_per_step: float | None = None
    mismatches: int = 0
    near_ties: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def categories(runs: Sequence[RunResult]) -> list[str]:
    seen: list[str] = []
    for r in runs:
        if r.category not in seen:
            seen.append(r.category)
    return seen


def arms(runs: Sequence[RunResult]) -> list[str]:
    seen: list[str] = []
    for r in runs:
        if r.arm not in seen:
            seen.append(r.arm)
    if PLAIN in seen:  # plain first: the reference row
        seen.remove(PLAIN)
        seen.insert(0, PLAIN)
    return seen


def in_group(r: RunResult, group: str) -> bool:
    """Whether a run counts in a summary group: a category, all, or the first /
    later turns of multi-turn questions."""
    if group == ALL:
        return True
    if group == FIRST_TURNS:
        return r.turn == 1
    if group == LATER_TURNS:
        return r.turn > 1
    return r.category == group


def summarize(runs: Sequence[RunResult]) -> dict[str, list[ArmSummary]]:
    """{category, "all", and with multi-turn questions "first turns" and "later
    turns": [one summary per arm]}, in that order."""
    groups = [*categories(runs), ALL]
    if any(r.turn > 1 for r in runs):
        groups += TURN_GROUPS
    out: dict[str, list[ArmSummary]] = {}
    for group in groups:
        sel = [r for r in runs if in_group(r, group)]
        out[group] = [summarize_arm(arm, group, sel) for arm in arms(runs)]
    return out


def kind(arm: str) -> str:
    return arm.split(":")[0]


@dataclass
class PeerComparison:
    group: str
    best_peer: ArmSummary | None  # llama.cpp's fastest speculation, draft model or not
    best_model_free: ArmSummary | None  # ... without a draft model (n-gram kinds, prompt lookup)
    ours: ArmSummary | None  # Tandem's `auto`

    @property
    def ours_vs_model_free(self) -> float | None:
        if self.ours is None or self.best_model_free is None:
            return None
        return _ratio(self.ours.speedup or 0.0, self.best_model_free.speedup or 0.0)


def best_peers(summary: dict[str, list[ArmSummary]], ours: str = "auto") -> list[PeerComparison]:
    """Per group, the fastest llama.cpp peer (by speedup over plain in the same run)
    beside Tandem's `ours` arm (the arm of that name, else the first of that kind)."""
    out = []
    for group, rows in summary.items():
        ran = [s for s in rows if s.speedup is not None]
        peers = [s for s in ran if kind(s.arm) in PEER_SPEC_KINDS]
        free = [s for s in peers if kind(s.arm) in MODEL_FREE_KINDS]
        mine = [s for s in ran if s.arm == ours] or [s for s in ran if kind(s.arm) == ours]
        out.append(PeerComparison(group, max(peers, key=lambda s: s.speedup, default=None),
                                  max(free, key=lambda s: s.speedup, default=None), mine[0] if mine else None))
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def summarize_arm(arm: str, category: str, runs: Sequence[RunResult]) -> ArmSummary:
    mine = [r for r in runs if r.arm == arm]
    s = ArmSummary(arm, category, runs=len(mine))
    ok = [r for r in mine if r.ok]
    s.failed = len(mine) - len(ok)
    s.errors = sorted({r.error for r in mine if r.error})
    s.mismatches = sum(1 for r in mine if r.check and r.check["status"] == MISMATCH)
    s.near_ties = sum(1 for r in mine if r.check and r.check["status"] == NEAR)
    if not ok:
        return s
    s.tokens = sum(r.n_tokens for r in ok)
    s.t_generate = sum(r.t_generate for r in ok)
    s.tokens_per_s = _ratio(s.tokens, s.t_generate)
    plain = {r.prompt_id: r for r in runs if r.arm == PLAIN and r.ok}
    both = [r for r in ok if r.prompt_id in plain]
    if both:
        mine_tps = _ratio(sum(r.n_tokens for r in both), sum(r.t_generate for r in both))
        ref = [plain[r.prompt_id] for r in both]
        ref_tps = _ratio(sum(r.n_tokens for r in ref), sum(r.t_generate for r in ref))
        if mine_tps and ref_tps:
            s.speedup = mine_tps / ref_tps
    with_steps = [r for r in ok if r.steps]
    if with_steps:
        s.tau = _ratio(sum(r.n_tokens for r in with_steps), sum(r.steps for r in with_steps))
    speed_of_light(s, with_steps, runs)
    tested = [r for r in ok if r.tested]
    if tested:
        s.acceptance = _ratio(sum(r.accepted or 0 for r in tested), sum(r.tested for r in tested))
    timed = [r for r in ok if r.t_verify is not None and r.t_generate]
    if timed:
        total = sum(r.t_generate for r in timed)
        draft = sum(r.t_draft or 0.0 for r in timed)
        verify = sum(r.t_verify for r in timed)
        known_draft = all(r.t_draft is not None for r in timed)
        s.split = (draft / total if known_draft else float("nan"), verify / total,
                   (total - draft - verify) / total if known_draft else float("nan"))
    dec = [r for r in ok if r.overhead_per_step is not None]
    if dec:
        outside = sum(max(0.0, r.t_generate - r.t_decode) for r in dec)
        s.overhead_ms_per_step = 1e3 * outside / sum(r.steps for r in dec)
    shared = [r for r in ok if r.cpu_share is not None]
    if shared:
        s.cpu_share = sum(r.cpu_share * r.t_generate for r in shared) / sum(r.t_generate for r in shared)
    pre = [r for r in ok if r.t_prefill and r.prefill_tokens]
    if pre:
        s.prefill_tps = _ratio(sum(r.prefill_tokens for r in pre), sum(r.t_prefill for r in pre))
    return s


def speed_of_light(s: ArmSummary, mine: Sequence[RunResult], runs: Sequence[RunResult]) -> None:
    """Fill the speed-of-light fields from the plain arm's target statistics on the
    same prompts; each prompt's bound is weighted by this arm's steps on it, as τ is."""
    stats = {r.prompt_id: r.extra["target_stats"] for r in runs
             if r.arm == PLAIN and r.ok and r.extra.get("target_stats")}
    mine = [r for r in mine if r.prompt_id in stats and r.steps]
    if not mine:
        return
    steps = sum(r.steps for r in mine)
    s.nodes_per_step = sum(r.tested or 0 for r in mine) / steps
    bound = 0.0
    for r in mine:
        b = best_tree_tau(stats[r.prompt_id]["top"], (r.tested or 0) / r.steps)
        bound += (b or 1.0) * r.steps
    s.tau_bound = bound / steps
    used = [stats[pid] for pid in dict.fromkeys(r.prompt_id for r in mine)]
    s.tau_paper = paper_term([h for st in used for h in st["entropy"]], [m for st in used for m in st["m2"]],
                             s.nodes_per_step)
