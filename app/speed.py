"""How the window words speed figures, from a reply's statistics.

The engine divides a reply's speed by plain decoding's speed estimated from that
reply's own steps (engine/decoding/baseline.py) and says how far to trust it
(`stats["baseline"]`).  Replies saved before that have only a speed-up against a
start-up measurement that could be stale; those speed-ups are not shown."""

from __future__ import annotations

from typing import Any

SLOW_RATIO = 0.95  # below this fraction of plain speed, say so
MIN_SPECULATIVE_STEPS = 6  # fewer guessing steps than this: too few to blame speculation


def live_estimate(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    est = (stats or {}).get("baseline")
    return est if isinstance(est, dict) and est.get("tps") else None


def speedup(stats: dict[str, Any] | None) -> tuple[float, bool] | None:
    """(speed-up, uncertain), or None when there is no honest figure."""
    est = live_estimate(stats)
    value = (stats or {}).get("speedup")
    if est is None or not value:
        return None
    return float(value), bool(est.get("uncertain"))


def speedup_text(stats: dict[str, Any] | None) -> str:
    got = speedup(stats)
    if got is None:
        return ""
    value, uncertain = got
    return f"{'≈' if uncertain else ''}{value:.2f}×"


def speculative_steps(stats: dict[str, Any]) -> int:
    modes = stats.get("modes") or {}
    return int(stats.get("steps", 0)) - int(modes.get("plain", 0))


def plain_sentence(stats: dict[str, Any] | None) -> str:
    """Where this reply's plain-decoding figure comes from, in words."""
    est = live_estimate(stats)
    if est is None:
        return ""
    if est.get("source") == "plain steps":
        basis = f"from its {est.get('samples', 0)} plain step{'s' if est.get('samples') != 1 else ''}"
    elif est.get("source") == "start-up measurement":
        basis = "as measured when the models loaded (no step of this reply yet)"
    else:
        basis = (f"from its {est.get('samples', 0)} target passes, each scaled to what one plain token "
                 "costs on this computer's measured cost curve")
    text = f"Plain decoding under this reply's conditions: ~{float(est['tps']):.1f} tok/s, estimated {basis}"
    share = est.get("cpu_share")
    why = list(est.get("why") or [])
    busy = any("busy" in w for w in why)
    text += f"; the engine got {100 * float(share):.0f}% of its CPU time." if share is not None and not busy else "."
    if est.get("uncertain"):
        reasons = "; ".join(why) or "too little to go on"
        text += f" Uncertain — {reasons}: the speed-up is a rough figure and no verdict is drawn from it."
    return text


def advice(mode: str) -> str:
    if mode == "auto":
        return ("Auto mode rests (decodes plainly) when its guesses stop paying, so this should pass; "
                "if it keeps happening on this kind of text, switch speculation off on the toolbar.")
    return (f"The {mode} mode keeps guessing even when it does not pay. Auto mode (Settings) decodes plainly "
            "when guessing stops paying, or switch speculation off on the toolbar.")
