"""Plain decoding's speed under the conditions of this very reply (DESIGN §4).

A baseline measured at start-up and cached goes stale the moment another program
takes the CPU: a reply with speculation off was then shown as "0.38x plain".  So the
speed-up is divided by an estimate taken from the reply's own steps:

* every plain step (nothing proposed, a 1-token target decode) *is* a plain-decoding
  step: its whole time counts.  That includes a drafter's lookup that found nothing
  (under 0.5 ms of a ~30 ms step here), so in `auto` the figure flatters speculation by
  at most ~2%; with speculation off every step is plain and the speed-up is exactly 1;
* with few plain steps, every target decode also says what one token would have
  cost right then: a k-token decode's time scaled by cost(1)/cost(k) from the
  decode-cost curve measured on this machine;
* neither (no curve, no steps yet): the start-up measurement, marked as such.

The estimate is `uncertain` when it rests on few samples, when the machine was busy
(the engine got a small share of the CPU it asked for) or when plain steps varied
widely; the app and the CLI say so instead of drawing conclusions from it.
Running sums only: this is updated on every step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

MIN_PLAIN_STEPS = 8  # plain steps that make the estimate direct
MIN_SAMPLES = 8  # decodes (plain or scaled) below which it is weak
BUSY_CPU_SHARE = 0.75  # of threads x wall time: less means other programs took the cores
WIDE_SPREAD = 0.5  # coefficient of variation of plain step times
MIN_WALL_FOR_SHARE = 0.2  # seconds: a CPU share over less is noise


class PlainEstimate:
    def __init__(self, cost: Callable[[int], float] | None = None, threads: int = 1,
                 startup_tps: float | None = None) -> None:
        self.cost = cost  # seconds for a decode of n tokens, measured at load
        self.threads = max(1, threads)
        self.startup_tps = startup_tps
        self.n_plain = 0
        self.plain_s = 0.0
        self.plain_sq = 0.0
        self.plain_decode_s = 0.0
        self.plain_overhead_s = 0.0
        self.n_scaled = 0
        self.scaled_s = 0.0  # 1-token decode time implied by k-token decodes
        self.min_overhead = math.inf
        self._cpu0: float | None = None
        self._wall0 = 0.0

    def observe(self, n_decoded: int, t_draft: float, t_verify: float, t_overhead: float) -> None:
        """One target pass that decoded `n_decoded` tokens (1 = a plain step)."""
        if self._cpu0 is None:  # CPU share is measured from the end of the first step
            self._cpu0, self._wall0 = time.process_time(), time.perf_counter()
        if n_decoded <= 1:
            step = t_draft + t_verify + t_overhead
            self.n_plain += 1
            self.plain_s += step
            self.plain_sq += step * step
            self.plain_decode_s += t_verify
            self.plain_overhead_s += t_draft + t_overhead
        elif self.cost is not None:
            self.n_scaled += 1
            self.scaled_s += t_verify * self.cost(1) / self.cost(n_decoded)
            # a speculative step's bookkeeping bounds a plain step's from above
            self.min_overhead = min(self.min_overhead, t_overhead)

    def cpu_share(self) -> float | None:
        if self._cpu0 is None:
            return None
        wall = time.perf_counter() - self._wall0
        if wall < MIN_WALL_FOR_SHARE:
            return None
        return min(1.0, (time.process_time() - self._cpu0) / (wall * self.threads))

    def estimate(self) -> dict:
        """{"tps", "source", "plain_steps", "samples", "cpu_share", "uncertain", "why"}."""
        share = self.cpu_share()
        out = {"tps": None, "source": "none", "plain_steps": self.n_plain, "samples": 0,
               "cpu_share": share, "uncertain": True, "why": []}
        why: list[str] = out["why"]
        if self.n_plain >= MIN_PLAIN_STEPS or (self.n_plain and not self.n_scaled):
            step = self.plain_s / self.n_plain
            out.update(tps=1.0 / step if step > 0 else None, source="plain steps", samples=self.n_plain)
            if self.n_plain >= 3:
                var = max(0.0, self.plain_sq / self.n_plain - step * step)
                if math.sqrt(var) > WIDE_SPREAD * step:
                    why.append("plain steps varied widely")
        elif self.n_plain + self.n_scaled:
            n = self.n_plain + self.n_scaled
            if self.n_plain:
                overhead = self.plain_overhead_s / self.n_plain
            else:
                overhead = 0.0 if math.isinf(self.min_overhead) else self.min_overhead
            step = (self.plain_decode_s + self.scaled_s) / n + overhead
            out.update(tps=1.0 / step if step > 0 else None, source="target decodes scaled by the cost curve",
                       samples=n)
        elif self.startup_tps:
            out.update(tps=self.startup_tps, source="start-up measurement")
            why.append("no step of this reply to estimate from yet")
        if out["source"] != "start-up measurement" and out["samples"] < MIN_SAMPLES:
            why.append(f"only {out['samples']} step{'s' if out['samples'] != 1 else ''} to estimate from")
        if share is not None and share < BUSY_CPU_SHARE:
            why.append(f"the computer was busy (the engine got {100 * share:.0f}% of its CPU time)")
        out["uncertain"] = bool(why) or out["tps"] is None
        return out
