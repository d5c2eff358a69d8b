"""What the generators return: an image or a stack with its instance labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SyntheticImage", "SyntheticStack"]


@dataclass(frozen=True)
class SyntheticImage:
    """A 2-D image ``(Y, X)`` uint16 and its instance ``labels`` ``(Y, X)`` uint16 (0 = background)."""

    image: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class SyntheticStack:
    """A synthetic image stack and its instance labels.

    Attributes
    ----------
    image : np.ndarray
        (N, Y, X) uint16 intensities; N is time or z (see ``axes``).
    labels : np.ndarray
        (N, Y, X) uint16 instance labels, 0 = background, object ``k`` keeps id ``k`` on every
        slice it appears on.
    scale : tuple of float
        Physical pixel size per axis (e.g. ``(2.0, 0.5, 0.5)`` µm for an anisotropic z-stack).
    axes : str
        ``"tyx"`` or ``"zyx"``.
    """

    image: np.ndarray
    labels: np.ndarray
    scale: tuple[float, float, float]
    axes: str
