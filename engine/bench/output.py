"""Write a benchmark's results: results.md (tables), results.json (every run),
chart.png (speedup by category and arm).  Also reads results.json back, so the
tables and chart can be rebuilt from raw data."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from engine.bench.chart import speedup_chart
from engine.bench.results import RunResult
from engine.bench.summary import summarize
from engine.bench.tables import results_markdown

RESULTS_JSON, RESULTS_MD, CHART = "results.json", "results.md", "chart.png"


def default_out_dir(kind: str = "") -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("bench-results") / (f"{kind}-{stamp}" if kind else stamp)


def write_results(out: Path, runs: Sequence[RunResult], config: dict, machine: dict) -> str:
    """Writes the three files; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(runs)
    md = results_markdown(summary, runs, config, machine)
    (out / RESULTS_MD).write_text(md + f"\n![speedup by category and arm]({CHART})\n", encoding="utf-8")
    data = {
        "config": config,
        "machine": machine,
        "summary": {cat: [s.to_dict() for s in rows] for cat, rows in summary.items()},
        "runs": [r.to_dict() for r in runs],
    }
    (out / RESULTS_JSON).write_text(json.dumps(data, indent=1), encoding="utf-8")
    speedup_chart(summary, out / CHART, title=f"Speedup over plain decoding · {config.get('suite', '')}")
    return md


def read_runs(path: Path) -> tuple[list[RunResult], dict, dict]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [RunResult.from_dict(r) for r in data["runs"]], data["config"], data["machine"]
