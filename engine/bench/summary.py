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


def summarize(runs: Sequence[RunResult]) -> dict[str, list[ArmSummary]]:
    """{category (and "all"): [one summary per arm]}."""
    out: dict[str, list[ArmSummary]] = {}
    for cat in [*categories(runs), ALL]:
        sel = [r for r in runs if cat == ALL or r.category == cat]
        out[cat] = [summarize_arm(arm, cat, sel) for arm in arms(runs)]
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
