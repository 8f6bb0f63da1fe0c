"""Decode-cost curves for the benchmark and the replay.

Measuring lives in engine.decoding.costmodel (`measure`, contention-filtered, the
one function the app, the CLI and the benchmark share); here are the reference
curves from DESIGN §2, curves read from files, and a one-line description.
"""

from __future__ import annotations

from engine.decoding.costmodel import CostCurve, CostModel

# DESIGN §2: median ms on the reference machine (2 cores, AVX-512 build, 2 threads)
DESIGN_SIZES = [1, 2, 4, 5, 8, 16, 32, 64]
DESIGN_TARGET_MS = [80, 118, 128, 162, 240, 285, 485, 899]
DESIGN_DRAFT_MS = [41, 54, 66, 94, 106, 161, 275, 494]


def design_costs() -> CostModel:
    return CostModel(CostCurve(DESIGN_SIZES, [m / 1e3 for m in DESIGN_TARGET_MS]),
                     CostCurve(DESIGN_SIZES, [m / 1e3 for m in DESIGN_DRAFT_MS]))


def load_costs(spec: str) -> CostModel:
    """`design` (DESIGN §2's table) or a JSON file {"target": {"sizes": [...], "seconds": [...]}, "draft": {...}}
    (a trace's meta.json "costs" has this shape)."""
    import json
    from pathlib import Path

    from engine.errors import TandemError

    if spec == "design":
        return design_costs()
    try:
        data = json.loads(Path(spec).read_text())
        data = data.get("costs", data)
        return CostModel(CostCurve.from_dict(data["target"]), CostCurve.from_dict(data["draft"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TandemError(f"--costs {spec}: not a cost-curve file ({exc})") from exc


def describe(costs: CostModel, sizes: tuple[int, ...] = (1, 2, 4, 8, 15, 16, 17, 32)) -> str:
    """`1: 38/24 · 2: ...` (ms, target/draft), then what a longer context adds."""
    def ms(curve: CostCurve | None, n: int, context: int | None = None) -> str:
        return f"{1e3 * curve(n, context):.0f}" if curve is not None else "–"

    text = " · ".join(f"{n}: {ms(costs.target, n)}/{ms(costs.draft, n)}" for n in sizes)
    t = costs.target
    contexts = [c.context for c in t.longer]
    if contexts and contexts[-1] < 3000:
        contexts.append(3000)  # extrapolated: the extra cost is linear in the context
    for c in contexts:
        text += (f"; after {c} tokens of context (not {t.context}): "
                 + " · ".join(f"{n}: {ms(costs.target, n, c)}/{ms(costs.draft, n, c)}" for n in (1, 16)))
    if not costs.clean:
        text += " (measured on a busy machine: not cached)"
    return text
