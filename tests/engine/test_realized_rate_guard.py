"""auto's check of its own predictions (engine/drafters/staged.py RealizedRateGuard):
whole steps timed, speculation that delivers less than plain decoding is rested."""

from __future__ import annotations

from engine.drafters.staged import JUDGE_AFTER, REST_FIRST, REST_MAX, RealizedRateGuard


def run_steps(guard: RealizedRateGuard, clock: list[float], n: int, *, speculate: bool, tokens: int,
              seconds: float) -> list[bool]:
    """Drive `n` steps the way StagedDrafter does; returns which ones rested."""
    rested = []
    for _ in range(n):
        guard.step_began(clock[0])
        rest = guard.resting()
        rested.append(rest)
        spec = speculate and not rest
        guard.step_ended(spec, tokens if spec else 1)
        clock[0] += seconds if spec else 0.010  # a plain step: 1 token in 10 ms
    return rested


def test_losing_speculation_rests_and_each_losing_probe_doubles_the_rest() -> None:
    guard, clock = RealizedRateGuard(100.0), [0.0]
    run_steps(guard, clock, 5, speculate=False, tokens=1, seconds=0.010)
    assert 95 < guard.plain_rate < 105
    # 1.2 tokens per 20 ms = 60 tok/s < 100 tok/s plain
    rested = run_steps(guard, clock, JUDGE_AFTER + 1 + REST_FIRST, speculate=True, tokens=1, seconds=0.020)
    # the 8th speculative step is judged when the next one begins: that one and 7 more rest
    assert rested[:JUDGE_AFTER] == [False] * JUDGE_AFTER
    assert rested[JUDGE_AFTER:] == [True] * REST_FIRST + [False]
    lengths = []
    for _ in range(6):
        r = run_steps(guard, clock, JUDGE_AFTER + 2 * REST_MAX, speculate=True, tokens=1, seconds=0.020)
        lengths.append(max_run(r))
    assert lengths == sorted(lengths) and lengths[-1] == REST_MAX


def test_winning_speculation_never_rests() -> None:
    guard, clock = RealizedRateGuard(100.0), [0.0]
    # 3 tokens per 20 ms = 150 tok/s > 100 tok/s plain
    rested = run_steps(guard, clock, 200, speculate=True, tokens=3, seconds=0.020)
    assert not any(rested)


def test_a_win_after_resting_resets_the_rest_length() -> None:
    guard, clock = RealizedRateGuard(100.0), [0.0]
    run_steps(guard, clock, 4 * (JUDGE_AFTER + REST_MAX), speculate=True, tokens=1, seconds=0.020)
    assert guard._rest_len > REST_FIRST
    run_steps(guard, clock, 4 * (JUDGE_AFTER + REST_MAX), speculate=True, tokens=4, seconds=0.020)
    assert guard._rest_len == REST_FIRST


def test_the_gap_between_replies_is_not_a_step() -> None:
    guard, clock = RealizedRateGuard(100.0), [0.0]
    run_steps(guard, clock, 3, speculate=False, tokens=1, seconds=0.010)
    before = guard.plain_rate
    guard.reply_began()
    clock[0] += 30.0  # the user reads and types for half a minute
    run_steps(guard, clock, 1, speculate=False, tokens=1, seconds=0.010)
    assert guard.plain_rate == before


def max_run(flags: list[bool]) -> int:
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best
