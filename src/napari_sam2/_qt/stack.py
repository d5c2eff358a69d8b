"""What SAM 2 sees of a napari Image layer: a stack of 2-D frames along one "video" axis.

No Qt here, and no napari import: only the layer's public attributes (``data``, ``rgb``,
``multiscale``, ``scale``, ``name``) are read, so the rules are easy to test.

Accepted layers (napari axis order, channels only as an RGB(A) last axis):

* 2-D ``(Y, X)`` or ``(Y, X, C)``: one frame, nothing to propagate;
* 3-D ``(N, Y, X)`` or ``(N, Y, X, C)``: N frames along the video axis, which may be any of
  the three axes (the other two are the plane SAM 2 segments).

Anything else (1-D, 4-D without RGB, 5-D, ...) raises :class:`InputError` saying what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..io.frame_view import FrameView

#: what the video axis is: time (a time-lapse) or z (a z-stack); names the OME-Zarr axis
AXIS_KINDS = ("t", "z")


@dataclass(frozen=True, eq=False)
class StackSpec:
    """One Image layer seen as frames along ``video_axis``.

    Attributes
    ----------
    layer_name : str
        The Image layer's name (for messages and layer names).
    data : array-like
        The layer's full-resolution data (numpy, dask, zarr, ...), napari axis order.
    shape : tuple of int
        The labels' shape: the layer's shape without the RGB(A) axis (2 or 3 entries).
    video_axis : int or None
        Index into ``shape`` of the frame axis; None for a 2-D image.
    axis_kind : str
        ``"t"`` or ``"z"`` (OME-Zarr axis name of the video axis).
    scale : tuple of float
        The layer's scale, one entry per axis of ``shape``.
    rgb : bool
        Whether the data has a trailing colour axis.
    """

    layer_name: str
    data: Any
    shape: tuple[int, ...]
    video_axis: int | None
    axis_kind: str
    scale: tuple[float, ...]
    rgb: bool

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_layer(cls, layer: Any, video_axis: int | None = None, axis_kind: str = "t") -> StackSpec:
        """Describe an Image layer, or raise :class:`InputError` with what to do instead."""
        if layer is None:
            raise InputError("there is no image layer: open an image first (File > Open, or File > Open Sample > SAM 2)")
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        rgb = bool(getattr(layer, "rgb", False))
        full = tuple(int(n) for n in data.shape)
        shape = full[:-1] if rgb else full
        name = str(layer.name)
        if len(shape) not in (2, 3):
            hint = {
                1: "SAM 2 needs an image of at least 2-D (Y, X)",
                4: "pick one time point or one channel first (e.g. a 3-D slice with "
                "`layer.data[t]`), or open the channels as separate layers",
            }.get(len(shape), "reduce it to a 2-D image or a 3-D stack first")
            raise InputError(
                f"layer {name!r} is {len(shape)}-D {shape}; SAM 2 segments 2-D images (Y, X) and 3-D "
                f"stacks (T or Z, Y, X), optionally RGB: {hint}"
            )
        if min(shape) < 1:
            raise InputError(f"layer {name!r} is empty (shape {full})")
        if axis_kind not in AXIS_KINDS:
            raise InputError(f"the video axis is time ('t') or z ('z'), got {axis_kind!r}")
        if len(shape) == 2:
            video_axis = None
        else:
            video_axis = 0 if video_axis is None else int(video_axis)
            if not 0 <= video_axis < 3:
                raise InputError(f"the video axis of a 3-D layer is 0, 1 or 2, got {video_axis}")
        dtype = np.dtype(data.dtype)
        if not (dtype == np.bool_ or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise InputError(f"layer {name!r} has dtype {dtype}; SAM 2 needs numbers (integers, floats or bool)")
        scale = tuple(float(s) for s in np.asarray(layer.scale)[-len(shape) :])
        return cls(name, data, shape, video_axis, axis_kind, scale, rgb)

    # ---------------------------------------------------------------- geometry
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def n_frames(self) -> int:
        return 1 if self.video_axis is None else self.shape[self.video_axis]

    @property
    def plane_axes(self) -> tuple[int, int]:
        """The two axes (indices into ``shape``) of one frame, in (row, col) order."""
        if self.video_axis is None:
            return (0, 1)
        rest = [i for i in range(3) if i != self.video_axis]
        return rest[0], rest[1]

    @property
    def hw(self) -> tuple[int, int]:
        r, c = self.plane_axes
        return self.shape[r], self.shape[c]

    @property
    def ome_axes(self) -> str:
        """OME-Zarr axis names of the labels as written (the video axis first)."""
        return "yx" if self.video_axis is None else f"{self.axis_kind}yx"

    def frames(self) -> Any:
        """The data as a lazy (N, H, W[, C]) array for ``VideoSession`` (a 2-D image is one frame)."""
        if self.video_axis == 0:
            return self.data
        return FrameView(self.data, self.video_axis)  # video axis None: the image is the one frame

    def plane_index(self, frame: int) -> tuple[Any, ...]:
        """Index into an array of ``shape`` that selects frame ``frame`` as (H, W)."""
        if self.video_axis is None:
            return (slice(None), slice(None))
        return (slice(None),) * self.video_axis + (int(frame),)

    def frame_of(self, coords: np.ndarray) -> np.ndarray:
        """Frame index of each row of (N, ndim) data coordinates (nearest slice)."""
        if self.video_axis is None:
            return np.zeros(len(coords), dtype=int)
        return np.rint(coords[:, self.video_axis]).astype(int)

    def full_coords(self, frame: int, rc: Any) -> np.ndarray:
        """(ndim,) data coordinates of in-plane (row, col) ``rc`` on ``frame``."""
        full = np.zeros(self.ndim)
        r, c = self.plane_axes
        full[r], full[c] = rc
        if self.video_axis is not None:
            full[self.video_axis] = frame
        return full

    def plane_rc(self, coords: np.ndarray) -> np.ndarray:
        """(N, 2) in-plane (row, col) of (N, ndim) data coordinates."""
        return coords[:, list(self.plane_axes)]

    def same_source(self, other: StackSpec) -> bool:
        """Same data object seen the same way (frames, axis, scale)."""
        mine = (self.shape, self.video_axis, self.axis_kind, self.scale, self.rgb)
        theirs = (other.shape, other.video_axis, other.axis_kind, other.scale, other.rgb)
        return self.data is other.data and mine == theirs

