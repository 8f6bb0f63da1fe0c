"""How long a decode of n tokens takes on this machine, measured, not assumed.

DESIGN §2: on this CPU verifying 8 tokens costs several single steps, on a GPU
about one, and kernel sizes make the curve uneven (16 tokens cost less than 15
here), so every batch size the engine may verify is measured, never
interpolated from neighbours.  `auto` sizes trees from this curve (Sequoia's
hardware-aware rule, CAST's cost-aware drafting).

One measuring function serves the app, the CLI and the benchmark (`measure`).
It is built for a machine shared with other programs:

* Contention only ever adds time, so the fastest clean sample of each size is
  kept, not the mean.
* A sample is clean when the process got at least MIN_SHARE of (wall time x
  threads) of CPU while it ran: llama.cpp's threads spin-wait at barriers, and
  when another program takes a core whole stretches of a curve come out several
  times too slow (a 1-token decode once cached at 73 ms, really 38 ms).
* A curve with a size that never got a clean sample is marked busy and is never
  cached (`save_cached` refuses it); the session uses it for the moment only.
* A cached curve is checked against the live machine before it is trusted
  (`spot_check`, a second or two) and against the engine's own decode timings
  while it runs (`DriftMonitor`); more than DRIFT off and it is measured again.

Attention reads every cached token, so a decode after 3,000 tokens of context
costs more than after 256 (here +36% for 16 tokens, +15% for one).  The curve is
measured at every size after BASE_CONTEXT tokens and at fewer sizes after longer
contexts; `curve(n, context)` adds the extra cost, linear in the context length.

Over 400 lines on purpose: the curve, how it is measured, how a cached one is trusted
and how live decodes are checked against it share one set of conditions (threads,
contention threshold, context lengths); apart, they would drift out of step.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from engine.llama.lm import TIP, LanguageModel

FORMAT = 2  # cached curves without `conditions` (format 1) were never checked for contention
# Every tree size the engine verifies today (a budget of 16 nodes + the root), and
# longer spans for model-free drafts that copy whole passages.
SIZES = (*range(1, 18), 24, 32, 48, 64)
# After a longer context only the context's extra cost is measured: it is smooth in n.
LONG_SIZES = (1, 2, 4, 8, 16, 17, 32, 64)
BASE_CONTEXT = 256
# Filling a longer context costs a prefill (~10 s for the 1.5B target on 2 cores per
# 1,000 tokens); the extra cost is linear in the context, so one longer point is enough.
CONTEXTS = (BASE_CONTEXT, 1024)
SAMPLES = 3  # clean samples per size at most (2 after longer contexts) ...
AGREE = 0.05  # ... stopping at 2 that agree this closely
MAX_TRIES = 12  # samples per size before giving up on a clean one
BUDGET_S = 90.0  # per model: past it the machine is busy, the rest gets one sample each
MIN_SHARE = 0.7  # clean decodes measured 0.8-0.9 of wall x threads on the 2-core machine
DRIFT = 0.3  # cached figures this far from live timings are measured again
REQUIRED = tuple(range(1, 17))  # a cached curve must cover at least these sizes

Clock = Callable[[], float]


def cpu_time() -> float:
    """CPU seconds of this process (all threads); a module function so tests can
    simulate contention."""
    return time.process_time()


@dataclass
class CostCurve:
    """Seconds for one decode of n tokens.  `sizes`/`seconds` were measured after
    `context` tokens; `longer` holds sparser curves measured after longer
    contexts; `conditions` says how and when it was measured."""

    sizes: list[int]
    seconds: list[float]
    context: int = BASE_CONTEXT
    longer: list[CostCurve] = field(default_factory=list)
    conditions: dict = field(default_factory=dict)
    reference: list[float] | None = None  # a longer curve: the base context's times at its sizes, measured beside it
    _fits: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __call__(self, n: int, context: int | None = None) -> float:
        if n <= 0:
            return 0.0
        t = _interp(n, self.sizes, self.seconds)
        if context is not None and self.longer:
            t += self.extra(n, context)
        return t

    def extra(self, n: int, context: int) -> float:
        """What a decode of n tokens after `context` tokens costs beyond one after
        `self.context`: piecewise linear in the context, extended with the last
        slope (attention work grows linearly with the cached tokens)."""
        if context <= self.context or not self.longer:
            return 0.0
        xs = [self.context] + [c.context for c in self.longer]
        ys = [0.0] + [max(0.0, self._delta(c, n)) for c in self.longer]
        if context <= xs[-1]:
            return float(np.interp(context, xs, ys))
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return ys[-1] + max(0.0, slope) * (context - xs[-1])

    def _delta(self, longer: CostCurve, n: int) -> float:
        """Extra seconds of a decode of n tokens after `longer.context` tokens: a line
        a + b n fitted to the differences at the sizes measured there.  Attention is
        a fixed read of the cache plus work per token, so a line is the physics; the
        fit also averages the noise of single points (the differences are small and
        get extrapolated), and the base curve's kernel bumps (n = 15) stay out."""
        key = id(longer)
        if key not in self._fits:
            xs = np.array(longer.sizes, dtype=np.float64)
            ref = longer.reference or [_interp(k, self.sizes, self.seconds) for k in longer.sizes]
            d = np.array([s - r for s, r in zip(longer.seconds, ref, strict=True)])
            if len(xs) > 1:
                b, a = np.polyfit(xs, d, 1)
            else:
                a, b = 0.0, float(d[0] / xs[0])
            self._fits[key] = (float(a), max(0.0, float(b)))
        a, b = self._fits[key]
        return a + b * n

    @property
    def clean(self) -> bool:
        """Measured without contention (every size got a clean sample)."""
        return bool(self.conditions.get("clean"))

    def to_dict(self) -> dict:
        d = {"sizes": list(self.sizes), "seconds": list(self.seconds), "context": self.context,
             "longer": [c.to_dict() for c in self.longer], "conditions": dict(self.conditions)}
        if self.reference is not None:
            d["reference"] = list(self.reference)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CostCurve:
        sizes, seconds = [int(n) for n in d["sizes"]], [float(s) for s in d["seconds"]]
        if not sizes or len(sizes) != len(seconds) or sizes != sorted(set(sizes)):
            raise ValueError("sizes must be increasing and match seconds")
        ref = [float(r) for r in d["reference"]] if d.get("reference") is not None else None
        if ref is not None and len(ref) != len(sizes):
            raise ValueError("reference must match sizes")
        return cls(sizes, seconds, int(d.get("context", BASE_CONTEXT)),
                   [cls.from_dict(c) for c in d.get("longer") or []], dict(d.get("conditions") or {}), ref)


