"""Run slow, blocking work (downloads, hashing, GGUF header reads) off the GUI thread.

A Task runs `fn(progress, cancel)` on Qt's global thread pool and reports through
signals, which Qt delivers on the GUI thread (queued connections, because the
Task object lives there).  `progress` has engine.models.provision's Progress signature;
`cancel` is a threading.Event the work polls.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any, ClassVar

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from engine.errors import Cancelled, TandemError

Work = Callable[[Callable[[str, int, int | None, str], None], threading.Event], Any]


class Task(QObject):
    progress = Signal(str, object, object, str)  # stage, done bytes, total bytes or None, message
    succeeded = Signal(object)
    failed = Signal(str, str)  # message, error kind
    cancelled = Signal()
    finished = Signal()  # after any of the three above

    _active: ClassVar[set[Task]] = set()  # keep Python wrappers alive while their work runs

    def __init__(self, fn: Work, name: str = "", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.fn = fn
        self.name = name
        self.cancel_event = threading.Event()
        self.running = False
        self.result: Any = None
        self.error: str | None = None
        # released on the GUI thread once `finished` is delivered there: dropping the last
        # reference on the worker thread would delete a GUI-thread QObject from the wrong thread
        self.finished.connect(self._release)

    def start(self) -> Task:
        self.running = True
        Task._active.add(self)
        QThreadPool.globalInstance().start(_Runnable(self))
        return self

    def cancel(self) -> None:
        self.cancel_event.set()

    def _report(self, stage: str, done: int, total: int | None, message: str) -> None:
        self.progress.emit(stage, done, total, message)

    def _run(self) -> None:
        try:
            result = self.fn(self._report, self.cancel_event)
        except Cancelled:
            self._end(self.cancelled.emit)
        except TandemError as exc:
            message, kind = str(exc), type(exc).__name__
            self.error = message
            self._end(lambda: self.failed.emit(message, kind))
        except Exception as exc:  # a bug in the work: report it, never kill the window
            message, kind = f"{type(exc).__name__}: {exc}", type(exc).__name__
            self.error = message
            traceback.print_exc()
            self._end(lambda: self.failed.emit(message, kind))
        else:
            self.result = result
            self._end(lambda: self.succeeded.emit(result))

    def _end(self, emit: Callable[[], None]) -> None:
        self.running = False
        emit()
        self.finished.emit()

    def _release(self) -> None:
        Task._active.discard(self)


class _Runnable(QRunnable):
    def __init__(self, task: Task) -> None:
        super().__init__()
        self.task = task
        self.setAutoDelete(True)

    def run(self) -> None:
        self.task._run()


def run_task(fn: Work, name: str = "", parent: QObject | None = None) -> Task:
    return Task(fn, name, parent).start()


def wait_all(timeout_ms: int = 5000) -> bool:
    """Cancel and wait for running tasks (at exit, so none outlives the window)."""
    for task in list(Task._active):
        task.cancel()
    return QThreadPool.globalInstance().waitForDone(timeout_ms)
