"""Long work (model loading, encoding, propagation, commit) off the UI thread, or inline in tests.

Every long job is a generator that yields progress and returns a result (the stardist
pattern). :class:`TaskRunner` runs it in napari's ``thread_worker``, or, when ``synchronous``
is set (tests, benchmarks), in the calling thread with the same callbacks in the same order.
Either way:

* ``on_yield(item)`` runs on the main thread for every yielded item (napari delivers
  ``yielded`` through a queued Qt signal);
* the job ends with exactly one of ``on_done(result)``, ``on_cancel()`` or an error
  notification, then ``on_finally()``;
* a job never raises into napari: our :class:`SAM2Error` becomes a one-line warning that says
  what to do, anything else an error notification with the message (the traceback goes to
  the log), never a traceback dialog;
* the runner's ``listeners`` see the :class:`Task` when it starts, after each step and when
  it ends: the dock widget draws its own progress bar from them.

No napari ``progress`` is ever made: it starts the animated "activity" spinner in napari's
status bar, and in a window with an OpenGL canvas every frame of that animation recomposes
the whole window. Through software OpenGL (no GPU: remote desktops, VNC, HPC portals) that
made propagation 3.5-10x slower than the engine (issue 22). The dock's bar is redrawn at most
a few times a second (``SAM2Widget``).

After :meth:`TaskRunner.close` (the dock is gone, e.g. the viewer was closed) the running
job is cancelled and none of its callbacks run any more, except the task's ``cleanups``.

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
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ..errors import SAM2Error
from ..progress import Progress
from ..runtime import configure_torch

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside a job's generator (by :meth:`Task.check`) when the user cancelled."""


@dataclass(frozen=True)
class JobText:
    """How the dock's progress line names a job's steps.

    ``doing`` while it runs ("propagating both"), ``did`` once done ("propagated"), ``unit``
    the name of one step ("slice"), ``extra`` anything else worth saying ("2 objects").
    """

    doing: str
    did: str
    unit: str = "step"
    extra: str = ""


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "less than a second"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


@dataclass
class Task:
    """A running job; ``cancel()`` stops it at its next yield.

    ``done`` of ``total`` steps so far, ``state`` "running", "done", "cancelled" or "failed";
    ``cleanups`` run when the job has ended, whatever the outcome (even after the runner closed).
    """

    name: str
    text: JobText | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)
    worker: Any = None
    finished: bool = False
    done: int = 0
    total: int = 0
    state: str = "running"
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def seconds_left(self) -> float | None:
        """Time left, from the mean time per step so far (None before the first step)."""
        if not self.total or self.done < 1 or self.finished:
            return None
        per_step = (time.monotonic() - self.started) / self.done
        return per_step * max(0, self.total - self.done)

    def describe(self) -> str:
        """The dock's progress line: "propagating both: slice 3 of 7 · 2 objects · about 4 s left"."""
        text = self.text or JobText(doing=self.name.removeprefix("SAM 2: "), did=self.name.removeprefix("SAM 2: "))
        extra = f" · {text.extra}" if text.extra else ""
        counted = self.total > 1 or (self.total and text.unit != "step")
        steps = f"{text.unit} {self.done} of {self.total}" if counted else ""
        if self.state == "running":
            left = self.seconds_left()
            eta = "" if left is None else f" · {'less than a second' if left < 1 else 'about ' + _duration(left)} left"
            return f"{text.doing}: {steps}{extra}{eta}" if steps else f"{text.doing}…{extra}"
        took = _duration((self.ended or time.monotonic()) - self.started)
        if self.state == "done":
            what = _plural(self.total, text.unit) if self.total and text.unit != "step" else ""
            extra = f" ({text.extra})" if text.extra else ""
            return f"{text.did} {what}{extra} in {took}".replace("  ", " ")
        if self.state == "cancelled":
            return f"{text.doing}: cancelled after {steps}{extra}" if steps else f"{text.doing}: cancelled"
        return f"{text.doing}: failed (see the notification)"


