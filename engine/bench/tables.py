"""Markdown for people: one table per category and one for all prompts, the
mismatch report, and how the numbers were measured."""

from __future__ import annotations

import math
from collections.abc import Sequence

from engine.bench.equivalence import MISMATCH, NEAR
from engine.bench.results import RunResult
from engine.bench.summary import ALL, PLAIN, TURN_GROUPS, ArmSummary, best_peers, in_group

COLUMNS = ("arm", "tok/s", "speedup", "τ", "τ bound", "accept", "draft/verify/other %", "overhead ms/step",
           "prefill tok/s", "CPU share", "mismatches")


def _f(x: float | None, fmt: str) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _split(split: tuple[float, float, float] | None) -> str:
    if split is None:
        return "–"
    return "/".join(_f(100 * v if not math.isnan(v) else None, ".0f") for v in split)


def row(s: ArmSummary) -> list[str]:
    if s.tokens_per_s is None:
        reason = s.errors[0] if s.errors else "no run"
        return [s.arm, reason.replace("|", "\\|")[:160], *["–"] * (len(COLUMNS) - 2)]
    mism = str(s.mismatches)
    if s.near_ties:
        mism += f" (+{s.near_ties} near-tie)"
    if s.failed:
        mism += f", {s.failed} crashed"
    return [s.arm, _f(s.tokens_per_s, ".1f"), _f(s.speedup, ".2f") + ("×" if s.speedup else ""),
            _f(s.tau, ".2f"), _f(s.tau_bound, ".2f"),
            _f(100 * s.acceptance if s.acceptance is not None else None, ".0f") +
            ("%" if s.acceptance is not None else ""), _split(s.split), _f(s.overhead_ms_per_step, ".1f"),
            _f(s.prefill_tps, ".0f"), _f(100 * s.cpu_share if s.cpu_share is not None else None, ".0f") +
            ("%" if s.cpu_share is not None else ""), mism]


def table(rows: Sequence[ArmSummary]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(s)) + " |" for s in rows]
    return "\n".join(lines)


def speed_of_light_table(rows: Sequence[ArmSummary]) -> str:
    """All prompts: measured τ against the best-tree bound and the paper's leading
    term (mu + mu2) ln(n + 1) / mu^2, which omits an unpublished O(1)."""
    rows = [s for s in rows if s.tau_bound is not None]
    if not rows:
        return ""
    lines = ["| arm | verified nodes/step | τ | τ bound (best tree) | τ ÷ bound | paper term (no O(1)) |",
             "|---|---|---|---|---|---|"]
    for s in rows:
        share = s.tau / s.tau_bound if s.tau and s.tau_bound else None
        lines.append(f"| {s.arm} | {_f(s.nodes_per_step, '.1f')} | {_f(s.tau, '.2f')} | {_f(s.tau_bound, '.2f')} | "
                     f"{_f(100 * share if share else None, '.0f')}{'%' if share else ''} | "
                     f"{_f(s.tau_paper, '.2f')} |")
    return "\n".join(lines)


