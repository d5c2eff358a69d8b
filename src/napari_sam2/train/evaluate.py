"""How well a model segments and tracks labelled objects from the clicks a user would make.

Three measurements share one click rule, :func:`click_point` (the pixel deepest inside
the object, as a person clicks it), and one IoU rule, :func:`mask_iou`:

* :func:`evaluate_clicks` -- SAM's one-click protocol on 2-D images: one positive click
  per object, three candidates, the one with the highest predicted IoU is the answer;
* :func:`baseline_clicks` -- a classical pipeline on the same objects and clicks (Otsu
  threshold + distance-transform watershed, the region under the click);
* :func:`evaluate_tracking` -- one click on a stack, propagated both ways, per-frame IoU
  over every frame; then one correction click on the worst frame and a re-propagation.

All three return plain dicts of numbers and lists (JSON-ready)::

    >>> from napari_sam2.weights import load_model
    >>> model = load_model("napari-sam2-cells")
    >>> r = evaluate_clicks(model, images, labels)       # images, labels: lists of (H, W)
    >>> r["mean_iou"], r["share_085"], r["count"]
    >>> t = evaluate_tracking(model, [(stack, stack_labels)])
    >>> t["mean_before"], t["mean_after"]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ..synthetic import divisions as find_divisions
from ..engine.image import ImagePredictor
from ..engine.session import VideoSession
from ..model.sam2 import SAM2

__all__ = [
    "GOOD_IOU",
    "MIN_AREA",
    "baseline_clicks",
    "bootstrap_interval",
    "click_point",
    "correction_click",
    "evaluate_clicks",
    "evaluate_tracking",
    "frames_past_division",
    "lost_frames",
    "mask_iou",
    "object_speed",
]

#: objects (or, in stacks, an object's largest slice) smaller than this many pixels are skipped
MIN_AREA = 64
#: an IoU at least this high counts as a good mask (the share of such objects is reported)
GOOD_IOU = 0.85

Log = Callable[[str], None] | None


# --------------------------------------------------------------------------- metrics


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


# --------------------------------------------------------------------------- 2-D


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


# --------------------------------------------------------------------------- stacks


def _largest_objects(labels: np.ndarray, n: int, min_area: int) -> list[int]:
    """The ``n`` ids with the largest total volume whose largest slice has >= ``min_area`` pixels."""
    n_ids = int(labels.max()) + 1
    areas = np.stack([np.bincount(sl.ravel(), minlength=n_ids) for sl in labels])  # (T, n_ids)
    volume, peak = areas.sum(axis=0), areas.max(axis=0)
    keep = [i for i in range(1, n_ids) if volume[i] > 0 and peak[i] >= min_area]
    keep.sort(key=lambda i: (-int(volume[i]), i))
    return keep[:n]


def _propagate(session: VideoSession, obj: int, start: int | None) -> np.ndarray:
    """Propagate forward and then backward from ``start`` (the plugin's "both"), or with
    ``start=None`` carry the pending corrections outward (``VideoSession.correction_runs``,
    as the plugin's Propagate after a correction); return ``obj``'s (T, H, W) masks on
    every frame."""
    runs = [(start, False, 0), (start, True, 0)] if start is not None else session.correction_runs("both")
    for begin, reverse, _ in runs:
        for _ in session.propagate(start=begin, reverse=reverse):
            pass
    k = session.obj_ids.index(obj)
    return np.stack([session.result(t).masks[k] for t in range(session.num_frames)])


def object_speed(gt: np.ndarray) -> float | None:
    """How fast an object moves: the mean distance (pixels) its centroid travels between
    consecutive frames on which it is present, from a (T, H, W) boolean stack. None if it
    is never present on two consecutive frames. (In a z-stack: how far a nucleus's
    outline shifts from slice to slice.)"""
    present = gt.reshape(len(gt), -1).any(axis=1)
    cents = [np.argwhere(f).mean(axis=0) if p else None for f, p in zip(gt, present)]
    steps = [np.linalg.norm(b - a) for a, b in zip(cents, cents[1:]) if a is not None and b is not None]
    return float(np.mean(steps)) if steps else None


def _per_frame(pred: np.ndarray, gt: np.ndarray) -> list[float]:
    return [mask_iou(p, g) for p, g in zip(pred, gt)]


def lost_frames(pred: np.ndarray, gt: np.ndarray, others: np.ndarray | None = None) -> dict[str, int]:
    """The two ways a track fails on a frame, counted over a (T, H, W) stack:
    ``dropped``, the object is there and the mask is empty (the tracker let it go), and
    ``spilled``, the object is not there and the mask is not empty (it follows something
    else, e.g. a neighbour after the object ended). With ``others`` (T, H, W bool, where
    other objects are), also ``spilled_pixels`` on those frames and how many of them lie
    on other objects (``spilled_on_others``)."""
    present = gt.reshape(len(gt), -1).any(axis=1)
    shown = pred.reshape(len(pred), -1).any(axis=1)
    spilled = ~present & shown
    out = {"dropped": int((present & ~shown).sum()), "spilled": int(spilled.sum())}
    if others is not None:
        out["spilled_pixels"] = int(pred[spilled].sum())
        out["spilled_on_others"] = int((pred[spilled] & others[spilled]).sum())
    return out


def frames_past_division(labels: np.ndarray, obj: int, click_frame: int) -> np.ndarray:
    """(T,) bool: the frames a division separates from ``click_frame`` in ``obj``'s track.

    A division is read from the labels as a new id born touching its mother (as
    :func:`~napari_sam2.synthetic.cell_timelapse` writes them: the mother keeps her id).
    Past a division of ``obj`` the tracker must keep to the mother and leave the bud;
    before ``obj``'s own birth as a bud, it must not follow her mother. A diagnostic:
    :func:`evaluate_tracking` reports the mean IoU on these frames and on the others.
    """
    past = np.zeros(np.shape(labels)[0], dtype=bool)
    for b, child, mother in find_divisions(labels):
        if obj in (child, mother):
            if click_frame >= b:
                past[:b] = True
            else:
                past[b:] = True
    return past


def evaluate_tracking(
    model: SAM2,
    stacks: Iterable[Any],
    *,
    objects_per_stack: int = 3,
    correction: bool = True,
    min_area: int = MIN_AREA,
    compute_dtype: str = "float32",
    log: Log = None,
    divisions: bool = False,
    stack_kind: str | None = None,
    presence_bias: float | None = None,
) -> dict[str, Any]:
    """One click per object on a stack, propagated through every frame; then one correction.

    For each stack and each of its ``objects_per_stack`` largest objects (by total
    volume): a positive click at :func:`click_point` on the frame where the object is
    largest, propagation forward and backward from there through the whole stack
    (``VideoSession`` with ``corrections_as_conditioning=True``), and the per-frame IoU
    on *every* frame (:func:`mask_iou`: where the object is absent, an empty prediction
    scores 1 and anything else 0). With ``correction``, one more click on the worst
    frame -- positive at the :func:`click_point` of the missed pixels if more pixels were
    missed than spilled, else negative at that of the spilled ones -- then propagation
    again as the plugin propagates after a correction (from the corrected frame outward,
    away from the click: ``VideoSession.correction_runs``), and the per-frame IoU after
    it. Objects are tracked one at a time; each stack's frames are encoded once.

    Parameters
    ----------
    model
        A SAM 2.
    stacks
        (image, labels) pairs of (T, H, W) arrays, or objects with ``.image`` and
        ``.labels`` (e.g. :class:`~napari_sam2.synthetic.SyntheticStack`).
    objects_per_stack, min_area
        How many objects per stack, and the smallest largest-slice area (pixels) an
        object may have.
    correction
        Also measure one correction click.
    compute_dtype
        ``VideoSession``'s compute dtype.
    divisions
        Time-lapses: also account for the frames past a division
        (:func:`frames_past_division`; a z-stack has none, though a nucleus starting on a
        later slice next to another would look like one).
    stack_kind, presence_bias
        As ``VideoSession``'s: ``"t"`` or ``"z"`` tracks with the model's calibrated
        presence bias for that kind of stack, ``presence_bias`` overrides it.
    log
        Optional callable receiving one progress line per object.

    Returns
    -------
    dict
        ``objects``: one dict per object (``stack``, ``label``, ``click_frame``,
        ``frames_present``, ``speed``: :func:`object_speed`, ``before`` / ``after`` mean
        per-frame IoU, ``per_frame_before`` /
        ``per_frame_after``, ``correction``: {frame, x, y, label} or None, ``lost_before`` /
        ``lost_after``: :func:`lost_frames`, ``past_division``: the frames of
        :func:`frames_past_division`); ``mean_before``, ``mean_after`` (means over
        objects; ``after`` is None without ``correction``), ``lost_before`` / ``lost_after``
        (frame counts summed over objects), ``division`` (with ``divisions``, else None):
        how many frames lie past a division and the mean IoU (before the correction) on
        them and on the others, ``interval_before``: a 95% :func:`bootstrap_interval` of
        ``mean_before`` over stacks (None for fewer than two stacks),
        ``count``, ``frames``: the number of frames of each stack.
    """
    records: list[dict[str, Any]] = []
    n_frames: list[int] = []
    for s, stack in enumerate(stacks):
        image, labels = (stack.image, stack.labels) if hasattr(stack, "labels") else stack
        labels = np.asarray(labels)
        if labels.ndim != 3 or np.shape(image)[:3] != labels.shape:
            raise ValueError(f"stack {s}: labels must be (T, H, W) matching the image")
        n_frames.append(labels.shape[0])
        chosen = _largest_objects(labels, objects_per_stack, min_area)
        if not chosen:
            continue
        with VideoSession(
            model, image, compute_dtype=compute_dtype, corrections_as_conditioning=True,
            stack_kind=stack_kind, presence_bias=presence_bias,
        ) as session:  # fmt: skip
            for obj in chosen:
                gt = labels == obj
                others = (labels > 0) & ~gt
                areas = gt.reshape(len(gt), -1).sum(axis=1)  # (T,)
                f0 = int(np.argmax(areas))
                session.reset()
                session.add_prompt(f0, obj, points=[click_point(gt[f0])], labels=[1])
                pred = _propagate(session, obj, f0)
                before = _per_frame(pred, gt)
                rec: dict[str, Any] = {
                    "stack": s, "label": obj, "click_frame": f0, "frames_present": int((areas > 0).sum()),
                    "speed": object_speed(gt),
                    "past_division": np.nonzero(frames_past_division(labels, obj, f0))[0].tolist() if divisions else [],
                    "before": float(np.mean(before)), "per_frame_before": before,
                    "after": None, "per_frame_after": None, "correction": None,
                    "lost_before": lost_frames(pred, gt, others), "lost_after": None,
                }  # fmt: skip
                if correction:
                    rec["after"], rec["per_frame_after"] = rec["before"], before
                    rec["lost_after"] = rec["lost_before"]
                    worst = int(np.argmin(before))
                    if before[worst] < 1.0:
                        # the click refines the tracked mask on that frame, as in the plugin
                        xy, positive = correction_click(pred[worst], gt[worst])
                        points, labs = [xy], [positive]
                        if worst == f0:  # a frame's prompts are replaced: keep the first click
                            points, labs = [click_point(gt[f0]), xy], [1, positive]
                        session.add_prompt(worst, obj, points=points, labels=labs)
                        pred_after = _propagate(session, obj, None)
                        after = _per_frame(pred_after, gt)
                        rec["lost_after"] = lost_frames(pred_after, gt, others)
                        rec["after"], rec["per_frame_after"] = float(np.mean(after)), after
                        rec["correction"] = {"frame": worst, "x": xy[0], "y": xy[1], "label": positive}
                records.append(rec)
                if log is not None:
                    after_txt = "" if rec["after"] is None else f" -> {rec['after']:.3f} after one correction"
                    log(f"stack {s} object {obj}: mean per-frame IoU {rec['before']:.3f}{after_txt}")
    before_all = [r["before"] for r in records]
    after_all = [r["after"] for r in records] if correction else []

    def lost(key: str) -> dict[str, int] | None:
        if not records or records[0][key] is None:
            return None
        return {k: sum(r[key][k] for r in records) for k in records[0][key]}

    past = [v for r in records for t, v in enumerate(r["per_frame_before"]) if t in r["past_division"]]
    rest = [v for r in records for t, v in enumerate(r["per_frame_before"]) if t not in r["past_division"]]
    return {
        "objects": records,
        "count": len(records),
        "division": {
            "frames_past": len(past), "frames_other": len(rest),
            "mean_before_past": float(np.mean(past)) if past else None,
            "mean_before_other": float(np.mean(rest)) if rest else None,
        } if divisions else None,  # fmt: skip
        "mean_before": float(np.mean(before_all)) if before_all else None,
        "mean_after": float(np.mean(after_all)) if after_all else None,
        "interval_before": bootstrap_interval(before_all, [r["stack"] for r in records]),
        "lost_before": lost("lost_before"),
        "lost_after": lost("lost_after"),
        "frames": n_frames,
    }
