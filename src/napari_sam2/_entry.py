"""The ``napari-sam2`` console script and ``python -m napari_sam2``: the command line
(:mod:`napari_sam2.cli`) behind a Ctrl-C guard.

``cli.main`` turns a Ctrl-C during a command into one line and exit code 130, but a Ctrl-C
while Python is still importing the command line or parsing its arguments (the first few
tenths of a second) arrives before that: here it ends just as quietly. This module imports
nothing but ``sys`` (and ``signal`` inside the guard) before the guard is in place; keep it
(and ``napari_sam2/__init__.py``) that cheap.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # as cli.EXIT_INTERRUPTED, without importing cli


def main(argv: list[str] | None = None) -> int:
    """Run ``napari_sam2.cli.main``; a Ctrl-C that it does not catch itself exits 130 quietly.

    A Ctrl-C while a C extension is being imported (numpy, torch) may surface as another
    error (numpy raises ImportError when its import of ``datetime`` is interrupted), so the
    guard records the signal and treats whatever follows it as the interruption.
    """
    seen: list[int] = []

    def interrupted(signum: int, _frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    previous = None
    try:
        import signal

        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not ignored (a background job)
            previous = signal.signal(signal.SIGINT, interrupted)
        from .cli import main as cli_main
    except BaseException as exc:
        if not seen and not isinstance(exc, KeyboardInterrupt):
            raise
        return _interrupted()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)  # cli.main installs its own for the command
    try:
        return cli_main(argv)
    except KeyboardInterrupt:
        return _interrupted()


def _interrupted() -> int:
    try:
        print("napari-sam2: interrupted", file=sys.stderr)
    except (KeyboardInterrupt, OSError):  # a second Ctrl-C, or stderr closed
        pass
    return EXIT_INTERRUPTED
