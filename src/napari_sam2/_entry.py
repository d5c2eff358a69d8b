"""The ``napari-sam2`` console script and ``python -m napari_sam2``: the command line
(:mod:`napari_sam2.cli`) behind a Ctrl-C guard.

``cli.main`` turns a Ctrl-C during a command into one line and exit code 130, but a Ctrl-C
while Python is still importing the command line or parsing its arguments (the first few
tenths of a second) arrives before that: here it ends just as quietly. This module imports
nothing but ``sys`` before the guard is in place; keep it (and ``napari_sam2/__init__.py``)
that cheap.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130  # as cli.EXIT_INTERRUPTED, without importing cli


def main(argv: list[str] | None = None) -> int:
    """Run ``napari_sam2.cli.main``; a Ctrl-C that it does not catch itself exits 130 quietly."""
    try:
        from .cli import main as cli_main

        return cli_main(argv)
    except KeyboardInterrupt:
        try:
            print("napari-sam2: interrupted", file=sys.stderr)
        except (KeyboardInterrupt, OSError):  # a second Ctrl-C, or stderr closed
            pass
        return EXIT_INTERRUPTED
