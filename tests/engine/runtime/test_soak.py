"""A reduced soak in CI (issue 6, item 6); `scripts/soak.py --replies 300` is the full run."""

from __future__ import annotations

import os

import pytest

pytestmark = [pytest.mark.models, pytest.mark.slow]


def test_engine_process_soak(default_pair) -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("soak", Path(__file__).resolve().parents[3] / "scripts" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    replies = int(os.environ.get("TANDEM_SOAK_REPLIES", "42"))
    result = soak.run(replies, 24, str(default_pair[0]), str(default_pair[1]))
    assert result["replies"] == replies
    assert result["rss_growth_after_warmup"] <= 0.10, result
    assert result["fds"][1] <= result["fds"][0], result
    assert result["threads"][1] <= result["threads"][0], result
    assert not result["mismatches"], result
    assert result["greedy_verdicts"].get("identical", 0) + result["greedy_verdicts"].get("near-tie", 0) > 0
