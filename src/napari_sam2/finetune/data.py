"""Training batches: 2-D images with objects, and short clips with objects to track.

Batches are built from labelled arrays, so a user's own stacks
(:mod:`napari_sam2.finetune.arrays`) and the synthetic data the shipped model was trained on
(``factory/training_data.py`` in the repository) feed the same training steps.
Images go through the engine's preprocessing (percentile window, resize, ImageNet
normalisation), plus augmentation: flips, 90-degree turns, gamma and contrast changes.

Ending clips. A random window of a stack rarely shows an object *ending* (a nucleus
running out in z, a cell leaving the field), so a model trained on such windows keeps
following a neighbour where the object is gone. With ``p_end`` a share of the clips is
chosen among the windows (and directions) in which an object of the first frame is
absent on the last 1 to :data:`END_FRAMES` frames; that object is tracked first. Its
masks there are all False: the loss on the object score teaches that it is gone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.preprocess import normalise, percentile_window, to_unit_rgb
from ..model.sam2 import ImageFeatures
from ..synthetic import divisions

__all__ = ["END_FRAMES", "Clip", "ImageBatch", "clip_from_stack", "image_batch_from"]

#: objects smaller than this many pixels (at model size) are not prompted
MIN_AREA = 24
#: an ending clip's object is gone on at most this many of its last frames (at least 1)
END_FRAMES = 4


@dataclass
class ImageBatch:
    """B images and the objects to segment in them.

    Attributes:
        images: (B, 3, S, S) normalised model input.
        owner: (N,) index of each object's image.
        masks: (N, S, S) bool ground truth at the model input size.
        features: the images already encoded (a frozen encoder's cached features, see
            :mod:`napari_sam2.finetune.arrays`), or None: the training step encodes
            ``images`` (which are unused, and may be empty, when features are given).
    """

    images: torch.Tensor
    owner: np.ndarray
    masks: np.ndarray
    features: ImageFeatures | None = None


@dataclass
class Clip:
    """T frames and N objects to track through them, prompted on frame 0.

    Attributes:
        frames: (T, 3, S, S) normalised model input.
        masks: (T, N, S, S) bool ground truth (all False where an object is absent).
        features: the frames already encoded, or None (as :attr:`ImageBatch.features`).
    """

    frames: torch.Tensor
    masks: np.ndarray
    features: ImageFeatures | None = None


def _augment_unit(unit: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Gamma and contrast/offset changes of [0, 1] images (same for all frames of a clip)."""
    if rng.uniform() < 0.5:
        unit = unit.clamp(0, 1) ** float(np.exp(rng.uniform(-0.5, 0.5)))
    if rng.uniform() < 0.3:  # low-contrast 8-bit-like data: no percentile stretch
        lo = float(rng.uniform(0.0, 0.4))
        unit = lo + unit * float(rng.uniform(0.2, 1.0 - lo))
    return unit


