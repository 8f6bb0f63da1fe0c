"""`tandem bench --replay`: ceilings and fixed policies on a trace set, as the
Markdown tables of issue 5 §2 (speedup vs plain, by category)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from engine.bench.oracle import DEFAULT_CEILINGS, Ceiling, ceiling_set
from engine.bench.replay import Policy, SimResult, replay_set
from engine.bench.trace import TraceSet

CURVE_POINTS = (1, 2, 4, 8, 16, 32)


def speedup_rows(results: dict[str, dict[str, SimResult]], cats: Sequence[str]) -> list[str]:
    lines = ["| speedup vs plain | " + " | ".join(cats) + " |", "|---|" + "---|" * len(cats)]
    for name, by_cat in results.items():
        cells = [f"{by_cat[c].speedup:.2f}" if c in by_cat else "–" for c in cats]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def policy_details(results: dict[str, dict[str, SimResult]]) -> list[str]:
    lines = ["| policy (all prompts) | speedup | τ | acceptance | draft share of time |", "|---|---|---|---|---|"]
    for name, by_cat in results.items():
        r = by_cat["all"]
        acc = f"{100 * r.accepted / r.tested:.0f}%" if r.tested else "–"
        lines.append(f"| {name} | {r.speedup:.2f} | {r.tokens / r.steps:.2f} | {acc} | "
                     f"{100 * r.t_draft / r.time:.0f}% |")
    return lines


def run_replay(
    traces: TraceSet, policies: Sequence[Policy], *, ceilings: Sequence[Ceiling] = DEFAULT_CEILINGS,
    overhead: float = 0.0,
) -> tuple[str, dict]:
    cats = [*traces.categories(), "all"]
    start = time.perf_counter()
    ceiling_results = {c.name: ceiling_set(traces, c, overhead) for c in ceilings}
    t_ceil = time.perf_counter() - start
    start = time.perf_counter()
    policy_results = {p.name: replay_set(traces, p, overhead=overhead) for p in policies}
    t_pol = time.perf_counter() - start

    c = traces.costs
    curve = " · ".join(f"{n}: {1e3 * c.target(n):.0f}/{1e3 * c.draft(n):.0f}" for n in CURVE_POINTS)
    measured = [p.plain_tps for p in traces.prompts if p.plain_tps]
    fidelity = ""
    if measured:
        total_tokens = sum(len(p) for p in traces.prompts if p.plain_tps)
        measured_tps = total_tokens / sum(len(p) / p.plain_tps for p in traces.prompts if p.plain_tps)
        fidelity = (f"Plain decoding while recording: {measured_tps:.1f} tok/s; the cost model predicts "
                    f"{1 / (c.target(1) + overhead):.1f} tok/s.")
    n_tokens = sum(len(p) for p in traces.prompts)
    md = [
        "# Replay: where the speed is",
        "",
        f"{len(traces.prompts)} traces, {n_tokens} target tokens; decode cost (ms, target/draft) by batch size: "
        f"{curve}; engine overhead per step charged: {1e3 * overhead:.1f} ms. {fidelity}",
        "",
        "## Ceilings (per-step oracle that knows how many draft / n-gram tokens will be accepted)",
        "",
        *speedup_rows(ceiling_results, cats),
        "",
        "## Fixed policies",
        "",
        *speedup_rows(policy_results, cats),
        "",
        *policy_details(policy_results),
        "",
        f"Replay time: ceilings {t_ceil:.1f} s, {len(policies)} policies {t_pol:.1f} s.",
        "",
    ]
    data = {
        "ceilings": {k: {cat: vars(r) | {"speedup": r.speedup} for cat, r in v.items()}
                     for k, v in ceiling_results.items()},
        "policies": {k: {cat: vars(r) | {"speedup": r.speedup} for cat, r in v.items()}
                     for k, v in policy_results.items()},
        "overhead_s": overhead,
        "seconds": {"ceilings": t_ceil, "policies": t_pol},
    }
    return "\n".join(md), data