def speedup_overview(summary: dict[str, list[ArmSummary]]) -> str:
    """One row per arm, one column per group: speedup over plain in this run."""
    groups = list(summary)
    lines = ["| speedup vs plain | " + " | ".join(groups) + " |", "|---|" + "---|" * len(groups)]
    for s in summary[ALL]:
        if s.arm == PLAIN:
            continue
        cells = []
        for g in groups:
            row = next((x for x in summary[g] if x.arm == s.arm), None)
            cells.append(_f(row.speedup if row else None, ".2f"))
        lines.append(f"| `{s.arm}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def peer_table(summary: dict[str, list[ArmSummary]]) -> str | None:
    """Which llama.cpp peer is fastest per group, and how `auto` compares with the
    best model-free one (None when no peer ran)."""
    rows = best_peers(summary)
    if not any(r.best_peer for r in rows):
        return None

    def arm(s: ArmSummary | None) -> str:
        return f"`{s.arm}` {s.speedup:.2f}×" if s is not None and s.speedup is not None else "–"

    lines = ["| group | best llama.cpp peer | best model-free peer | `auto` | `auto` ÷ best model-free |",
             "|---|---|---|---|---|"]
    for r in rows:
        ratio = r.ours_vs_model_free
        lines.append(f"| {r.group} | {arm(r.best_peer)} | {arm(r.best_model_free)} | {arm(r.ours)} | "
                     f"{_f(ratio, '.2f') + ('×' if ratio is not None else '')} |")
    return "\n".join(lines)


def mismatch_report(runs: Sequence[RunResult]) -> str:
    bad = [r for r in runs if r.check and r.check["status"] in (MISMATCH, NEAR)]
    if not bad:
        return "Every arm's output was token-identical to plain decoding (greedy)."
    lines = []
    for r in bad:
        m = r.check.get("margin")
        margin = f"plain top-2 margin {m:.3f}" if m is not None else "no margin"
        loud = "**MISMATCH**" if r.check["status"] == MISMATCH else "near-tie (within batch noise)"
        lines.append(f"- {loud}: `{r.arm}` on `{r.prompt_id}` at {r.check['detail']} ({margin})")
    return "\n".join(lines)


def crash_report(runs: Sequence[RunResult]) -> str:
    errors: dict[tuple[str, str], list[str]] = {}
    for r in runs:
        if r.error:
            errors.setdefault((r.arm, r.error), []).append(r.prompt_id)
    return "\n".join(f"- `{arm}` {err} (prompts: {', '.join(ids)})" for (arm, err), ids in errors.items())


def results_markdown(summary: dict[str, list[ArmSummary]], runs: Sequence[RunResult], config: dict,
                     machine: dict) -> str:
    parts = [
        "# tandem bench",
        "",
        f"{machine.get('date', '')} · {machine.get('cpu', '')} · {machine.get('threads')} threads · "
        f"suite `{config.get('suite')}` · {config.get('max_tokens')} new tokens · "
        f"{'greedy' if not config.get('temperature') else 'temperature ' + str(config['temperature'])}"
        + (f" · fastest of {config['repeat']} runs per prompt and arm" if config.get("repeat", 1) > 1 else ""),
        "",
        f"Target `{(machine.get('target') or {}).get('name')}`, draft `{(machine.get('draft') or {}).get('name')}`. "
        f"Load average at start / end: {machine.get('load_average_at_start')} / {machine.get('load_average_at_end')} "
        f"({machine.get('logical_cpus')} logical CPUs). Huge pages: {machine.get('huge_pages', 'not recorded')}.",
        "",
        f"Decode cost the engine used (ms by batch size, target/draft): {config.get('cost_summary_ms', '–')}.",
        "",
        "tok/s: generated tokens / generation time (prompt processing excluded; it is the prefill column). "
        "speedup: tok/s ÷ plain decoding's on the same prompts, this run. τ: tokens per target pass. "
        "τ bound (sampling runs): speed of light, the τ of the best tree of as many nodes as the arm verified per "
        "step, on the target's own distributions measured along plain decoding's reply (engine/bench/sol.py; "
        "arXiv 2512.11718), listed with the paper's leading term under 'Speed of light'. "
        "accept: accepted ÷ tested candidates. draft/verify/other: share of generation time. "
        "overhead ms/step: time outside every llama_decode call, per target pass. "
        "CPU share: CPU time the arm got ÷ (wall time × threads); well below 100% means other processes "
        "took the cores and the speed is not trustworthy (llama.cpp threads spin-wait when oversubscribed). "
        "mismatches: outputs that differ from plain decoding beyond a near-tie.",
        "",
    ]
    parts += ["## Speedup over plain decoding", "", speedup_overview(summary), ""]
    if any(g in summary for g in TURN_GROUPS):
        parts += ["Multi-turn questions: \"first turns\" pools every first turn, \"later turns\" every second "
                  "and later turn (its earlier turns answered once by plain greedy decoding, the same history "
                  "for every arm).", ""]
    peers = peer_table(summary)
    if peers:
        parts += ["## llama.cpp peers: the fastest per group", "", peers, ""]
    for group in summary:
        n = len({r.prompt_id for r in runs if in_group(r, group)})
        parts += [f"## {group} ({n} prompt{'s' if n != 1 else ''})", "", table(summary[group]), ""]
    sol = speed_of_light_table(summary[ALL])
    if sol:
        parts += ["## Speed of light (deterministic speculation, arXiv 2512.11718)", "", sol, ""]
    parts += ["## Equivalence with plain decoding", "", mismatch_report(runs), ""]
    crashes = crash_report(runs)
    if crashes:
        parts += ["## Crashed runs", "", crashes, ""]
    return "\n".join(parts)
