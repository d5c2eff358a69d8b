"""The ``napari-sam2`` command line (also ``python -m napari_sam2``).

::

    napari-sam2 segment-image IMAGE --point X Y [...] -o MASK.tif      # one 2-D image, one object
    napari-sam2 segment INPUT --prompts PROMPTS [--boxes SHAPES.csv] -o OUT.zarr
    napari-sam2 batch INPUT... --prompts-dir DIR -o OUTDIR [--scheduler local:N | tcp://HOST:PORT]
    napari-sam2 auto INPUT -o OUT.zarr [--mode grid|seeded] [--every K]   # segment everything
    napari-sam2 models
    napari-sam2 finetune IMAGES... --labels LABELS... --from MODEL -o OUT.pt

Errors are one line, ``napari-sam2: error: ...``, naming the file or address (``--debug``
adds the traceback). Exit codes: 0 done; ``segment-image``: 1 error, 2 bad arguments or no
weights; ``segment``, ``batch``, ``auto``, ``models``: 2 error or bad arguments, 1 some batch stacks
failed; 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), with no partial output left behind.
See ``docs/cli.md``.

This module holds the parser, the dispatch and what an error or a signal ends as; each
command lives in its own module (:mod:`.segment_image`, :mod:`.segment` for ``segment`` and
``batch``, :mod:`.models`, :mod:`.finetune`), and Ctrl-C / SIGTERM handling in
:mod:`._signals`. Importing it imports no torch, numpy or dask: each command imports what it
needs when it runs.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from ..errors import SAM2Error, WeightsUnavailableError, one_line
from ._common import (
    EXIT_ERROR,
    EXIT_FAILED_STACKS,
    EXIT_IMAGE_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    PROG,
    _error,
    _model_name,
    _weights_hint,
)
from ._signals import _signal_exit, _signals_as_interrupts
from .auto import _add_auto, _auto
from .finetune import _add_finetune, _finetune
from .models import _add_models, _models
from .segment import _add_segment_and_batch, _batch, _segment
from .segment_image import _add_segment_image, _segment_image

__all__ = [
    "EXIT_ERROR", "EXIT_FAILED_STACKS", "EXIT_IMAGE_ERROR", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "PROG",
    "build_parser", "main",
]  # fmt: skip

_COMMANDS = {
    "segment-image": _segment_image, "segment": _segment, "batch": _batch, "models": _models, "finetune": _finetune,
    "auto": _auto,
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command.

    Returns
    -------
    argparse.ArgumentParser
        ``napari-sam2`` with the sub-commands segment-image, segment, batch, auto, models and
        finetune; the parsed namespace's ``command`` names the one given.
    """
    parser = argparse.ArgumentParser(prog=PROG, description="SAM 2 segmentation without napari.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_segment_image(commands)
    _add_segment_and_batch(commands)
    _add_auto(commands)
    _add_models(commands)
    _add_finetune(commands)
    return parser


def _notes_to_stderr() -> None:
    """The package's warnings (e.g. what was recovered from a killed run) as ``napari-sam2: note: ...`` lines."""
    import logging

    class Notes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            print(f"{PROG}: note: {record.getMessage()}", file=sys.stderr)  # whatever sys.stderr is now

    logger = logging.getLogger("napari_sam2")
    if not any(type(h).__name__ == "Notes" for h in logger.handlers):
        logger.addHandler(Notes(logging.WARNING))
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code: 0 done, else one of the ``EXIT_*`` codes (see the module docstring).
        Bad arguments exit through argparse's ``SystemExit(2)`` instead.
    """
    args = build_parser().parse_args(argv)
    _notes_to_stderr()
    debug = getattr(args, "debug", False)
    error_code = EXIT_IMAGE_ERROR if args.command == "segment-image" else EXIT_ERROR
    received, restore = _signals_as_interrupts()
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as Terminated
        return _signal_exit(type(exc))
    except Exception as exc:
        if received:  # the signal's doing, whatever a C extension made of the KeyboardInterrupt
            return _signal_exit(received[-1])
        return _error_exit(exc, args, debug, error_code)
    finally:
        restore()


def _error_exit(exc: Exception, args: argparse.Namespace, debug: bool, error_code: int) -> int:
    """One line for an error (the traceback with --debug); returns the exit code."""
    if debug:
        traceback.print_exc()
    if isinstance(exc, WeightsUnavailableError):
        _error(_weights_hint(_model_name(args)))
    elif isinstance(exc, (SAM2Error, OSError)):
        _error(str(exc) or type(exc).__name__)
    else:  # a bug: still one line, the traceback on request
        _error(f"unexpected {one_line(exc)} (run with --debug for the traceback)")
    return error_code