def _interp(n: int, xs: Sequence[int], ys: Sequence[float]) -> float:
    if n >= xs[-1]:
        # beyond the measured range: extend with the last slope
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) if len(xs) > 1 else ys[-1] / xs[-1]
        return ys[-1] + max(0.0, slope) * (n - xs[-1])
    return float(np.interp(n, xs, ys))


@dataclass
class CostModel:
    target: CostCurve
    draft: CostCurve | None = None

    @property
    def clean(self) -> bool:
        return self.target.clean and (self.draft is None or self.draft.clean)


# ---------------------------------------------------------------- measuring


@dataclass
class _Point:
    best: float
    clean: int
    tries: int
    shares: list[float]


def _filler(lm: LanguageModel, n: int) -> list[int]:
    return [(i * 7919) % max(lm.n_vocab - 1, 1) + 1 for i in range(n)]


def _sample(lm: LanguageModel, n: int, filler: list[int], cpu_clock: Clock) -> tuple[float, float]:
    """(wall, cpu) seconds of one decode of n tokens after len(filler) tokens: a chain
    of n - 1 pending nodes off the tip, the work of a tree of n nodes."""
    cpu0, t0 = cpu_clock(), time.perf_counter()
    lm.decode([filler[-1]], [TIP, *range(n - 2)] if n > 1 else [], [filler[0]] * (n - 1))
    wall, cpu = time.perf_counter() - t0, cpu_clock() - cpu0
    lm.truncate(len(filler) - 1)
    return wall, cpu


def _point(lm: LanguageModel, n: int, filler: list[int], threads: int, samples: int, tries: int,
           min_share: float, cpu_clock: Clock) -> _Point:
    clean: list[float] = []
    every: list[float] = []
    shares: list[float] = []
    for _ in range(tries):
        wall, cpu = _sample(lm, n, filler, cpu_clock)
        every.append(wall)
        share = cpu / (wall * threads) if threads > 0 and wall > 0 else 1.0
        shares.append(share)
        if share >= min_share:
            clean.append(wall)
            a, b = sorted(clean)[:2] if len(clean) > 1 else (clean[0], float("inf"))
            if len(clean) >= samples or b <= (1 + AGREE) * a:
                break
    return _Point(min(clean) if clean else min(every), len(clean), len(every), shares)


def fit_contexts(lm: LanguageModel, contexts: Sequence[int], largest: int) -> list[int]:
    """The contexts that fit this model's context window with room for the largest
    decode; a longer context closer than 1.5x to the previous one adds nothing."""
    room = lm.n_ctx - largest - 2
    out: list[int] = []
    for c in sorted(contexts):
        c = max(8, min(c, room))
        if not out or c >= 1.5 * out[-1]:
            out.append(c)
    return out


