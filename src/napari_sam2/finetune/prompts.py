"""Prompts a simulated user gives during training: clicks, boxes and correction clicks.

All coordinates are (x, y) in model-input pixels; masks are (H, W) bool numpy arrays at
the model input size. SAM 2 trains the same way: a first prompt (a click inside the
object, a few clicks, or a jittered box), then correction clicks sampled from the error
region of the current prediction (a positive click where the object was missed, a
negative one where the prediction spilled over).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..model.prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, NEGATIVE, POSITIVE

__all__ = ["Clicks", "first_prompt", "sample_box", "sample_click", "sample_correction_click"]

#: (N, 2) float32 (x, y) points and (N,) int labels
Clicks = tuple[np.ndarray, np.ndarray]


def sample_click(mask: np.ndarray, rng: np.random.Generator, *, interior: float = 0.5) -> tuple[float, float]:
    """A click inside ``mask``: uniform, or (with probability ``interior``) weighted towards
    the middle by the distance transform, as people click."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("cannot click inside an empty mask")
    if rng.uniform() < interior:
        dist = ndimage.distance_transform_edt(mask)[ys, xs] ** 2
        i = int(rng.choice(ys.size, p=dist / dist.sum()))
    else:
        i = int(rng.integers(ys.size))
    return float(xs[i]) + 0.5, float(ys[i]) + 0.5


def sample_box(mask: np.ndarray, rng: np.random.Generator, *, jitter: float = 0.1) -> np.ndarray:
    """The bounding box (x0, y0, x1, y1) of ``mask`` with each side moved by up to
    ``jitter`` of the box size (clipped to the image)."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)
    size = np.array([box[2] - box[0], box[3] - box[1]] * 2, dtype=np.float32)
    box += rng.normal(0.0, jitter / 2, size=4).clip(-jitter, jitter).astype(np.float32) * size
    return np.clip(box, 0, [w, h, w, h]).astype(np.float32)


def first_prompt(mask: np.ndarray, rng: np.random.Generator, *, p_box: float = 0.3, p_multi: float = 0.15) -> Clicks:
    """A user's first prompt on an object: one click (most often), a few clicks, or a box."""
    u = rng.uniform()
    if u < p_box:
        box = sample_box(mask, rng)
        return box.reshape(2, 2), np.array([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], dtype=np.int64)
    if u < p_box + p_multi:
        n = int(rng.integers(2, 4))
        pts = np.array([sample_click(mask, rng) for _ in range(n)], dtype=np.float32)
        return pts, np.full(n, POSITIVE, dtype=np.int64)
    return np.array([sample_click(mask, rng)], dtype=np.float32), np.array([POSITIVE], dtype=np.int64)


def sample_correction_click(
    pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator
) -> tuple[tuple[float, float], int]:
    """A click on the largest kind of error: positive inside missed object pixels,
    negative inside wrongly included ones; towards the middle of the error region."""
    missed, spilled = gt & ~pred, pred & ~gt
    if not missed.any() and not spilled.any():
        return sample_click(gt, rng), POSITIVE if gt.any() else NEGATIVE
    if missed.sum() >= spilled.sum():
        return sample_click(missed, rng, interior=0.8), POSITIVE
    return sample_click(spilled, rng, interior=0.8), NEGATIVE


def pad_clicks(clicks: list[Clicks]) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-object clicks into (B, N, 2) points and (B, N) labels padded with -1."""
    n = max(len(lab) for _, lab in clicks)
    pts = np.zeros((len(clicks), n, 2), dtype=np.float32)
    labels = np.full((len(clicks), n), -1, dtype=np.int64)
    for i, (p, lab) in enumerate(clicks):
        pts[i, : len(lab)] = p
        labels[i, : len(lab)] = lab
    return pts, labels
