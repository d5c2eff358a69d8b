"""OME-Zarr (NGFF 0.5) metadata for our label stores: building it and finding labels in a store.

Only plain dictionaries and ``zarr`` here; ``labels.py`` owns the writing and the atomic commit.
:data:`METADATA_KEY` names our own attribute, here and everywhere else it is read or written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zarr

from ..errors import InputError

NGFF_VERSION = "0.5"
#: the attribute that holds our own facts: on a store's root group (the writer, whether an image
#: is stored) and on its label image (model, prompts, package version); in napari, the key of a
#: Labels layer's ``metadata`` that holds the same facts
METADATA_KEY = "napari_sam2"
AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
# napari calls an axis without a physical unit "pixel"; NGFF has no such unit: leave it out.
_NO_UNIT = {None, "", "pixel", "pixels", "px"}


def check_axes(axes: str, ndim: int) -> str:
    """The axis names for a ``ndim``-D label stack: ``yx``, or ``t``/``z`` then ``yx``.

    A 2-D shape takes the last two letters of ``axes`` (so the default ``"zyx"`` works).
    """
    axes = axes.lower()
    if ndim == 2:
        axes = axes[-2:]
    if len(axes) != ndim or axes[-2:] != "yx" or (ndim == 3 and axes[0] not in "tz"):
        raise InputError(f"axes must be 'yx', 'zyx' or 'tyx' for a {ndim}-D label stack, got {axes!r}")
    return axes


def image_axes(axes: str, channels: bool) -> str:
    """Axis names of the stored image: NGFF orders time, channel, then space."""
    if not channels:
        return axes
    return "tc" + axes[1:] if axes[0] == "t" else "c" + axes


def multiscales(
    name: str, axes: str, scale: Sequence[float], units: Sequence[str | None] | None
) -> list[dict[str, Any]]:
    """A single-scale ``multiscales`` list: one dataset at path ``"0"`` with a scale transform."""
    unit_of = dict(zip(axes.replace("c", ""), units or (), strict=False))
    entries = []
    for a in axes:
        entry = {"name": a, "type": AXIS_TYPES[a]}
        if unit_of.get(a) not in _NO_UNIT:
            entry["unit"] = unit_of[a]
        entries.append(entry)
    transform = {"type": "scale", "scale": [float(s) for s in scale]}
    return [{"name": name, "axes": entries, "datasets": [{"path": "0", "coordinateTransformations": [transform]}]}]


def ome(**fields: Any) -> dict[str, Any]:
    """The ``ome`` attribute of an NGFF 0.5 group."""
    return {"ome": {"version": NGFF_VERSION, **fields}}


def _ome_attrs(group: zarr.Group) -> dict[str, Any]:
    attrs = group.attrs.asdict()
    return attrs.get("ome", attrs)  # 0.5 nests under "ome"; 0.4 keeps it at the top


def find_label_group(root: zarr.Group, name: str | None, source: str) -> zarr.Group:
    """The label image in ``root``: the root itself, or ``labels/<name>`` (default: the first)."""
    attrs = _ome_attrs(root)
    if "image-label" in attrs and "multiscales" in attrs:
        return root
    container = root
    if "labels" not in attrs:
        try:
            container = root["labels"]
        except KeyError:
            raise InputError(f"{source}: no OME-Zarr labels in this store") from None
    names = list(_ome_attrs(container).get("labels", []))
    if not names:
        raise InputError(f"{source}: the labels group lists no label images")
    chosen = names[0] if name is None else name
    if chosen not in names:
        raise InputError(f"{source}: no label image {chosen!r}; it has {', '.join(names)}")
    group = container[chosen]
    if not isinstance(group, zarr.Group) or "multiscales" not in _ome_attrs(group):
        raise InputError(f"{source}: labels/{chosen} is not an OME-Zarr label image")
    return group


def read_multiscale(
    group: zarr.Group, source: str
) -> tuple[zarr.Array, tuple[float, ...], tuple[str, ...], tuple[str | None, ...]]:
    """The full-resolution array of an NGFF image group with its scale, axis names and units."""
    try:
        ms = _ome_attrs(group)["multiscales"][0]
        dataset = ms["datasets"][0]
        array = group[dataset["path"]]
        axes = ms.get("axes", [])
        names = tuple(a["name"] if isinstance(a, dict) else str(a) for a in axes)
        units = tuple(a.get("unit") if isinstance(a, dict) else None for a in axes)
        scale = [1.0] * array.ndim
        transforms = list(dataset.get("coordinateTransformations", [])) + list(ms.get("coordinateTransformations", []))
        for t in transforms:
            if t.get("type") == "scale":
                scale = [a * float(b) for a, b in zip(scale, t["scale"], strict=True)]
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise InputError(f"{source}: invalid OME-Zarr multiscales metadata ({e!r})") from None
    if not isinstance(array, zarr.Array) or len(scale) != array.ndim:
        raise InputError(f"{source}: multiscales metadata does not match the stored array")
    if names and len(names) != array.ndim:  # guessing the axes would misread the image
        raise InputError(
            f"{source}: the multiscales metadata names {len(names)} axes ({', '.join(names)}) "
            f"but the array is {array.ndim}-D {tuple(array.shape)}"
        )
    if not names:  # NGFF before 0.3 names no axes
        names, units = tuple("tczyx"[-array.ndim :]), (None,) * array.ndim
    return array, tuple(scale), names, units
