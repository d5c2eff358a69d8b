"""The rules every measurement shares: where a user clicks, how a mask is scored, how a
wrong mask is corrected, and how far a mean could move on another draw of stacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage

__all__ = ["GOOD_IOU", "MIN_AREA", "bootstrap_interval", "click_point", "correction_click", "mask_iou"]

#: objects (or, in stacks, an object's largest slice) smaller than this many pixels are skipped
MIN_AREA = 64
#: an IoU at least this high counts as a good mask (the share of such objects is reported)
GOOD_IOU = 0.85

Log = Callable[[str], None] | None


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two boolean masks of the same shape.

    An object absent from ``gt`` scores 1.0 when ``pred`` is empty too and 0.0 when
    anything was predicted (the per-frame rule of :func:`evaluate_tracking`).
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {gt.shape}")
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(pred & gt) / union)


def _click_pixel(mask: np.ndarray) -> tuple[int, int]:
    """(row, col) of the maximum of the distance transform inside ``mask`` (first in
    row-major order on ties); the image border counts as outside."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or not mask.any():
        raise ValueError("click_point needs a non-empty 2-D mask")
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(dist)), mask.shape)
    return int(row), int(col)


def click_point(mask: np.ndarray) -> tuple[float, float]:
    """The click a user makes on ``mask``: (x, y) of the centre of its deepest pixel.

    The deepest pixel is the maximum of the Euclidean distance transform inside the mask
    (the image border counts as background; ties go to the first pixel in row-major
    order), so the click is deterministic. Coordinates are pixel centres, ``col + 0.5,
    row + 0.5``, the convention the training clicks use.
    """
    row, col = _click_pixel(mask)
    return col + 0.5, row + 0.5


def correction_click(pred: np.ndarray, gt: np.ndarray) -> tuple[tuple[float, float], int]:
    """The one correction a user makes on a wrong mask: ``((x, y), label)``.

    A positive click (label 1) at the :func:`click_point` of the missed pixels if more
    pixels were missed than spilled, else a negative one (label 0) at that of the
    spilled pixels. ``pred`` and ``gt`` must differ.
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    missed, spilled = gt & ~pred, pred & ~gt
    if not missed.any() and not spilled.any():
        raise ValueError("the mask is right: there is nothing to correct")
    positive = int(np.count_nonzero(missed) > np.count_nonzero(spilled))
    return click_point(missed if positive else spilled), positive


def bootstrap_interval(
    values: Sequence[float], groups: Sequence[int], *, level: float = 0.95, draws: int = 10_000, seed: int = 0
) -> tuple[float, float] | None:
    """A percentile bootstrap interval for the mean of ``values``, resampling whole groups.

    Tracks on the same stack share its frames, its look and its crowding, so they are not
    independent: the groups (stacks) are drawn with replacement, and each draw's mean is
    over all the values of the groups drawn. Returns None for fewer than two groups (no
    spread to estimate). Seeded: the same values give the same interval.
    """
    v = np.asarray(values, dtype=np.float64)
    g = np.asarray(groups)
    if v.shape != g.shape:
        raise ValueError("values and groups must have the same length")
    ids, which = np.unique(g, return_inverse=True)
    if ids.size < 2:
        return None
    sums, counts = np.bincount(which, weights=v), np.bincount(which)  # per group
    pick = np.random.default_rng(seed).integers(0, ids.size, size=(draws, ids.size))
    means = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)
