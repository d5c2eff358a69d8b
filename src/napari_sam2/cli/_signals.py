"""Ctrl-C and SIGTERM during a command: both end it through the cleanup a KeyboardInterrupt
runs (no partial output is kept), with one line and exit code 130 or 143.
"""

from __future__ import annotations

import sys
from typing import Any

from ._common import EXIT_INTERRUPTED, EXIT_TERMINATED, PROG


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a cluster's time limit, ``timeout``), raised where the command is.

    A KeyboardInterrupt, so that every cleanup a Ctrl-C runs (the partial store removed, a
    local cluster's partials, the model's files closed) runs for it too.
    """


def _signal_exit(kind: type[BaseException]) -> int:
    if issubclass(kind, Terminated):
        print(f"{PROG}: terminated; no partial output was kept", file=sys.stderr)
        return EXIT_TERMINATED
    newline = "\n" if sys.stderr.isatty() else ""  # end the ^C / progress-bar line
    print(f"{newline}{PROG}: interrupted; no partial output was kept", file=sys.stderr)
    return EXIT_INTERRUPTED


def _signals_as_interrupts() -> tuple[list[type[BaseException]], Any]:
    """In the main thread, SIGTERM raises :class:`Terminated` and Ctrl-C KeyboardInterrupt, and
    each signal is remembered; returns that record and what undoes the handlers.

    The record is for an error that follows a signal: a KeyboardInterrupt raised inside C code
    can come out as another exception (CPython's warnings machinery turns it into
    ``TypeError: expected a message argument``), which is the signal's doing, not a bug. One
    raised where Python cannot pass it on (a weakref or GC callback, e.g. inside importlib) is
    only printed as "Exception ignored" and the command would run on: the signal is then sent
    again, to land in the command's own code. An ignored SIGINT (a background job) stays ignored.
    """
    import _thread
    import signal
    import threading

    received: list[type[BaseException]] = []
    if threading.current_thread() is not threading.main_thread():
        return received, lambda: None

    def on_term(signum: int, frame: Any) -> None:
        received.append(Terminated)
        raise Terminated()

    def on_int(signum: int, frame: Any) -> None:
        received.append(KeyboardInterrupt)
        raise KeyboardInterrupt()

    previous_term = signal.signal(signal.SIGTERM, on_term)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_int)

    previous_hook = sys.unraisablehook

    def swallowed(unraisable: Any) -> None:
        kind = unraisable.exc_type
        if received and isinstance(kind, type) and issubclass(kind, KeyboardInterrupt):
            # sent again from another thread once this hook has returned, so that the handler
            # runs (and raises) in the command's own code, not here where it is ignored again
            signum = signal.SIGTERM if issubclass(kind, Terminated) else signal.SIGINT
            _thread.start_new_thread(_send_later, (threading.main_thread().ident, signum))
            return
        previous_hook(unraisable)

    sys.unraisablehook = swallowed

    def restore() -> None:
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGTERM, previous_term)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)

    return received, restore


def _send_later(thread_id: int, signum: int) -> None:
    import signal
    import time

    time.sleep(0.01)  # let the hook that asked return first (it holds the interpreter meanwhile)
    signal.pthread_kill(thread_id, signum)
