"""Prompts at the engine's edges: loose arrays in, model inputs out.

:func:`loose_prompt` checks loose arrays (as the official predictors take them) and makes a
:class:`~napari_sam2.prompt.Prompt`; the bounds rule is :func:`napari_sam2.prompt.inside`,
this module only adds friendly messages for arrays of the wrong kind or shape (text,
``None``, ragged lists). :func:`model_inputs` turns a Prompt into what the model's prompt
encoder takes (torch is imported there only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..prompt import Prompt, inside

if TYPE_CHECKING:
    import torch

    from .memory import PointPrompt


def as_numbers(value: Any, name: str, shape: str) -> np.ndarray:
    """``value`` as a float64 array; text, ``None``, ragged lists and other objects raise InputError."""
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged nesting, e.g. [[1, 2], [3]]
        arr = np.asarray(None)
    if arr.dtype.kind not in "iuf":
        raise InputError(f"{name} must be numbers in shape {shape}, got {value!r:.80}")
    return arr.astype(np.float64)


def check_points(coords: Any, labels: Any, hw: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validate (N, 2) (x, y) points and (N,) 0/1 labels for an image of size ``hw``."""
    if coords is None and labels is None:
        return None, None
    if coords is None or labels is None:
        raise InputError("point_coords and point_labels must be given together")
    pts = as_numbers(coords, "point_coords", "(N, 2) as (x, y)")
    try:
        lab = np.asarray(labels)
    except ValueError:
        raise InputError(f"point_labels must be a list of 1 (object) or 0 (background), got {labels!r:.80}") from None
    if pts.ndim == 1 and pts.shape == (2,):
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(f"point_coords must have shape (N, 2) as (x, y), got {np.asarray(coords).shape}")
    if pts.shape[0] == 0:
        raise InputError("point_coords is empty: give at least one point, or None")
    lab = lab.reshape(-1) if lab.ndim <= 1 else lab
    if lab.ndim != 1 or lab.shape[0] != pts.shape[0]:
        raise InputError(f"got {pts.shape[0]} points but point_labels has shape {np.asarray(labels).shape}")
    if not np.isfinite(pts).all():
        raise InputError("point_coords contains NaN or infinite values")
    if not np.isin(lab, (0, 1)).all():
        raise InputError(f"point_labels must be 1 (object) or 0 (background), got {np.unique(lab).tolist()}")
    ok = inside(pts[:, 0], pts[:, 1], hw)
    if not ok.all():
        bad = pts[~ok][0]
        raise InputError(
            f"point (x={bad[0]:g}, y={bad[1]:g}) is outside the image "
            f"(width {hw[1]}, height {hw[0]}); points are (x, y) pixels"
        )
    return pts.astype(np.float32), lab.astype(np.int32)


def check_box(box: Any, hw: tuple[int, int]) -> np.ndarray | None:
    """Validate a (4,) box x0, y0, x1, y1 with x0 < x1, y0 < y1, inside the image."""
    if box is None:
        return None
    b = as_numbers(box, "box", "(4,) as x0, y0, x1, y1").reshape(-1)
    if b.shape != (4,):
        raise InputError(f"box must be 4 numbers x0, y0, x1, y1, got shape {np.asarray(box).shape}")
    if not np.isfinite(b).all():
        raise InputError("box contains NaN or infinite values")
    x0, y0, x1, y1 = b
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"box must have x0 < x1 and y0 < y1, got x0={x0:g}, y0={y0:g}, x1={x1:g}, y1={y1:g}")
    if not inside(b[[0, 2]], b[[1, 3]], hw).all():
        raise InputError(
            f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the image (width {hw[1]}, height {hw[0]})"
        )
    return b.astype(np.float32)


def loose_prompt(
    frame: int, obj_id: int, points: Any, labels: Any, box: Any, mask: Any, hw: tuple[int, int]
) -> Prompt:
    """The :class:`Prompt` of loose ``points``/``labels``/``box``/``mask`` arguments, checked against ``hw``."""
    if mask is not None:
        if points is not None or labels is not None or box is not None:
            raise InputError("give either a mask or points/box for one frame, not both")
        # Prompt checks the values and Prompt.check the shape; model_inputs refuses an empty mask
        return Prompt(frame=frame, obj_id=obj_id, points_xy=None, labels=None, box=None, mask=mask).check(hw)
    pts, labs = check_points(points, labels, hw)
    b = check_box(box, hw)
    if pts is None and b is None:
        raise InputError("the prompt is empty: give points with labels, a box, or a mask")
    return Prompt(frame=frame, obj_id=obj_id, points_xy=pts, labels=labs, box=b)


def model_inputs(
    prompt: Prompt, hw: tuple[int, int], image_size: int, device: torch.device
) -> tuple[PointPrompt | None, torch.Tensor | None]:
    """``prompt`` as the model takes it: (box corners then clicks in model pixels, None), or for a
    mask prompt (None, a (1, 1, S, S) 0/1 mask resized as the official predictor does)."""
    import torch
    import torch.nn.functional as F

    from ..model.prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT
    from .memory import PointPrompt

    if prompt.mask is not None:
        if not prompt.mask.any():
            raise InputError("the mask is empty; to drop an object use remove_object or clear_prompts")
        t = torch.from_numpy(np.array(prompt.mask, dtype=np.float32))[None, None].to(device)
        if t.shape[-2:] != (image_size, image_size):
            t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
            t = (t >= 0.5).float()
        return None, t
    h, w = hw
    coords, labels = [], []
    if prompt.box is not None:
        coords.append(prompt.box.reshape(2, 2))
        labels.append(np.array([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], dtype=np.int32))
    if prompt.points_xy is not None and prompt.labels is not None:
        coords.append(prompt.points_xy)
        labels.append(prompt.labels)
    xy = torch.from_numpy(np.concatenate(coords)).float()
    xy = xy / torch.tensor([w, h], dtype=torch.float32) * image_size  # image pixels -> model pixels
    points = torch.from_numpy(np.concatenate(labels))[None].to(device)
    return PointPrompt(coords=xy[None].to(device), labels=points), None