def _to_model(images: np.ndarray, size: int, rng: np.random.Generator | None, window: np.ndarray | None) -> torch.Tensor:
    """(N, H, W) stack -> (N, 3, size, size) normalised, one intensity window for all."""
    unit = torch.stack([to_unit_rgb(im, window) for im in images])
    if unit.shape[-2:] != (size, size):
        unit = F.interpolate(unit, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if rng is not None:
        unit = _augment_unit(unit, rng)
    return normalise(unit)


def _resize_labels(labels: np.ndarray, size: int) -> np.ndarray:
    """(..., H, W) integer labels -> (..., size, size) by nearest neighbour."""
    h, w = labels.shape[-2:]
    if (h, w) == (size, size):
        return labels
    ys = (np.arange(size) + 0.5) * h / size
    xs = (np.arange(size) + 0.5) * w / size
    return labels[..., ys.astype(int)[:, None], xs.astype(int)[None, :]]


def _flip_turn(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    k = int(rng.integers(4))
    flip = rng.uniform() < 0.5
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-2, -1))
        if flip:
            a = a[..., ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def _pick(ids: np.ndarray, areas: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    ok = ids[(ids > 0) & (areas >= MIN_AREA)]
    if ok.size == 0:
        return ok
    return rng.choice(ok, size=min(k, ok.size), replace=False)


def image_batch_from(
    pairs: list[tuple[np.ndarray, np.ndarray]], size: int, objects_per_image: int, rng: np.random.Generator
) -> ImageBatch:
    """An :class:`ImageBatch` from (image (H, W), labels (H, W)) pairs, augmented."""
    images, owner, masks = [], [], []
    for image, labels in pairs:
        image, labels = _flip_turn([image, labels], rng)
        small = _resize_labels(labels, size)
        ids, areas = np.unique(small, return_counts=True)
        picked = _pick(ids, areas, objects_per_image, rng)
        if picked.size == 0:
            continue
        b = len(images)
        images.append(_to_model(image[None], size, rng, None)[0])
        for i in picked:
            owner.append(b)
            masks.append(small == i)
    if not images:
        raise ValueError("no image in the batch has an object to prompt")
    return ImageBatch(torch.stack(images), np.asarray(owner), np.stack(masks))


def _window_tracking(
    small: np.ndarray, idx: np.ndarray, obj: int, max_objects: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(idx, the window's labels, picked ids): ``obj`` first, then others of its first frame."""
    lab = small[idx]
    ids, first_areas = np.unique(lab[0], return_counts=True)
    others = ids != obj
    picked = _pick(ids[others], first_areas[others], max_objects - 1, rng)
    return idx, lab, np.concatenate([[obj], picked]).astype(ids.dtype)


def _ending_window(
    labels: np.ndarray, size: int, length: int, max_objects: int, rng: np.random.Generator, *, gap: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(frame indices, their labels at model size, picked ids) of a window in which the
    first picked object is present on the first frame (large enough to prompt) and gone
    on the last 1 to :data:`END_FRAMES` frames; None if no window of the stack has one.
    With ``gap`` instead: gone on some frames in between and back on the last frame (a
    cell that left the field or passed under another and came back).

    Every (window, direction, object) that ends so is a candidate and one is drawn
    uniformly; the other objects are picked among the first frame's as usual.
    """
    small = _resize_labels(labels, size)
    areas = np.stack([np.bincount(f.ravel(), minlength=int(small.max()) + 1) for f in small])  # (T, ids)
    areas[:, 0] = 0  # background
    candidates = []
    for start in range(small.shape[0] - length + 1):
        for backwards in (False, True):
            idx = np.arange(start, start + length)
            if backwards:
                idx = idx[::-1]
            a = areas[idx]
            if gap:
                ending = (a[0] >= MIN_AREA) & (a[-1] > 0) & (a[1:-1] == 0).any(axis=0)
            else:
                gone = np.argmax(a[::-1] > 0, axis=0)  # how many last frames each object is absent on
                ending = (a[0] >= MIN_AREA) & (gone >= 1) & (gone <= END_FRAMES)
            candidates += [(idx, int(k)) for k in np.nonzero(ending)[0]]
    if not candidates:
        return None
    idx, obj = candidates[int(rng.integers(len(candidates)))]
    return _window_tracking(small, idx, obj, max_objects, rng)


def _division_window(
    labels: np.ndarray, size: int, length: int, max_objects: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(frame indices, their labels at model size, picked ids) of a forward window in which
    the first picked object divides: a new id is born touching it on a later frame of the
    window (:func:`~napari_sam2.synthetic.cell_timelapse` gives the daughter a new id and
    the mother, who stays in place, keeps hers); None if no window has one.

    Every (window, mother) is a candidate and one is drawn uniformly.
    """
    small = _resize_labels(labels, size)
    areas = np.stack([np.bincount(f.ravel(), minlength=int(small.max()) + 1) for f in small])  # (T, ids)
    candidates = []
    for b, _, mother in divisions(small):
        for start in range(max(0, b - length + 1), b):
            if start + length <= small.shape[0] and areas[start, mother] >= MIN_AREA:
                candidates.append((start, mother))
    if not candidates:
        return None
    start, obj = candidates[int(rng.integers(len(candidates)))]
    return _window_tracking(small, np.arange(start, start + length), obj, max_objects, rng)


def clip_from_stack(
    image: np.ndarray,
    labels: np.ndarray,
    size: int,
    length: int,
    max_objects: int,
    rng: np.random.Generator,
    *,
    augment: bool = True,
    p_end: float = 0.0,
    p_gap: float = 0.0,
    p_division: float = 0.0,
) -> Clip | None:
    """A clip of ``length`` consecutive frames of a (T, H, W) stack, forwards or backwards,
    tracking up to ``max_objects`` objects present on its first frame (None if none is).

    With probability ``p_end`` an ending clip: an object of the first frame is gone on the
    last 1 to :data:`END_FRAMES` frames and is ``masks[:, 0]``; with probability ``p_gap``
    a gap clip: that object is gone on some frames in between and back on the last one;
    with probability ``p_division`` a division clip (forwards): that object divides in the
    clip and stays the mother (:func:`_division_window`). None if the stack has no such
    window. ``p_end = p_gap = p_division = 0`` draws nothing more from ``rng`` than before
    they existed.
    """
    n = image.shape[0]
    if n < length:
        return None
    u = rng.uniform() if p_end > 0 or p_gap > 0 or p_division > 0 else 1.0
    if u < p_end + p_gap:
        ending = _ending_window(labels, size, length, max_objects, rng, gap=u >= p_end)
        if ending is None:
            return None
        idx, lab, picked = ending
    elif u < p_end + p_gap + p_division:
        division = _division_window(labels, size, length, max_objects, rng)
        if division is None:
            return None
        idx, lab, picked = division
    else:
        for _ in range(8):
            start = int(rng.integers(0, n - length + 1))
            idx = np.arange(start, start + length)
            if rng.uniform() < 0.5:
                idx = idx[::-1]
            lab = _resize_labels(labels[idx], size)
            ids, areas = np.unique(lab[0], return_counts=True)
            picked = _pick(ids, areas, max_objects, rng)
            if picked.size:
                break
        else:
            return None
    frames = image[idx]
    if augment:
        frames, lab = _flip_turn([frames, lab], rng)
    window = percentile_window(frames[:: max(1, length // 4)].reshape(-1, frames.shape[-1]))
    tensor = _to_model(frames, size, rng if augment else None, window)
    masks = np.stack([lab == i for i in picked], axis=1)  # (T, N, S, S)
    return Clip(tensor, masks)

