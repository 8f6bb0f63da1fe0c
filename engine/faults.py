"""Fault injection for the reliability tests (issue 6).  Inert unless TANDEM_FAULT is set.

The crash-isolation tests must SIGKILL the engine process in a precise phase (while it
loads a model, while it drafts, while the target verifies); timing a kill from outside
cannot land there reliably on a busy machine.  engine/runtime/server.py and engine/decoding/generate.py
call `point(phase)` at those places; with TANDEM_FAULT unset the call is one dictionary
lookup on an empty dict.

    TANDEM_FAULT="<phase>[@<n>]:<action>[,<phase>[@<n>]:<action>...]"

    phase    load      the engine process starts a "load" request (the window shows "loading")
             generate  it starts a "generate" request (before the prompt is read)
             measure   it starts a "measure" request
             draft     a generation step starts drafting        } counted only inside "generate"
             verify    a generation step starts the target pass } requests, not the load's
                                                                  baseline measurement
    @n       only the n-th time the phase is reached in this process (1-based);
             without it, every time
    action   kill      SIGKILL this process right there
             kill=S    SIGKILL it S seconds later from a timer thread, so the kill lands
                       inside the phase's native work (llama_decode, model loading)
             sleep=S   pause S seconds there: slows streaming to a human pace, or holds the
                       process in the phase while a test kills it from outside

A kill, and any fault with @n, is announced on stderr first ("[tandem-fault] verify#3
kill"); the GUI keeps the engine's last stderr lines in its crash details, which is how a
test checks where the kill landed.  The variable is read once, when this module is
imported: set it in the environment of the engine process you start.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

ENV = "TANDEM_FAULT"
PHASES = ("load", "generate", "measure", "draft", "verify")
STEP_PHASES = ("draft", "verify")  # counted only while a "generate" request runs
ANNOUNCE = "[tandem-fault]"


@dataclass(frozen=True)
class Fault:
    phase: str
    nth: int | None  # None: every time
    action: str  # "kill" or "sleep"
    seconds: float = 0.0


def parse(spec: str) -> dict[str, list[Fault]]:
    """TANDEM_FAULT's value -> faults by phase.  A malformed value is an error at once:
    a test that thinks it injects a fault must not silently run without one."""
    faults: dict[str, list[Fault]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        where, sep, action = item.partition(":")
        phase, _, nth_text = where.partition("@")
        name, _, value = action.partition("=")
        if not sep or phase not in PHASES or name not in ("kill", "sleep") or (name == "sleep" and not value):
            raise ValueError(f"{ENV}: cannot read {item!r} (phase@n:kill, phase@n:kill=S or phase@n:sleep=S; "
                             f"phases: {', '.join(PHASES)})")
        nth = int(nth_text) if nth_text else None
        if nth is not None and nth < 1:
            raise ValueError(f"{ENV}: occurrences count from 1 in {item!r}")
        faults.setdefault(phase, []).append(Fault(phase, nth, name, float(value) if value else 0.0))
    return faults


_faults: dict[str, list[Fault]] = parse(os.environ.get(ENV, ""))
_counts: dict[str, int] = {}
_current_op = ""
_lock = threading.Lock()


def configure(spec: str) -> None:
    """Replace the faults of this process (in-process tests; the engine reads the env)."""
    global _faults, _current_op
    with _lock:
        _faults = parse(spec)
        _counts.clear()
        _current_op = ""


def active() -> bool:
    return bool(_faults)


def point(phase: str) -> None:
    """The engine reached `phase`: act on a matching fault, if any."""
    global _current_op
    if not _faults:
        return
    with _lock:
        if phase in STEP_PHASES:
            if _current_op != "generate":
                return
        else:
            _current_op = phase  # server requests run one at a time on the worker thread
        n = _counts[phase] = _counts.get(phase, 0) + 1
        due = [f for f in _faults.get(phase, ()) if f.nth is None or f.nth == n]
    for fault in due:
        if fault.action == "kill" or fault.nth is not None:
            what = f"{fault.action}={fault.seconds:g}" if fault.seconds else fault.action
            print(f"{ANNOUNCE} {phase}#{n} {what}", file=sys.stderr, flush=True)
        if fault.action == "sleep":
            time.sleep(fault.seconds)
        elif fault.seconds > 0:
            timer = threading.Timer(fault.seconds, _kill)
            timer.daemon = True
            timer.start()
        else:
            _kill()


def _kill() -> None:
    # SIGKILL: no cleanup, no flushing, exactly what the OOM killer or a crash in native code does
    kill_signal = getattr(signal, "SIGKILL", None)
    if kill_signal is None:  # Windows
        os._exit(137)
    os.kill(os.getpid(), kill_signal)
