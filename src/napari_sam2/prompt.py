"""The one prompt type, the one coordinate conversion and the one bounds rule.

At the bottom of the package (numpy only, no torch, no Qt), imported by io, the engine and
every driver (the napari widget, the CLI, dask batch, evaluation):

* :class:`Prompt` -- the clicks, box or mask for one object on one frame, in image pixels
  ``(x, y)``; :class:`PromptSet` -- one prompt per (frame, object).
* :func:`napari_to_xy` / :func:`xy_to_napari` -- napari orders coordinates like numpy,
  ``(row, col) = (y, x)``; SAM 2 takes ``(x, y)``. These are the only places where the two
  columns are swapped.
* :func:`inside` -- pixel ``i`` covers ``[i - 0.5, i + 0.5]``, so an image of width ``W`` and
  height ``H`` spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``; :meth:`Prompt.check` and
  :func:`outside` say why a prompt does not fit a stack.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError

#: a prompt's place: (frame, object id)
Key = tuple[int, int]


def inside(x: Any, y: Any, hw: tuple[int, int]) -> Any:
    """Whether points ``(x, y)`` lie on an image of size ``hw = (H, W)`` (the one bounds rule).

    Parameters
    ----------
    x, y : float or array-like
        Pixel coordinates; pixel ``i`` covers ``[i - 0.5, i + 0.5]``.
    hw : (int, int)
        Image height and width.

    Returns
    -------
    bool or np.ndarray of bool
        Elementwise: ``-0.5 <= x <= W - 0.5`` and ``-0.5 <= y <= H - 0.5``.
    """
    x0, y0, x1, y1 = extent(hw)
    x, y = np.asarray(x), np.asarray(y)
    ok = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    return bool(ok) if ok.ndim == 0 else ok


def extent(hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """The image's extent ``(x0, y0, x1, y1)`` in pixels: pixel ``i`` covers ``[i - 0.5, i + 0.5]``."""
    h, w = hw
    return -0.5, -0.5, w - 0.5, h - 0.5


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

    @property
    def key(self) -> Key:
        """``(frame, obj_id)``: where this prompt belongs."""
        return (self.frame, self.obj_id)

    @property
    def is_single_click(self) -> bool:
        """One click and no box or mask: the ambiguous case where SAM 2 offers 3 candidate masks."""
        return self.box is None and self.mask is None and self.points_xy is not None and len(self.points_xy) == 1

    def check(self, hw: tuple[int, int], n_frames: int | None = None) -> Prompt:
        """Raise :class:`~napari_sam2.errors.InputError` unless the prompt fits the stack.

        Parameters
        ----------
        hw : (int, int)
            Frame height and width.
        n_frames : int, optional
            Number of frames; when given, ``frame`` must be one of them.

        Returns
        -------
        Prompt
            ``self``, for chaining.
        """
        h, w = hw
        if n_frames is not None and (why := frame_outside(self.frame, n_frames)) is not None:
            raise InputError(why)
        if self.points_xy is not None:
            ok = inside(self.points_xy[:, 0], self.points_xy[:, 1], hw)
            if not ok.all():
                bad = self.points_xy[~ok][0]
                raise InputError(
                    f"point (x={bad[0]:g}, y={bad[1]:g}) is outside the image "
                    f"(width {w}, height {h}); points are (x, y) pixels"
                )
        if self.box is not None and not inside(self.box[[0, 2]], self.box[[1, 3]], hw).all():
            x0, y0, x1, y1 = (float(v) for v in self.box)
            raise InputError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the image (width {w}, height {h})")
        if self.mask is not None and self.mask.shape != (h, w):
            raise InputError(f"mask must have the frame's shape {(h, w)}, got {self.mask.shape}")
        return self


class PromptSet(Mapping[Key, Prompt]):
    """One :class:`Prompt` per (frame, object): what a user has placed on a stack.

    A read-only mapping ``(frame, obj_id) -> Prompt``; build it from prompts with
    :meth:`of` (several for one place are merged, as :func:`merge_prompts`).
    """

    def __init__(self, prompts: Mapping[Key, Prompt] | None = None) -> None:
        self._prompts: dict[Key, Prompt] = dict(sorted((prompts or {}).items()))
        for key, p in self._prompts.items():
            if p.key != key:
                raise InputError(f"the prompt for object {p.obj_id} on frame {p.frame} is filed under {key}")

    @classmethod
    def of(cls, prompts: Iterable[Prompt]) -> PromptSet:
        """The set of ``prompts``, merging those for the same (frame, object)."""
        return cls({p.key: p for p in merge_prompts(prompts)})

    def __getitem__(self, key: Key) -> Prompt:
        return self._prompts[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._prompts)

    def __len__(self) -> int:
        return len(self._prompts)

    def __repr__(self) -> str:
        return f"PromptSet({len(self)} prompts, objects {self.obj_ids})"

    @property
    def obj_ids(self) -> list[int]:
        """The objects with a prompt, in increasing order."""
        return sorted({obj for _, obj in self._prompts})

    @property
    def frames(self) -> list[int]:
        """The frames with a prompt, in increasing order."""
        return sorted({frame for frame, _ in self._prompts})

    def frames_of(self, obj_id: int) -> list[int]:
        """The frames where ``obj_id`` has a prompt, in increasing order."""
        return sorted(f for f, o in self._prompts if o == obj_id)

    def changed(self, other: Mapping[Key, Prompt]) -> set[Key]:
        """The places whose prompt differs between ``self`` and ``other`` (added, removed or edited)."""
        keys = set(self._prompts) | set(other)
        return {k for k in keys if self._prompts.get(k) != other.get(k)}


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
    """Why a point lies outside a stack, or None (the rule of :func:`inside`)."""
    h, w = hw
    x0, y0, x1, y1 = extent(hw)
    if (why := frame_outside(frame, n_frames)) is not None:
        return why
    if not x0 <= x <= x1:
        return f"x={x:g} is outside the image width {w}"
    if not y0 <= y <= y1:
        return f"y={y:g} is outside the image height {h}"
    return None


def clip_box(box: Any, hw: tuple[int, int]) -> np.ndarray | None:
    """``box`` (x0, y0, x1, y1) clipped to the image extent, or None if nothing is left.

    A rectangle dragged in napari often overshoots the image edge by a little; that part of
    the box carries no information, so it is cut rather than refused.
    """
    left, top, right, bottom = extent(hw)
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = max(x0, left), min(x1, right)
    y0, y1 = max(y0, top), min(y1, bottom)
    if x0 >= x1 or y0 >= y1:
        return None
    return np.array([x0, y0, x1, y1], dtype=np.float32)
