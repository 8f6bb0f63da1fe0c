"""Decode-cost curves for the replay, measured so that a busy machine does not
poison them.

engine.decoding.costmodel.measure takes the median of 3 decodes per size.  When other
processes hold the cores, llama.cpp's threads (which spin-wait) lose their
time slices and whole stretches of the curve come out several times too slow;
on the shared 2-core reference machine we saw 3-token draft decodes "cost"
2.7 s.  Here every sample also records the CPU time the process got: a decode
that got less than MIN_SHARE of (wall time x threads) was descheduled and is
measured again (up to MAX_TRIES), and the fastest clean sample per size is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from engine.decoding.costmodel import SIZES, CostCurve, CostModel
from engine.llama.lm import TIP

MIN_SHARE = 0.7  # clean decodes measured 0.8-0.9 here (the main thread also works alone)
SAMPLES = 3
MAX_TRIES = 15
CONTEXT = 256


def robust_curve(lm, threads: int, sizes: tuple[int, ...] = SIZES, log: Callable[[str], None] = print) -> CostCurve:
    """Fastest of SAMPLES clean decodes of n tokens after CONTEXT tokens of filler
    (the work of a tree of n nodes, as engine.decoding.costmodel.measure).  Leaves `lm` empty."""
    lm.truncate(0)
    filler = [(i * 7919) % max(lm.n_vocab - 1, 1) + 1 for i in range(CONTEXT)]
    lm.decode(filler[:-1])
    seconds = []
    dirty = 0
    for n in sizes:
        clean: list[float] = []
        every: list[float] = []
        for _ in range(MAX_TRIES):
            cpu0, t0 = time.process_time(), time.perf_counter()
            lm.decode([filler[-1]], [TIP, *range(n - 2)] if n > 1 else [], [filler[0]] * (n - 1))
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            lm.truncate(CONTEXT - 1)
            every.append(wall)
            if cpu >= MIN_SHARE * wall * threads:
                clean.append(wall)
                if len(clean) >= SAMPLES:
                    break
        dirty += len(every) - len(clean)
        seconds.append(min(clean) if clean else min(every))  # contention only ever adds time
        if not clean:
            log(f"cost curve: no clean sample at {n} tokens (machine busy); using the fastest of {len(every)}")
    lm.truncate(0)
    if dirty:
        log(f"cost curve: {dirty} decodes discarded because other processes took the CPU")
    return CostCurve(list(sizes), list(np.maximum.accumulate(seconds)))


def robust_costs(engine, log: Callable[[str], None] = print) -> CostModel:
    target = robust_curve(engine.target, engine.threads, log=log)
    draft = robust_curve(engine.draft, engine.threads, log=log) if engine.draft is not None else None
    costs = CostModel(target, draft)
    log("decode cost (ms, target/draft): " + describe(costs))
    return costs


# DESIGN §2: median ms on the reference machine (2 cores, AVX-512 build, 2 threads)
DESIGN_SIZES = [1, 2, 4, 5, 8, 16, 32, 64]
DESIGN_TARGET_MS = [80, 118, 128, 162, 240, 285, 485, 899]
DESIGN_DRAFT_MS = [41, 54, 66, 94, 106, 161, 275, 494]


def design_costs() -> CostModel:
    return CostModel(CostCurve(DESIGN_SIZES, [m / 1e3 for m in DESIGN_TARGET_MS]),
                     CostCurve(DESIGN_SIZES, [m / 1e3 for m in DESIGN_DRAFT_MS]))


def load_costs(spec: str) -> CostModel:
    """`design` (DESIGN §2's table) or a JSON file {"target": {"sizes": [...], "seconds": [...]}, "draft": {...}}
    (a trace's meta.json "costs" has this shape)."""
    import json
    from pathlib import Path

    from engine.errors import TandemError

    if spec == "design":
        return design_costs()
    try:
        data = json.loads(Path(spec).read_text())
        data = data.get("costs", data)
        return CostModel(CostCurve.from_dict(data["target"]), CostCurve.from_dict(data["draft"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TandemError(f"--costs {spec}: not a cost-curve file ({exc})") from exc


def describe(costs: CostModel, sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32)) -> str:
    def ms(curve: CostCurve | None, n: int) -> str:
        return f"{1e3 * curve(n):.0f}" if curve is not None else "–"

    return " · ".join(f"{n}: {ms(costs.target, n)}/{ms(costs.draft, n)}" for n in sizes)
