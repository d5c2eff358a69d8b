"""Long work (model loading, encoding, propagation, commit) off the UI thread, or inline in tests.

Every long job is a generator that yields progress and returns a result (the stardist
pattern). :class:`TaskRunner` runs it in napari's ``thread_worker`` with a napari progress
bar, or, when ``synchronous`` is set (tests, benchmarks), in the calling thread with the
same callbacks in the same order. Either way:

* ``on_yield(item)`` runs on the main thread for every yielded item (napari delivers
  ``yielded`` through a queued Qt signal);
* the job ends with exactly one of ``on_done(result)``, ``on_cancel()`` or an error
  notification, then ``on_finally()``;
* a job never raises into napari: our :class:`SAM2Error` becomes a one-line warning that says
  what to do, anything else an error notification with the message (the traceback goes to
  the log), never a traceback dialog.

Torch settings are applied inside each job's thread: ``torch.set_flush_denormal`` is a
per-thread CPU flag (MXCSR) that napari never sets (denormal floats from random-weight or
freshly trained models slow CPU math 10-20x), and the intra-op thread count is read per
thread. The widget's default is all cores but one: when torch's OpenMP team takes every core,
each parallel region waits for whichever team thread the OS has descheduled for napari's UI
thread (or any other process), which made one click 100x slower in our measurements
(``docs/plugin.md``, Performance).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ..errors import SAM2Error

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside a job's generator (by :meth:`Task.check`) when the user cancelled."""


@dataclass(frozen=True)
class Progress:
    """What a job yields: ``done`` of ``total`` steps (total 0 = unknown) and an optional payload."""

    done: int
    total: int = 0
    payload: Any = None


@dataclass
class Task:
    """A running job; ``cancel()`` stops it at its next yield."""

    name: str
    _cancel: threading.Event = field(default_factory=threading.Event)
    worker: Any = None
    finished: bool = False

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()


@dataclass(frozen=True)
class _Outcome:
    result: Any = None
    error: BaseException | None = None
    cancelled: bool = False


def set_torch_threads(threads: int | None) -> None:
    """Flush denormals in this thread and use ``threads`` intra-op threads (process-wide).

    Called in the main thread when the setting changes and at the start of every job in its
    worker thread (OpenMP reads the thread count per thread, and napari re-uses worker threads).
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_flush_denormal(True)  # before set_num_threads (see shared ENVIRONMENT notes)
    if threads is not None and threads >= 1:
        torch.set_num_threads(int(threads))


def default_threads() -> int:
    """All cores but one (:func:`napari_sam2.batch.default_threads`): the one left keeps napari's
    UI thread from stalling torch's thread team."""
    from ..batch import default_threads as threads

    return threads()


def _guarded(
    task: Task, job: Generator[Progress, None, Any], threads: int | None
) -> Generator[Progress, None, _Outcome]:
    """Run ``job`` to the end, turning cancel and errors into an :class:`_Outcome`."""
    set_torch_threads(threads)
    try:
        while True:
            if task.cancelled:
                return _Outcome(cancelled=True)
            try:
                item = next(job)
            except StopIteration as stop:
                return _Outcome(result=stop.value)
            yield item
    except Cancelled:
        return _Outcome(cancelled=True)
    except BaseException as exc:  # noqa: BLE001 - reported as a notification, never re-raised
        if not isinstance(exc, SAM2Error):
            log.exception("napari-sam2: %s failed", task.name)
        return _Outcome(error=exc)
    finally:
        job.close()  # e.g. VideoSession.propagate keeps the frames finished so far


def notify(kind: str, message: str) -> None:
    """Show a napari notification (``kind`` is "info", "warning" or "error")."""
    from napari.utils import notifications

    {"info": notifications.show_info, "warning": notifications.show_warning, "error": notifications.show_error}[kind](
        message
    )


def report_error(what: str, exc: BaseException) -> None:
    """One notification for a failed job: what failed and, for our errors, what to do."""
    if isinstance(exc, SAM2Error):
        notify("warning", f"{what}: {exc}")
    else:
        notify("error", f"{what} failed unexpectedly ({type(exc).__name__}: {exc}); details are in the log")


class TaskRunner:
    """Start jobs in napari thread workers (default) or synchronously.

    Arguments:
        synchronous: run jobs inline (tests, scripts); callbacks are the same.
        progress_bars: show a napari progress bar for each job.
        threads: torch intra-op threads for jobs (None: leave torch's setting alone).
    """

    def __init__(self, *, synchronous: bool = False, progress_bars: bool = True, threads: int | None = None) -> None:
        self.synchronous = synchronous
        self.progress_bars = progress_bars
        self.threads = threads
        self.running: Task | None = None
        self._loops: list[Any] = []  # event loops of wait(), quit when a job ends

    @property
    def busy(self) -> bool:
        return self.running is not None and not self.running.finished

    def start(
        self,
        name: str,
        job: Generator[Progress, None, Any],
        *,
        on_yield: Callable[[Progress], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
        on_finally: Callable[[], None] | None = None,
        error_prefix: str | None = None,
    ) -> Task:
        """Run ``job``; see the module docstring for the callback order."""
        task = Task(name)
        self.running = task
        bar = self._progress_bar(name)

        def yielded(item: Progress) -> None:
            if bar is not None:
                if item.total and bar.total != item.total:
                    bar.total = item.total
                bar.n = item.done
                bar.refresh()
            if on_yield is not None:
                on_yield(item)

        def returned(outcome: _Outcome) -> None:
            task.finished = True
            if self.running is task:
                self.running = None
            if bar is not None:
                bar.close()
            try:
                if outcome.error is not None:
                    report_error(error_prefix or name, outcome.error)
                elif outcome.cancelled:
                    if on_cancel is not None:
                        on_cancel()
                elif on_done is not None:
                    on_done(outcome.result)
            except Exception as exc:  # noqa: BLE001 - a bug in a callback: report, don't crash napari
                log.exception("napari-sam2: finishing %s failed", name)
                report_error(error_prefix or name, exc)
            finally:
                if on_finally is not None:
                    on_finally()
                for loop in list(self._loops):
                    loop.quit()

        guarded = _guarded(task, job, self.threads)
        if self.synchronous:
            outcome = self._drain(guarded, yielded)
            returned(outcome)
            return task

        from napari.qt.threading import create_worker

        worker = create_worker(lambda: (yield from guarded), _start_thread=False)
        worker.yielded.connect(yielded)
        worker.returned.connect(returned)
        task.worker = worker
        worker.start()
        return task

    @staticmethod
    def _drain(gen: Generator[Progress, None, _Outcome], yielded: Callable[[Progress], None]) -> _Outcome:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            yielded(item)

    def _progress_bar(self, name: str) -> Any:
        if not self.progress_bars:
            return None
        from napari.utils import progress

        return progress(total=0, desc=name)

    def wait(self, timeout: float = 60.0) -> None:
        """Run the Qt event loop until no job runs (tests and scripts).

        A real event loop, as napari's: a Python loop polling ``processEvents`` competes
        with the worker for the GIL and made propagation 30% slower in our measurements.
        """
        import time

        from qtpy.QtCore import QEventLoop, QTimer
        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + timeout
        while self.busy:
            task = self.running
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{task.name if task else 'job'} still running after {timeout} s")
            loop = QEventLoop()
            self._loops.append(loop)
            QTimer.singleShot(int(left * 1000) + 1, loop.quit)
            if task is not None and not task.finished:
                loop.exec()
            self._loops.remove(loop)
        QApplication.processEvents()
