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
    ``TypeError: expected a message argument``), which is the signal's doing, not a bug. An
    ignored SIGINT (a background job) stays ignored.
    """
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

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous_term)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)

    return received, restore
