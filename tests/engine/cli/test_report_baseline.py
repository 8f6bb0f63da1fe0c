"""`--stats` prints the speed-up against the live plain estimate and says when it is weak."""

from __future__ import annotations

from engine.cli.report import plain_basis, summary
from engine.decoding.stats import ReplyStats, StepStats


def plain_step(i: int) -> StepStats:
    return StepStats(i, "plain", {}, {}, {}, 1, [], [], 0.0, 0.030, 0.001)


def test_a_plain_reply_prints_one_times_plain_from_its_own_steps() -> None:
    stats = ReplyStats(baseline_tps=5.0)  # a stale start-up figure: not used once steps exist
    for i in range(20):
        stats.add(plain_step(i), ["target"])
    text = summary(stats.snapshot())
    assert "1.00x plain (plain ~32.3 tok/s from 20 plain steps" in text


def test_a_weak_estimate_is_called_uncertain() -> None:
    stats = ReplyStats()
    for i in range(2):
        stats.add(plain_step(i), ["target"])
    assert "uncertain: only 2 steps to estimate from" in plain_basis(stats.snapshot())
