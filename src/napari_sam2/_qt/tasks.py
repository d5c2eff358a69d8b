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

Why torch threads are set inside the worker: ``torch.set_flush_denormal`` is a per-thread
CPU flag (MXCSR). napari never sets it, and a random-weight or freshly fine-tuned model
produces denormal floats that slow CPU math 10-20x (see ``docs/plugin.md``, Performance).
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


def _prepare_torch_thread() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_flush_denormal(True)


def _guarded(task: Task, job: Generator[Progress, None, Any]) -> Generator[Progress, None, _Outcome]:
    """Run ``job`` to the end, turning cancel and errors into an :class:`_Outcome`."""
    _prepare_torch_thread()
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
    """

    def __init__(self, *, synchronous: bool = False, progress_bars: bool = True) -> None:
        self.synchronous = synchronous
        self.progress_bars = progress_bars
        self.running: Task | None = None

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

        guarded = _guarded(task, job)
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
        """Block (processing Qt events) until no job runs; for tests and scripts."""
        import time

        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + timeout
        while self.busy:
            if time.monotonic() > end:
                raise TimeoutError(f"{self.running.name if self.running else 'job'} still running after {timeout} s")
            QApplication.processEvents()
            time.sleep(0.002)
        QApplication.processEvents()
