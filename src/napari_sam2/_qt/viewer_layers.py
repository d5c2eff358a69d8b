"""The viewer side of a session: free layer names, the preview / result Labels layers, and
slicing the viewer along the video axis. Only the viewer's public API is used."""

from __future__ import annotations

from typing import Any

import numpy as np

from .stack import StackSpec

PREVIEW_NAME, RESULT_NAME = "SAM2 preview", "SAM2 result"


def unique_name(viewer: Any, base: str) -> str:
    """``base``, or ``base [2]``, ``base [3]``, ... whichever is not a layer name yet."""
    names = {layer.name for layer in viewer.layers}
    if base not in names:
        return base
    i = 2
    while f"{base} [{i}]" in names:
        i += 1
    return f"{base} [{i}]"


def ensure_labels_layer(
    viewer: Any, base: str, spec: StackSpec, image_layer: Any, *, opacity: float, clear: bool
) -> Any:
    """Adopt ``"<base> [<image>]"`` if it is a Labels layer of the image's shape, else add one.

    ``clear`` empties an adopted layer (the preview); the result layer keeps its labels.
    A same-named layer of another kind or shape is left alone and a free name is used.
    """
    name = f"{base} [{spec.layer_name}]"
    if name in viewer.layers:
        layer = viewer.layers[name]
        if type(layer).__name__ == "Labels" and tuple(layer.data.shape) == spec.shape:
            if clear:
                layer.data = np.zeros(spec.shape, dtype=np.uint32)
            layer.scale = spec.scale
            return layer
        name = unique_name(viewer, name)
    # np.zeros is calloc-backed: slices never written take no RAM
    return viewer.add_labels(
        np.zeros(spec.shape, dtype=np.uint32),
        name=name,
        scale=spec.scale,
        translate=tuple(np.asarray(image_layer.translate)[-spec.ndim :]),
        opacity=opacity,
    )


def show_video_axis(viewer: Any, spec: StackSpec) -> None:
    """Make the viewer slice along the video axis (so it is not one of the displayed axes)."""
    if spec.video_axis is None:
        return
    dims = viewer.dims
    offset = dims.ndim - spec.ndim
    video = offset + spec.video_axis
    if video not in dims.displayed or dims.ndisplay != 2:
        return
    plane = [offset + a for a in spec.plane_axes]
    rest = [d for d in dims.order if d not in (video, *plane)]
    dims.order = (*rest, video, *plane)


def shown_frame(viewer: Any, image_layer: Any, spec: StackSpec | None) -> int:
    """The slice of the video axis the viewer shows now (0 for a 2-D image or before a session)."""
    if spec is None or spec.video_axis is None:
        return 0
    pos = image_layer.world_to_data(viewer.dims.point)
    return int(np.clip(np.rint(pos[-spec.ndim :][spec.video_axis]), 0, spec.n_frames - 1))


def video_dim(viewer: Any, spec: StackSpec) -> int:
    """The viewer dimension of the video axis."""
    return viewer.dims.ndim - spec.ndim + (spec.video_axis or 0)
