"""Speedup over plain decoding by category and arm, as a PNG (matplotlib, Agg:
no display needed)."""

from __future__ import annotations

from pathlib import Path

from engine.bench.summary import ALL, PLAIN, ArmSummary


def speedup_chart(summary: dict[str, list[ArmSummary]], path: Path, title: str = "Speedup over plain decoding") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = list(summary)  # categories, all, then first / later turns
    arms = [s.arm for s in summary[ALL] if s.arm != PLAIN]
    width = 0.8 / max(len(arms), 1)
    fig, ax = plt.subplots(figsize=(min(14.0, max(7.0, 0.2 * len(cats) * max(1, len(arms)) + 4)), 4.5))
    colours = plt.get_cmap("tab20").colors  # the default cycle repeats after 10 arms
    for j, arm in enumerate(arms):
        values = []
        for cat in cats:
            s = next((x for x in summary[cat] if x.arm == arm), None)
            values.append(s.speedup if s is not None and s.speedup is not None else 0.0)
        xs = [i + (j - (len(arms) - 1) / 2) * width for i in range(len(cats))]
        label = arm if any(values) else f"{arm} (no result)"
        ax.bar(xs, values, width, label=label, color=colours[j % len(colours)])
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(cats)), cats, rotation=20, ha="right")
    ax.set_ylabel("× plain tokens/s (same run)")
    ax.set_title(title)
    if arms:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
