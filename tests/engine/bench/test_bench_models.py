"""`tandem bench` end to end on the real default pair: a smoke test, no speed
assertions ever (CI machines differ, and timing is not what is tested here)."""

from __future__ import annotations

import json

import pytest

from engine.cli.bench import QUICK_ARMS
from engine.cli.main import main

pytestmark = [pytest.mark.models, pytest.mark.slow]


def test_quick_bench_writes_every_arm(default_pair, tmp_path) -> None:
    out = tmp_path / "bench"
    # --quick, cut down to CI time: 2 prompts of 24 tokens instead of 8 of 128
    rc = main(["bench", "--quick", "--max-prompts", "2", "--max-tokens", "24", "--out", str(out)])
    assert rc == 0, "a Tandem arm changed the target's greedy output (see the Equivalence section)"
    md = (out / "results.md").read_text()
    data = json.loads((out / "results.json").read_text())
    assert (out / "chart.png").read_bytes()[:4] == b"\x89PNG"
    assert data["machine"]["backend"] and data["machine"]["threads"] >= 1
    ran = {r["arm"] for r in data["runs"]}
    assert ran == set(QUICK_ARMS)
    assert len(data["runs"]) == 2 * len(QUICK_ARMS)
    for arm in QUICK_ARMS:
        assert f"| {arm} |" in md
    plain = [r for r in data["runs"] if r["arm"] == "plain"]
    assert all(r["n_tokens"] > 0 and r["margins"] for r in plain)
    # every Tandem arm produced output and was checked against plain decoding
    for r in data["runs"]:
        if r["arm"] not in ("plain", "lcp-lookup"):
            assert r["error"] is None and r["check"]["status"] in ("identical", "near-tie"), r


def test_record_then_replay(default_pair, tmp_path) -> None:
    out = tmp_path / "trace"
    assert main(["bench", "--record", "--prompts", "qa-1", "summarize-1", "--max-tokens", "24",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert sorted(p["id"] for p in meta["prompts"]) == ["qa-1", "summarize-1"]
    assert meta["costs"]["draft"] is not None
    assert "chain + n-gram" in (out / "replay.md").read_text()
    again = tmp_path / "again"
    assert main(["bench", "--replay", str(out), "--out", str(again)]) == 0
    assert (again / "replay.json").is_file()