def measure(
    lm: LanguageModel,
    threads: int,
    *,
    sizes: Sequence[int] = SIZES,
    long_sizes: Sequence[int] = LONG_SIZES,
    contexts: Sequence[int] = CONTEXTS,
    samples: int = SAMPLES,
    max_tries: int = MAX_TRIES,
    budget_s: float = BUDGET_S,
    min_share: float = MIN_SHARE,
    cpu_clock: Clock | None = None,
    log: Callable[[str], None] | None = None,
) -> CostCurve:
    """The decode-cost curve of `lm` on this machine now.  `threads`: the threads
    llama.cpp runs with (0 where the model runs on a GPU: the CPU share then says
    nothing and every sample counts as clean).  Leaves `lm` empty.

    The smallest context gets every size in `sizes`, each longer one `long_sizes`.
    Once a size got no clean sample in `max_tries`, or the measurement has taken
    `budget_s`, the machine is busy: each remaining size is sampled once, and a
    curve with a size that got no clean sample is marked not clean."""
    started = time.perf_counter()
    cpu_clock = cpu_clock or cpu_time
    sizes = sorted(set(sizes))
    sizes = [n for n in sizes if n <= lm.n_ctx // 4] or sizes[:1]  # tiny test contexts
    long_sizes = [n for n in sorted(set(long_sizes)) if n <= sizes[-1]] or sizes[:1]
    ctxs = fit_contexts(lm, contexts, sizes[-1])
    curves: list[CostCurve] = []
    busy = False
    dirty_points = tries = discarded = 0
    shares: list[float] = []

    def sample_sizes(todo: Sequence[int], filler: list[int], want: int, *, dirty_means_busy: bool) -> list[float]:
        """The best clean time of each size, counting tries and contention as it goes."""
        nonlocal busy, tries, discarded, dirty_points
        best = []
        for n in todo:
            busy = busy or time.perf_counter() - started > budget_s
            p = _point(lm, n, filler, threads, want, 1 if busy else max_tries, min_share, cpu_clock)
            best.append(p.best)
            tries += p.tries
            discarded += p.tries - p.clean
            shares.extend(p.shares)
            if not p.clean:
                dirty_points += 1
                busy = busy or dirty_means_busy
        return best

    lm.truncate(0)
    try:
        for k, context in enumerate(ctxs):
            filler = _filler(lm, context)  # the same tokens at the same positions: extends the last one
            lm.decode(filler[len(lm.tokens):-1])  # the last token stays out: each sample decodes it
            if k == 0:
                for n in (1, sizes[-1], 1):  # warm-up: the first decodes after a load run cold
                    _sample(lm, n, filler, cpu_clock)
            todo = sizes if k == 0 else long_sizes
            want = samples if k == 0 else max(1, samples - 1)
            seconds = sample_sizes(todo, filler, want, dirty_means_busy=True)
            curves.append(CostCurve(list(todo), seconds, context))
        if len(curves) > 1:
            # The base context again at the longer contexts' sizes (truncating is free): a
            # longer context's extra cost is small, so it is taken against times measured
            # right next to it, not against the base curve measured a minute earlier.
            filler = _filler(lm, ctxs[0])
            lm.truncate(ctxs[0] - 1)
            again = sample_sizes(long_sizes, filler, max(1, samples - 1), dirty_means_busy=False)
            for c in curves[1:]:
                c.reference = list(again)
            drift = float(np.median([a / curves[0](n) for n, a in zip(long_sizes, again, strict=True)])) - 1
    finally:
        lm.truncate(0)
    base = curves[0]
    base.longer = curves[1:]
    base.conditions = {
        "format": FORMAT,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "clean": dirty_points == 0,  # a slow machine that ran out of budget is still clean
        "threads": threads,
        "min_share": min_share,
        "samples": samples,
        "contexts": ctxs,
        "tries": tries,
        "discarded": discarded,
        "sizes_without_clean_sample": dirty_points,
        "cpu_share_median": round(statistics.median(shares), 3) if shares else None,
        # how much the base context's times moved between its two measurements
        "base_drift": round(drift, 3) if len(curves) > 1 else None,
        "load_average": _load_average(),
        "seconds_taken": round(time.perf_counter() - started, 2),
    }
    if log is not None and discarded:
        log(f"cost curve: {discarded} of {tries} decodes discarded because other processes took the CPU"
            + ("; the machine stayed busy, so this curve is used now but not cached" if dirty_points else ""))
    return base


def measure_pair(target: LanguageModel, draft: LanguageModel | None, threads: int, *,
                 draft_threads: int | None = None, log: Callable[[str], None] | None = None,
                 **kw: object) -> CostModel:
    return CostModel(measure(target, threads, log=log, **kw),
                     measure(draft, threads if draft_threads is None else draft_threads, log=log, **kw)
                     if draft is not None else None)


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


# ---------------------------------------------------------------- checking


class DriftMonitor:
    """Compares decode timings with a curve.  Live decodes can be slowed by other
    programs but never sped up, so:

    * the curve is too slow when the median decode beats it by more than `drift`
      (no contention explains that: the curve itself was measured while busy);
    * the curve is too fast when even the fast decodes (the 10th percentile) are
      more than `drift` slower than it: sustained contention or a changed machine,
      which a fresh, contention-filtered measurement tells apart."""

    def __init__(self, curve: CostCurve, *, drift: float = DRIFT, window: int = 48, min_samples: int = 24) -> None:
        self.curve = curve
        self.drift = drift
        self.min_samples = min_samples
        self.ratios: deque[float] = deque(maxlen=window)

    def observe(self, n: int, seconds: float, context: int | None = None) -> None:
        expected = self.curve(n, context)
        if expected > 0 and seconds > 0:
            self.ratios.append(seconds / expected)

    def verdict(self) -> str | None:
        """Why the curve no longer describes the machine, or None."""
        if len(self.ratios) < self.min_samples:
            return None
        r = np.array(self.ratios)
        median, low = float(np.median(r)), float(np.quantile(r, 0.1))
        if median < 1 / (1 + self.drift):
            return f"decodes ran in {median:.2f}x the time the cost curve says (median of {len(r)})"
        if low > 1 + self.drift:
            return f"even the fastest decodes took {low:.2f}x the time the cost curve says ({len(r)} decodes)"
        return None


@dataclass
class SpotCheck:
    verdict: str | None  # why the curve disagrees with the machine now; None when it agrees
    clean: int  # clean samples it is based on
    busy: bool  # too few clean samples to judge


def spot_check(
    lm: LanguageModel, curve: CostCurve, threads: int, *, sizes: Sequence[int] = (1, 1, 1, 1, 16, 16, 16),
    context: int = 64, min_share: float = MIN_SHARE, cpu_clock: Clock | None = None, min_clean: int = 4,
) -> SpotCheck:
    """A second of decodes against `curve` (a cached one), contention-filtered.
    Leaves `lm` empty."""
    cpu_clock = cpu_clock or cpu_time
    context = fit_contexts(lm, (context,), max(sizes))[0]
    monitor = DriftMonitor(curve, min_samples=min_clean)
    lm.truncate(0)
    try:
        filler = _filler(lm, context)
        lm.decode(filler[:-1])
        _sample(lm, 1, filler, cpu_clock)  # warm-up
        for n in sizes:
            wall, cpu = _sample(lm, n, filler, cpu_clock)
            if threads <= 0 or cpu >= min_share * wall * threads:
                monitor.observe(n, wall, context)
    finally:
        lm.truncate(0)
    clean = len(monitor.ratios)
    return SpotCheck(monitor.verdict(), clean, clean < min_clean)


# ---------------------------------------------------------------- cache


def cache_key(model_path: Path, backend: str, threads: int, gpu_layers: int) -> str:
    st = model_path.stat()
    text = f"{model_path.name}|{st.st_size}|{backend}|{threads}|{gpu_layers}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / "costs" / f"{key}.json"


def load_cached(cache_dir: Path, key: str) -> CostCurve | None:
    """The cached curve, or None when there is none or it cannot be trusted: an
    older format (measured without the contention filter), measured while busy,
    or missing sizes the engine uses."""
    try:
        curve = CostCurve.from_dict(json.loads(_cache_path(cache_dir, key).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if curve.conditions.get("format") != FORMAT or not curve.clean:
        return None
    if not set(n for n in REQUIRED if n <= curve.sizes[-1]) <= set(curve.sizes):
        return None
    return curve


def save_cached(cache_dir: Path, key: str, curve: CostCurve) -> bool:
    """Cache a clean curve; a curve measured while the machine was busy is refused
    (returns False), so the next session measures again instead of trusting it."""
    if not curve.clean or curve.conditions.get("format") != FORMAT:
        return False
    path = _cache_path(cache_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(curve.to_dict()))
    tmp.replace(path)
    return True


def forget_cached(cache_dir: Path, key: str) -> None:
    _cache_path(cache_dir, key).unlink(missing_ok=True)
