"""auto's check of its own predictions (engine/drafters/staged.py RealizedRateGuard):
whole steps timed; when active steps deliver less than plain decoding, auto rests."""

from __future__ import annotations

from engine.drafters.staged import JUDGE_AFTER, PLAIN_OVERHEAD_S, REST_FIRST, REST_MAX, RealizedRateGuard

PLAIN_STEP = 0.010  # a rest step: 1 token in 10 ms (100 tok/s)


def run_steps(guard: RealizedRateGuard, clock: list[float], n: int, *, tokens: int, seconds: float,
              plain_step: float = PLAIN_STEP, quiet_decode: float | None = None) -> list[bool]:
    """Drive `n` steps the way StagedDrafter does: an active step yields `tokens` in
    `seconds` (with `quiet_decode`: it verified nothing, and its single-token decode took
    that long), a rest step one token in `plain_step`.  Returns which steps rested."""
    rested = []
    for _ in range(n):
        guard.step_began(clock[0])
        rest = guard.resting()
        rested.append(rest)
        guard.step_ended(rest, 1 if rest else tokens, plain_decode=None if rest else quiet_decode)
        clock[0] += plain_step if rest else seconds
    return rested


def longest_run(flags: list[bool]) -> int:
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best


def test_losing_active_steps_rest_and_each_losing_probe_doubles_the_rest() -> None:
    guard, clock = RealizedRateGuard(100.0), [0.0]
    # 1 token per 20 ms = 50 tok/s < 100 tok/s plain
    rested = run_steps(guard, clock, JUDGE_AFTER + REST_FIRST + 1, tokens=1, seconds=0.020)
    # the 8th active step is judged when the next one begins: that one and 7 more rest
    assert rested == [False] * JUDGE_AFTER + [True] * REST_FIRST + [False]
    assert 99 < guard.plain_rate < 101  # measured on the rest steps
    rests = [longest_run(run_steps(guard, clock, JUDGE_AFTER + 2 * REST_MAX, tokens=1, seconds=0.020))
             for _ in range(6)]
    assert rests == sorted(rests) and rests[0] > REST_FIRST and rests[-1] == REST_MAX


def test_winning_active_steps_never_rest() -> None:
    guard, clock = RealizedRateGuard(100.0), [0.0]
    # 3 tokens per 20 ms = 150 tok/s > 100 tok/s plain
    assert not any(run_steps(guard, clock, 200, tokens=3, seconds=0.020))


def test_a_win_after_resting_resets_the_rest_length() -> None:
    guard, clock = RealizedRateGuard(100.0), [0.0]
    run_steps(guard, clock, 4 * (JUDGE_AFTER + REST_MAX), tokens=1, seconds=0.020)
    assert guard._rest_len > REST_FIRST
    run_steps(guard, clock, 4 * (JUDGE_AFTER + REST_MAX), tokens=4, seconds=0.020)
    assert guard._rest_len == REST_FIRST


def test_bookkeeping_as_slow_as_a_decode_means_resting_almost_always() -> None:
    """The H100 case: a decode 1.8 ms, an active step's Python work 1.5 ms more and
    nothing accepted: auto must end up within a few percent of plain speed."""
    guard, clock = RealizedRateGuard(1 / 0.0018), [0.0]
    rested = run_steps(guard, clock, 2000, tokens=1, seconds=0.0037, plain_step=0.0022)
    tokens_per_s = len(rested) / clock[0]
    assert tokens_per_s > 0.9 / 0.0022, tokens_per_s


def test_the_gap_between_replies_is_not_a_step() -> None:
    guard, clock = RealizedRateGuard(100.0), [0.0]
    run_steps(guard, clock, JUDGE_AFTER + 3, tokens=1, seconds=0.020)  # now resting
    before = guard.plain_rate
    guard.reply_began()
    clock[0] += 30.0  # the user reads and types for half a minute
    run_steps(guard, clock, 1, tokens=1, seconds=0.020)
    assert guard.plain_rate == before


def test_a_new_reply_is_judged_afresh() -> None:
    guard, clock = RealizedRateGuard(100.0), [0.0]
    run_steps(guard, clock, 6 * (JUDGE_AFTER + REST_MAX), tokens=1, seconds=0.020)
    assert guard._rest_len == REST_MAX
    guard.reply_began()
    # text that repeats: speculation pays from the first step of the new reply
    assert not any(run_steps(guard, clock, 50, tokens=3, seconds=0.020))


def test_quiet_steps_on_a_machine_slower_than_the_start_up_curve_do_not_rest() -> None:
    """Seen on revision prompts: the curve said 59 ms a token, the shared machine then
    decoded at 74 ms.  Against the stale figure every stretch of active steps that
    verified nothing (stage bookkeeping 0.4 ms on a 74 ms decode) looked like a loss, and
    auto rested through the copies it exists for.  Plain's rate is measured live."""
    guard, clock = RealizedRateGuard(1 / 0.059), [0.0]
    decode = 0.074
    rested = run_steps(guard, clock, 300, tokens=1, seconds=decode + 0.0004, quiet_decode=decode)
    assert not any(rested)
    assert abs(guard.plain_rate - 1 / (decode + PLAIN_OVERHEAD_S)) < 0.01 * guard.plain_rate


def test_speculation_that_loses_against_the_live_plain_rate_still_rests() -> None:
    guard, clock = RealizedRateGuard(1 / 0.059), [0.0]
    run_steps(guard, clock, 20, tokens=1, seconds=0.0744, quiet_decode=0.074)  # live plain: ~13.5 tok/s
    # speculating steps: 2 tokens per 180 ms = 11 tok/s, a loss
    rested = run_steps(guard, clock, JUDGE_AFTER + REST_FIRST, tokens=2, seconds=0.180)
    assert any(rested)
