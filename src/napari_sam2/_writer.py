"""napari writer: a Labels layer -> OME-Zarr labels (NGFF 0.5, zarr v3), prompts JSON beside it.

``File > Save Selected Layers…`` with a Labels layer selected and a ``.zarr`` name offers
"napari-sam2". The store is written by :mod:`napari_sam2.io.labels` (atomically; scale and
axes kept; readable by ome-zarr-py and napari-ome-zarr). When the layer comes from the SAM 2
widget, its metadata names the axes (``tyx`` / ``zyx``), the video axis and the prompts; the
prompts are also written as ``<name>.prompts.json`` next to the store, so the session can be
replayed (``Load prompts…`` in the widget, or ``io.read_prompts_json``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, OutputExistsError


def prompts_path(store: str | Path) -> Path:
    """Where the prompts of ``store`` go: ``result.zarr`` -> ``result.prompts.json``."""
    p = Path(store)
    return p.with_name(p.name.removesuffix(".zarr") + ".prompts.json")


def _check_sidecar(target: Path) -> None:
    """The prompts file beside a store may replace only an earlier prompts file of ours."""
    from .io import read_prompts_json

    if not os.path.lexists(target):
        return
    try:
        if target.is_symlink() or not target.is_file():
            raise InputError("not a file")
        read_prompts_json(target)
    except Exception:  # noqa: BLE001 - anything that is not our prompts JSON is not ours to replace
        raise OutputExistsError(
            f"{target} exists and is not a napari-sam2 prompts file; move it away or choose another name"
        ) from None


def save_labels(
    path: str | Path,
    data: Any,
    *,
    scale: Any = None,
    units: Any = None,
    sam2: dict[str, Any] | None = None,
) -> list[str]:
    """Write ``data`` (napari axis order) as OME-Zarr labels; returns the paths written.

    Arguments:
        path: the store, e.g. ``result.zarr``.
        data: (Y, X) or 3-D labels.
        scale: the layer's scale (carried to the NGFF ``scale`` transform).
        units: the layer's units (``pixel`` is dropped).
        sam2: the widget's metadata (``axes``, ``video_axis``, ``prompts``, ...), if any.
    """
    from .io import LabelWriter, label_dtype, write_prompts_json
    from .io.labels import check_replaceable
    from .io.prompts import prompts_from_dict

    path = Path(path)
    if path.suffix != ".zarr":
        path = path.with_name(path.name + ".zarr")
    sam2 = dict(sam2 or {})
    ndim = len(data.shape)
    if ndim not in (2, 3):
        raise InputError(f"OME-Zarr labels are written for 2-D and 3-D layers; this layer is {ndim}-D {data.shape}")
    axes = sam2.get("axes") or ("yx" if ndim == 2 else "zyx")
    video_axis = sam2.get("video_axis") or 0
    scale = [1.0] * ndim if scale is None else [float(s) for s in scale][-ndim:]
    unit_list = None if units is None else [str(u) for u in units][-ndim:]
    if ndim == 3 and video_axis:
        data = np.moveaxis(np.asarray(data), video_axis, 0)  # the video axis goes first in NGFF
        order = [video_axis, *[a for a in range(3) if a != video_axis]]
        scale = [scale[a] for a in order]
        unit_list = None if unit_list is None else [unit_list[a] for a in order]
    # napari's Save dialog has asked before replacing; still, only our own earlier save is replaced
    check_replaceable(path, overwrite=True)
    if sam2.get("prompts"):
        _check_sidecar(prompts_path(path))
    top = int(np.max(data)) if np.asarray(data).size else 0
    frames = range(data.shape[0]) if ndim == 3 else range(1)
    metadata = {k: v for k, v in sam2.items() if k in ("image", "model", "prompts", "mask_choices", "video_axis")}
    with LabelWriter(
        path, tuple(data.shape), dtype=label_dtype(top), scale=scale, axes=axes, units=unit_list,
        metadata=metadata, overwrite=True,
    ) as writer:  # fmt: skip
        for t in frames:
            writer.write_frame(t, np.asarray(data[t] if ndim == 3 else data))
    written = [str(path)]
    if sam2.get("prompts"):
        doc = sam2["prompts"]
        target = prompts_path(path)
        write_prompts_json(target, prompts_from_dict(doc), axis=int(doc.get("axis", 0)), stack_kind=doc.get("stack_kind"))
        written.append(str(target))
    return written


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer for Labels (``File > Save``)."""
    from .io.labels import METADATA_KEY

    md = meta.get("metadata") or {}
    return save_labels(path, data, scale=meta.get("scale"), units=meta.get("units"), sam2=md.get(METADATA_KEY))
