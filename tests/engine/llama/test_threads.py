"""The thread governor drops to one thread when decodes show a busy machine, and
returns to the full count once they are back on the measured curve."""

from __future__ import annotations

from engine.llama.threads import PROBE_FIRST, SLOW_IN_A_ROW, ThreadGovernor


class FakeContext:
    def __init__(self) -> None:
        self.threads = 2

    def set_threads(self, n: int, n_batch: int) -> None:
        self.threads = n


def test_busy_machine_drops_to_one_thread_and_recovers() -> None:
    target, draft = FakeContext(), FakeContext()
    gov = ThreadGovernor([target, draft, None], 2, lambda n: 0.025)
    for _ in range(10):
        gov.observe(1, 0.026)  # on the curve
    assert target.threads == 2
    for _ in range(SLOW_IN_A_ROW):
        gov.observe(1, 0.5)  # 20x the curve: another process has a core
    assert target.threads == draft.threads == 1
    for _ in range(PROBE_FIRST):
        gov.observe(1, 0.04)
    assert target.threads == 2  # probing the full count again
    gov.observe(1, 0.5)  # still busy
    assert target.threads == 1
    for _ in range(2 * PROBE_FIRST):
        gov.observe(1, 0.04)
    assert target.threads == 2
    gov.observe(1, 0.025)  # quiet again: keep it
    for _ in range(5):
        gov.observe(1, 0.026)
    assert target.threads == 2


def test_a_single_slow_decode_is_not_a_busy_machine() -> None:
    ctx = FakeContext()
    gov = ThreadGovernor([ctx], 2, lambda n: 0.02 * n)
    for _ in range(20):
        gov.observe(4, 0.5)  # slow
        gov.observe(4, 0.08)  # fine
    assert ctx.threads == 2 and gov.switches == 0
