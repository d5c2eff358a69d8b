"""The one progress record every long job yields: the widget's workers, ``segment`` and dask batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` steps (``total`` 0: not known), with an optional ``payload``.

    A ``segment`` or batch stack counts frames written; a widget job counts its own steps and
    may carry what the UI thread should show (e.g. a propagated slice's label image).
    """

    done: int
    total: int = 0
    payload: Any = None
