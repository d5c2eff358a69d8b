"""Stacks: one click per object propagated through every frame, then one correction
(:func:`evaluate_tracking`), and what a track is measured by: its object's speed
(:func:`object_speed`), the frames it loses (:func:`lost_frames`) and those a division
separates from the click (:func:`frames_past_division`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..engine.editor import Editor
from ..engine.session import VideoSession
from ..prompt import Prompt, PromptSet
from ..model.sam2 import SAM2
from ..synthetic import divisions as find_divisions
from .metrics import MIN_AREA, Log, bootstrap_interval, click_point, correction_click, mask_iou

__all__ = ["evaluate_tracking", "frames_past_division", "lost_frames", "object_speed"]


def _largest_objects(labels: np.ndarray, n: int, min_area: int) -> list[int]:
    """The ``n`` ids with the largest total volume whose largest slice has >= ``min_area`` pixels."""
    n_ids = int(labels.max()) + 1
    areas = np.stack([np.bincount(sl.ravel(), minlength=n_ids) for sl in labels])  # (T, n_ids)
    volume, peak = areas.sum(axis=0), areas.max(axis=0)
    keep = [i for i in range(1, n_ids) if volume[i] > 0 and peak[i] >= min_area]
    keep.sort(key=lambda i: (-int(volume[i]), i))
    return keep[:n]


def _propagate(editor: Editor, obj: int) -> np.ndarray:
    """Propagate as the plugin's Propagate ("both"): from the prompt both ways, or after a
    correction outward from the corrected frame (``Editor.plan``); return ``obj``'s (T, H, W)
    masks on every frame."""
    for _ in editor.propagate(editor.plan("both")):
        pass
    session = editor.session
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
            editor = Editor(session)  # the plugin's edit path: a first click, then a correction
            for obj in chosen:
                gt = labels == obj
                others = (labels > 0) & ~gt
                areas = gt.reshape(len(gt), -1).sum(axis=1)  # (T,)
                f0 = int(np.argmax(areas))
                editor.reset()
                first = Prompt(frame=f0, obj_id=obj, points_xy=[click_point(gt[f0])], labels=[1], box=None)
                editor.apply(PromptSet.of([first]))
                pred = _propagate(editor, obj)
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
                        fix = Prompt(frame=worst, obj_id=obj, points_xy=points, labels=labs, box=None)
                        editor.apply(PromptSet({p.key: p for p in (first, fix)}))  # fix replaces first on f0
                        pred_after = _propagate(editor, obj)
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
