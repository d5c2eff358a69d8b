"""The ``napari-sam2`` command line (also ``python -m napari_sam2``); see :mod:`.segment` for now.

A package so that each command can get a module of its own; this first step only moves
``cli.py`` to ``cli/segment.py`` (so that its history follows) and keeps every name here.
"""

from __future__ import annotations

from .segment import (  # noqa: F401
    _COMMANDS,
    DEFAULT_MODEL_HELP,
    EXIT_ERROR,
    EXIT_FAILED_STACKS,
    EXIT_IMAGE_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    PROG,
    build_parser,
    main,
)
