"""The :class:`Prompt` dataclass and the one napari <-> SAM 2 coordinate conversion.

napari orders coordinates like numpy, ``(row, col) = (y, x)``; SAM 2 takes ``(x, y)``.
:func:`napari_to_xy` and :func:`xy_to_napari` are the only places where the two columns
are swapped; every reader and writer in the package goes through them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError


def napari_to_xy(coords_rc: Any) -> np.ndarray:
    """Turn napari ``(row, col)`` coordinates into SAM 2 ``(x, y)`` points.

    Parameters
    ----------
    coords_rc : array-like, shape (N, 2) or (2,)
        Points as napari stores them for a 2-D image: ``(row, col) = (y, x)``.

    Returns
    -------
    np.ndarray, shape (N, 2), float32
        The same points as ``(x, y)``.
    """
    rc = np.asarray(coords_rc, dtype=np.float64)
    if rc.shape == (2,):
        rc = rc[None]
    if rc.ndim != 2 or rc.shape[1] != 2:
        raise InputError(f"napari coordinates must have shape (N, 2) as (row, col), got {rc.shape}")
    return np.ascontiguousarray(rc[:, ::-1], dtype=np.float32)  # (N, 2) (y, x) -> (x, y)


def xy_to_napari(points_xy: Any) -> np.ndarray:
    """Turn SAM 2 ``(x, y)`` points into napari ``(row, col)`` coordinates.

    Parameters
    ----------
    points_xy : array-like, shape (N, 2) or (2,)
        Points as ``(x, y)`` pixels.

    Returns
    -------
    np.ndarray, shape (N, 2), float64
        The same points as ``(row, col) = (y, x)``, napari's float64.
    """
    xy = np.asarray(points_xy, dtype=np.float64)
    if xy.shape == (2,):
        xy = xy[None]
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise InputError(f"points must have shape (N, 2) as (x, y), got {xy.shape}")
    return np.ascontiguousarray(xy[:, ::-1])  # (N, 2) (x, y) -> (row, col)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Prompt:
    """The prompts for one object on one frame, in image pixels.

    Attributes
    ----------
    frame : int
        Index along the video axis (0 for a 2-D image).
    obj_id : int
        Object id, >= 1 (0 is background in a label image).
    points_xy : np.ndarray or None
        ``(N, 2)`` float32 clicks as ``(x, y)``; given together with ``labels``.
    labels : np.ndarray or None
        ``(N,)`` int32: 1 = on the object (positive), 0 = background (negative).
    box : np.ndarray or None
        ``(4,)`` float32 box ``x0, y0, x1, y1`` with ``x0 < x1`` and ``y0 < y1``.
    mask : np.ndarray or None
        ``(H, W)`` bool mask prompt.

    Arrays are copied and made read-only. At least one of points, box or mask is given.
    Two prompts are equal when all their fields are.
    """

    frame: int
    obj_id: int
    points_xy: np.ndarray | None  # (N, 2) float32 (x, y)
    labels: np.ndarray | None  # (N,) int32 1/0
    box: np.ndarray | None  # (4,) x0, y0, x1, y1
    mask: np.ndarray | None = None  # (H, W) bool

    def __post_init__(self) -> None:
        for name in ("frame", "obj_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InputError(f"Prompt.{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.frame < 0:
            raise InputError(f"Prompt.frame must be >= 0, got {self.frame}")
        if self.obj_id < 1:
            raise InputError(f"Prompt.obj_id must be >= 1 (0 is background), got {self.obj_id}")
        if self.points_xy is None and self.box is None and self.mask is None:
            raise InputError(f"a prompt needs points, a box or a mask (object {self.obj_id}, frame {self.frame})")
        self._check_points()
        if self.box is not None:
            b = np.asarray(self.box, dtype=np.float32).reshape(-1)
            if b.shape != (4,) or not np.isfinite(b).all():
                raise InputError(f"box must be 4 finite numbers x0, y0, x1, y1, got {self.box!r}")
            if not (b[0] < b[2] and b[1] < b[3]):
                raise InputError(f"box must have x0 < x1 and y0 < y1, got {b.tolist()}")
            object.__setattr__(self, "box", _frozen(b))
        if self.mask is not None:
            m = np.asarray(self.mask)
            if m.ndim != 2 or m.size == 0:
                raise InputError(f"mask must be a non-empty 2-D (H, W) array, got shape {m.shape}")
            if m.dtype != bool and not np.isin(m, (0, 1)).all():
                raise InputError("mask must be boolean or contain only 0 and 1")
            object.__setattr__(self, "mask", _frozen(m.astype(bool)))

    def _check_points(self) -> None:
        if self.points_xy is None and self.labels is None:
            return
        if self.points_xy is None or self.labels is None:
            raise InputError("points_xy and labels must be given together")
        pts = np.asarray(self.points_xy, dtype=np.float32)
        lab = np.asarray(self.labels)
        if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
            raise InputError(f"points_xy must have shape (N, 2) with N >= 1, got {pts.shape}")
        if lab.shape != (pts.shape[0],):
            raise InputError(f"labels must have shape ({pts.shape[0]},), got {lab.shape}")
        if not np.isfinite(pts).all():
            raise InputError("points_xy contains NaN or infinite values")
        if not np.isin(lab, (0, 1)).all():
            raise InputError(f"labels must be 1 (positive) or 0 (negative), got {np.unique(lab).tolist()}")
        object.__setattr__(self, "points_xy", _frozen(pts))
        object.__setattr__(self, "labels", _frozen(lab.astype(np.int32)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Prompt):
            return NotImplemented
        if (self.frame, self.obj_id) != (other.frame, other.obj_id):
            return False
        return all(
            (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
            for a, b in (
                (self.points_xy, other.points_xy),
                (self.labels, other.labels),
                (self.box, other.box),
                (self.mask, other.mask),
            )
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays


def merge_prompts(*groups: Iterable[Prompt]) -> list[Prompt]:
    """Combine prompts for the same (frame, object) into one prompt each.

    ``merge_prompts(points, boxes)`` joins the clicks read from a Points CSV with the boxes
    read from a Shapes CSV. Points are concatenated in order; a (frame, object) may have at
    most one box and one mask across all inputs.

    Parameters
    ----------
    *groups : iterable of Prompt
        Any number of prompt lists.

    Returns
    -------
    list of Prompt
        One prompt per (frame, object), sorted by frame then object id.
    """
    acc: dict[tuple[int, int], dict[str, Any]] = {}
    for group in groups:
        for p in group:
            slot = acc.setdefault((p.frame, p.obj_id), {"pts": [], "lab": [], "box": None, "mask": None})
            if p.points_xy is not None:
                slot["pts"].append(p.points_xy)
                slot["lab"].append(p.labels)
            for name in ("box", "mask"):
                value = getattr(p, name)
                if value is None:
                    continue
                if slot[name] is not None and not np.array_equal(slot[name], value):
                    raise InputError(f"two different {name} prompts for object {p.obj_id} on frame {p.frame}")
                slot[name] = value
    return [
        Prompt(
            frame=frame,
            obj_id=obj_id,
            points_xy=np.concatenate(s["pts"]) if s["pts"] else None,
            labels=np.concatenate(s["lab"]) if s["lab"] else None,
            box=s["box"],
            mask=s["mask"],
        )
        for (frame, obj_id), s in sorted(acc.items())
    ]


def frame_and_plane(shape: Any, axis: int) -> tuple[int, tuple[int, int]]:
    """Split a stack shape into (number of frames, (H, W)); a 2-D shape has one frame."""
    dims = tuple(int(s) for s in shape)
    if len(dims) == 2:
        return 1, (dims[0], dims[1])
    if len(dims) != 3:
        raise InputError(f"shape must be (H, W) or a 3-D stack, got {dims}")
    ax = normalise_axis(axis, 3)
    rest = [d for i, d in enumerate(dims) if i != ax]
    return dims[ax], (rest[0], rest[1])


def normalise_axis(axis: int, ndim: int) -> int:
    """``axis`` in ``[-ndim, ndim)`` as a non-negative index."""
    if not -ndim <= axis < ndim:
        raise InputError(f"axis {axis} is out of range for {ndim}-D data")
    return axis % ndim


def frame_outside(frame: int, n_frames: int) -> str | None:
    """Why a frame index lies outside a stack of ``n_frames``, or None."""
    return None if 0 <= frame < n_frames else f"frame {frame} is outside the stack ({n_frames} frames)"


def outside(frame: int, x: float, y: float, n_frames: int, hw: tuple[int, int]) -> str | None:
    """Why a point lies outside a stack, or None. Pixel i spans [i - 0.5, i + 0.5]."""
    h, w = hw
    if (why := frame_outside(frame, n_frames)) is not None:
        return why
    if not -0.5 <= x <= w - 0.5:
        return f"x={x:g} is outside the image width {w}"
    if not -0.5 <= y <= h - 0.5:
        return f"y={y:g} is outside the image height {h}"
    return None


def clip_box(box: Any, hw: tuple[int, int]) -> np.ndarray | None:
    """``box`` (x0, y0, x1, y1) clipped to the image extent, or None if nothing is left.

    A rectangle dragged in napari often overshoots the image edge by a little; that part of
    the box carries no information, so it is cut rather than refused.
    """
    h, w = hw
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = max(x0, -0.5), min(x1, w - 0.5)
    y0, y1 = max(y0, -0.5), min(y1, h - 0.5)
    if x0 >= x1 or y0 >= y1:
        return None
    return np.array([x0, y0, x1, y1], dtype=np.float32)
