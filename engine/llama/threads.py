"""How many CPU threads llama.cpp should use right now.

llama.cpp's threads meet at a barrier after every operation and OpenMP spins
there.  On an otherwise idle 2-core machine two spinning threads are fastest
(37 tokens/s here, against 26 with one thread).  But a desktop is rarely idle:
when anything else takes a core — the GUI drawing the reply is enough — a
spinning thread waits for a partner that is not running, and plain decoding fell
to 0.3–5 tokens/s in our measurements, while one thread kept 26.  Passive
waiting avoids the collapse but costs a third of the speed on an idle machine.

So the governor watches every target decode against the measured cost curve:
several decodes far slower than the curve predicts mean the machine is busy, and
it drops to one thread; every so often it tries the full count again and keeps
it if decodes are back on the curve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

SLOW_RATIO = 2.5  # a decode this much slower than the curve is contended
SLOW_IN_A_ROW = 3
PROBE_FIRST, PROBE_MAX = 32, 512  # decodes before trying the full count again


class ThreadGovernor:
    def __init__(self, contexts: Sequence, full: int, expected: Callable[[int], float]) -> None:
        self.contexts = [c for c in contexts if c is not None]
        self.full = full
        self.expected = expected  # seconds for a decode of n tokens with `full` threads
        self.current = full
        self._slow = 0
        self._since_drop = 0
        self._probe_every = PROBE_FIRST
        self._probing = False
        self.switches = 0

    def observe(self, n_tokens: int, seconds: float) -> None:
        """Called after each target decode."""
        if self.full <= 1:
            return
        slow = seconds > SLOW_RATIO * self.expected(n_tokens)
        if self.current == self.full:
            if self._probing:
                self._probing = False
                if slow:  # still busy: back to one thread, wait longer before the next try
                    self._probe_every = min(2 * self._probe_every, PROBE_MAX)
                    self._set(1)
                    return
                self._probe_every = PROBE_FIRST
            self._slow = self._slow + 1 if slow else 0
            if self._slow >= SLOW_IN_A_ROW:
                self._set(1)
            return
        self._since_drop += 1
        if self._since_drop >= self._probe_every:
            self._probing = True
            self._set(self.full)

    def _set(self, n: int) -> None:
        for ctx in self.contexts:
            ctx.set_threads(n, n)
        self.current = n
        self._slow = 0
        self._since_drop = 0
        self.switches += 1
