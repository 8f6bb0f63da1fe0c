"""Human-readable statistics and provenance colouring for the terminal."""

from __future__ import annotations

import os
import sys
from typing import TextIO

# target's own token: plain; accepted draft-model token: green; accepted n-gram: cyan
COLOURS = {"target": "", "draft": "\033[32m", "ngram": "\033[36m"}
RESET = "\033[0m"


def use_colour(choice: str, stream: TextIO = sys.stdout) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return stream.isatty()


def coloured(text: str, source: str, colour: bool) -> str:
    code = COLOURS.get(source, "") if colour else ""
    return f"{code}{text}{RESET}" if code else text


def legend(colour: bool) -> str:
    if not colour:
        return ""
    return f"[{coloured('draft model', 'draft', True)} · {coloured('n-gram', 'ngram', True)} · target]"


def plain_basis(stats: dict) -> str:
    """What the speed-up is divided by: plain decoding's speed estimated from this
    reply's own steps (engine/decoding/baseline.py), and whether to trust it."""
    est = stats.get("baseline") or {}
    text = f"plain ~{stats['baseline_tps']:.1f} tok/s"
    if est.get("source") == "start-up measurement":
        text += ", measured at start-up"
    elif est.get("source"):
        text += f" from {est.get('samples', 0)} {'plain steps' if est['source'] == 'plain steps' else 'scaled decodes'}"
    if est.get("cpu_share") is not None:
        text += f", {100 * est['cpu_share']:.0f}% CPU"
    if est.get("uncertain"):
        text += "; uncertain: " + "; ".join(est.get("why") or ["too little to go on"])
    return text


def summary(stats: dict) -> str:
    """One paragraph of the reply's statistics (DESIGN §4 names)."""
    parts = [
        f"{stats['tokens']} tokens in {stats['steps']} target passes",
        f"{stats['tokens_per_s']:.1f} tok/s",
    ]
    if stats.get("speedup") is not None:
        parts.append(f"{stats['speedup']:.2f}x plain ({plain_basis(stats)})")
    parts.append(f"tau {stats['tau']:.2f}")
    if stats.get("acceptance_rate") is not None:
        parts.append(f"acceptance {100 * stats['acceptance_rate']:.0f}%")
    line1 = ", ".join(parts)
    counts = []
    for stage in sorted(set(stats["drafted"]) | set(stats["tested"])):
        counts.append(
            f"{stage}: drafted {stats['drafted'].get(stage, 0)}, tested {stats['tested'].get(stage, 0)}, "
            f"accepted {stats['accepted'].get(stage, 0)}, rejected {stats['rejected'].get(stage, 0)}, "
            f"ignored {stats['ignored'].get(stage, 0)}"
        )
    t = stats["t_draft"] + stats["t_verify"] + stats["t_overhead"]
    split = (
        f"time: prefill {stats['t_prefill']:.2f}s ({stats['prefill_tokens']} tokens), generation {t:.2f}s = "
        f"draft {stats['t_draft']:.2f} + verify {stats['t_verify']:.2f} + overhead {stats['t_overhead']:.2f}"
    )
    if stats.get("draft_model"):
        counts.append(f"draft model: {stats['draft_model']}")
    prov = ", ".join(f"{k} {v}" for k, v in sorted(stats["provenance"].items()))
    depth = " ".join(f"{100 * a:.0f}%" if a is not None else "-" for a in stats["acceptance_by_depth"][:8])
    lines = [line1, *counts, split, f"provenance: {prov}"]
    if depth:
        lines.append(f"acceptance by depth: {depth}")
    if stats.get("modes"):
        lines.append("steps by mode: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["modes"].items())))
    return "\n".join(lines)