@dataclass(frozen=True)
class _Outcome:
    result: Any = None
    error: BaseException | None = None
    cancelled: bool = False


def _guarded(
    task: Task, job: Generator[Progress, None, Any], threads: int | None
) -> Generator[Progress, None, _Outcome]:
    """Run ``job`` to the end, turning cancel and errors into an :class:`_Outcome`."""
    configure_torch(threads)
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
    except GeneratorExit:  # closed by the runner after napari quit the worker
        raise
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
        threads: torch intra-op threads for jobs (None: leave torch's setting alone).
    """

    def __init__(self, *, synchronous: bool = False, threads: int | None = None) -> None:
        self.synchronous = synchronous
        self.threads = threads
        self.running: Task | None = None
        self.closed = False
        #: called with the Task when it starts, after each of its steps and when it ends
        self.listeners: list[Callable[[Task], None]] = []
        self._loops: list[Any] = []  # event loops of wait(), quit when a job ends

    def _tell(self, task: Task) -> None:
        if self.closed:
            return
        for listener in list(self.listeners):
            try:
                listener(task)
            except Exception:  # noqa: BLE001 - a progress display must never stop a job
                log.exception("napari-sam2: showing the progress of %s failed", task.name)

    def close(self) -> None:
        """Cancel the running job; from now on no job callback or listener runs (see module doc)."""
        self.closed = True
        if self.running is not None:
            self.running.cancel()

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
        text: JobText | None = None,
    ) -> Task:
        """Run ``job``; see the module docstring for the callback order."""
        if self.closed:
            job.close()
            raise RuntimeError("this TaskRunner is closed")
        task = Task(name, text=text)
        self.running = task
        self._tell(task)

        def yielded(item: Progress) -> None:
            if self.closed:
                return
            task.done = item.done
            if item.total:
                task.total = item.total
            if on_yield is not None:
                on_yield(item)
            self._tell(task)

        def returned(outcome: _Outcome) -> None:
            task.finished = True
            task.ended = time.monotonic()
            task.state = "failed" if outcome.error is not None else "cancelled" if outcome.cancelled else "done"
            if self.running is task:
                self.running = None
            try:
                if not self.closed:
                    self._finish(task, outcome, on_done, on_cancel, on_finally, error_prefix or name)
            finally:
                for cleanup in task.cleanups:
                    try:
                        cleanup()
                    except Exception:  # noqa: BLE001
                        log.exception("napari-sam2: cleaning up after %s failed", name)
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

        def ended() -> None:
            # napari quits every worker when its window closes (worker.quit): the worker then
            # ends without `returned`; end the task as cancelled so that wait() and the cleanups run
            if not task.finished:
                task.cancel()
                guarded.close()  # runs the job's own cleanup (VideoSession.propagate keeps its frames)
                returned(_Outcome(cancelled=True))

        worker.finished.connect(ended)
        task.worker = worker
        worker.start()
        return task

    def _finish(
        self,
        task: Task,
        outcome: _Outcome,
        on_done: Callable[[Any], None] | None,
        on_cancel: Callable[[], None] | None,
        on_finally: Callable[[], None] | None,
        what: str,
    ) -> None:
        try:
            if outcome.error is not None:
                report_error(what, outcome.error)
            elif outcome.cancelled:
                if on_cancel is not None:
                    on_cancel()
            elif on_done is not None:
                on_done(outcome.result)
        except Exception as exc:  # noqa: BLE001 - a bug in a callback: report, don't crash napari
            log.exception("napari-sam2: finishing %s failed", task.name)
            report_error(what, exc)
        finally:
            try:
                if on_finally is not None:
                    on_finally()
            finally:
                self._tell(task)

    @staticmethod
    def _drain(gen: Generator[Progress, None, _Outcome], yielded: Callable[[Progress], None]) -> _Outcome:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            yielded(item)

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
