"""2-D: SAM's one-click protocol (:func:`evaluate_clicks`) and a classical baseline on the
same objects and clicks (:func:`baseline_clicks`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ..engine.image import ImagePredictor
from ..model.sam2 import SAM2
from .metrics import GOOD_IOU, MIN_AREA, Log, _click_pixel, click_point, mask_iou

__all__ = ["baseline_clicks", "evaluate_clicks"]


def _summary(ious: list[float]) -> dict[str, Any]:
    arr = np.asarray(ious, dtype=np.float64)
    return {
        "count": int(arr.size),
        "mean_iou": float(arr.mean()) if arr.size else None,
        "share_085": float((arr >= GOOD_IOU).mean()) if arr.size else None,
    }


def _objects(labels: np.ndarray, min_area: int) -> list[int]:
    """Label ids of ``labels`` (2-D) with at least ``min_area`` pixels, ascending."""
    ids, counts = np.unique(labels, return_counts=True)
    return [int(i) for i, c in zip(ids, counts) if i != 0 and c >= min_area]


def _pairs(images: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} label images")
    out = []
    for i, (im, lab) in enumerate(zip(images, labels)):
        im, lab = np.asarray(im), np.asarray(lab)
        if lab.ndim != 2 or im.shape[:2] != lab.shape:
            raise ValueError(f"image {i}: labels must be (H, W) matching the image, got {lab.shape} for {im.shape}")
        out.append((im, lab))
    return out


@torch.inference_mode()
def evaluate_clicks(
    model: SAM2,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    min_area: int = MIN_AREA,
    log: Log = None,
) -> dict[str, Any]:
    """SAM's one-click protocol on 2-D images.

    For every object of at least ``min_area`` pixels: one positive click at
    :func:`click_point`, three candidate masks, the one with the highest predicted IoU
    kept, and its IoU against the ground truth at the image's full resolution. Each image
    is encoded once.

    Parameters
    ----------
    model
        A SAM 2 in float32 (as :func:`~napari_sam2.weights.load_model` returns it).
    images, labels
        Equally long sequences of (H, W) (or (H, W, C)) images and (H, W) instance labels.
    min_area
        Smallest object (pixels) that is evaluated.
    log
        Optional callable receiving one progress line per image.

    Returns
    -------
    dict
        ``objects``: [image index, label id] per object; ``iou``: their IoUs;
        ``mean_iou``; ``share_085``: share of objects with IoU >= 0.85; ``count``.
    """
    predictor = ImagePredictor(model)

    def one_click(image: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        predictor.set_image(image)

        def answer(gt: np.ndarray) -> np.ndarray:
            masks, scores, _ = predictor.predict(point_coords=[click_point(gt)], point_labels=[1], multimask_output=True)
            return masks[int(np.argmax(scores))]

        return answer

    result = _score_objects(images, labels, min_area, one_click, log)
    predictor.reset_image()
    return result


def _score_objects(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    min_area: int,
    segmenter: Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]],
    log: Log,
) -> dict[str, Any]:
    """IoU of every object of at least ``min_area`` pixels: ``segmenter(image)`` prepares
    an image once and returns the function that answers one object (its ground-truth mask
    -> the predicted mask), so the model and the baseline are scored on the same objects."""
    objects: list[list[int]] = []
    ious: list[float] = []
    for i, (image, lab) in enumerate(_pairs(images, labels)):
        ids = _objects(lab, min_area)
        if not ids:
            continue
        answer = segmenter(image)
        for obj in ids:
            gt = lab == obj
            ious.append(mask_iou(answer(gt), gt))
            objects.append([i, obj])
        if log is not None:
            log(f"image {i + 1}/{len(images)}: {len(ids)} objects, running mean IoU {np.mean(ious):.3f}")
    return {"objects": objects, "iou": ious, **_summary(ious)}


class _Classical:
    """Otsu + distance-transform watershed of one image, per polarity, computed on demand."""

    def __init__(self, image: np.ndarray, *, sigma: float, min_distance: int) -> None:
        from skimage.filters import threshold_otsu

        im = np.asarray(image, dtype=np.float32)
        if im.ndim == 3:
            im = im.mean(axis=-1)
        self.smooth = ndimage.gaussian_filter(im, sigma) if sigma > 0 else im
        self.threshold = float(threshold_otsu(self.smooth))
        self.min_distance = min_distance
        self._segs: dict[bool, np.ndarray] = {}

    def region(self, row: int, col: int) -> np.ndarray:
        """The watershed region under pixel (row, col); the object's polarity is the
        clicked pixel's side of the threshold. Empty if the click lands on background."""
        dark = bool(self.smooth[row, col] <= self.threshold)
        if dark not in self._segs:
            self._segs[dark] = self._segment(dark)
        seg = self._segs[dark]
        if seg[row, col] == 0:
            return np.zeros(seg.shape, dtype=bool)
        return seg == seg[row, col]

    def _segment(self, dark: bool) -> np.ndarray:
        from skimage.feature import peak_local_max
        from skimage.segmentation import watershed

        fg = self.smooth <= self.threshold if dark else self.smooth > self.threshold
        fg = ndimage.binary_fill_holes(fg)
        dist = ndimage.distance_transform_edt(fg)
        comps, n = ndimage.label(fg)
        markers = np.zeros(fg.shape, dtype=np.int32)
        peaks = peak_local_max(dist, min_distance=self.min_distance, labels=comps, exclude_border=False)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        # a component without a peak (a thin sliver) still becomes one region
        unmarked = np.setdiff1d(np.arange(1, n + 1), np.unique(comps[markers > 0]))
        if unmarked.size:
            where = ndimage.maximum_position(dist, comps, unmarked)
            for k, pos in enumerate(where):
                markers[pos] = len(peaks) + 1 + k
        return watershed(-dist, markers, mask=fg)


def baseline_clicks(
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    *,
    min_area: int = MIN_AREA,
    sigma: float = 1.0,
    min_distance: int = 10,
) -> dict[str, Any]:
    """A classical pipeline on the objects and clicks of :func:`evaluate_clicks`.

    Per image: Gaussian smoothing (``sigma``), an Otsu threshold, holes filled, the
    Euclidean distance transform, its local maxima at least ``min_distance`` pixels
    apart as markers, and a watershed of the inverted distance inside the foreground.
    The answer for a click is the watershed region under it. The polarity comes from the
    click: if the clicked pixel is at or below the threshold the object is taken to be
    dark on a bright background and the foreground is inverted.

    Returns the same dict as :func:`evaluate_clicks`.
    """

    def classical(image: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        seg = _Classical(image, sigma=sigma, min_distance=min_distance)
        return lambda gt: seg.region(*_click_pixel(gt))

    return _score_objects(images, labels, min_area, classical, None)
