"""napari reader for the label stores napari-sam2 writes (``napari result.zarr``, File > Open).

Our own stores (:func:`napari_sam2.io.labels.is_label_store`, which checks our metadata, not
the name) are read here. napari offers every reader that accepts folders for any folder and
preselects the first by name, which is ours: another folder is handed to the reader napari
would have used (napari-ome-zarr for a zarr store, else napari's builtins), so accepting the
preselection never fails where it worked before. Files other than ``*.zarr`` are not ours.

A store opens as one Labels layer, read lazily (dask), named after the store (``result.zarr``
-> ``result``), with the NGFF scale, translation, axis names and units, and the label image's
``napari_sam2`` metadata (model, prompts, mask choices, ...) as ``metadata["napari_sam2"]``,
where the SAM 2 widget and our writer look for it, so saving the layer again keeps it. The
root image is left out when it is our all-zero placeholder (it would hide the labels under an
opaque black layer); a real image stored with ``image=`` opens as an Image layer under them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

LayerData = tuple[Any, dict[str, Any], str]


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader command: a function reading ``path`` if it is one of our label stores, else None."""
    from .io.labels import is_label_store

    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None  # a stack of stores is not something we make
        path = path[0]
    if not isinstance(path, str | os.PathLike):
        return None
    if is_label_store(path):
        return read_label_store
    if os.path.isdir(path):
        # napari offers every directory reader for any folder and preselects the first name,
        # "SAM 2": a folder we did not write goes to the reader napari would otherwise have used
        return read_with_another_reader
    return None


#: who reads a folder that is not ours, in this order (an OME-Zarr store: napari-ome-zarr first)
_OTHERS_FOR_ZARR = ("napari-ome-zarr", "napari")
_OTHERS = ("napari",)


def read_with_another_reader(path: str | list[str]) -> list[LayerData]:
    """Read a folder that is not one of our stores with napari's builtins (or napari-ome-zarr for zarr)."""
    import npe2

    if isinstance(path, list | tuple):
        path = path[0]
    is_zarr = os.path.isfile(os.path.join(path, "zarr.json")) or os.path.isfile(os.path.join(path, ".zgroup"))
    installed = {m.name for m in npe2.PluginManager.instance().iter_manifests()}
    errors = []
    for plugin in (_OTHERS_FOR_ZARR if is_zarr else _OTHERS):
        if plugin not in installed:
            continue
        try:
            return npe2.read([path], stack=False, plugin_name=plugin)
        except ValueError as e:  # that reader refused it too
            errors.append(f"{plugin}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    raise ValueError(f"{path} is not a napari-sam2 label store, and no other reader could open it ({'; '.join(errors)})")


def read_label_store(path: str | list[str]) -> list[LayerData]:
    """The layers of one of our label stores: [Image (only if stored),] Labels."""
    import dask.array as da
    import zarr

    from .io._ngff import read_multiscale
    from .io.labels import METADATA_KEY, read_labels, stores_placeholder_image

    if isinstance(path, list | tuple):
        path = path[0]
    store = Path(path)
    stem = store.name.removesuffix(".zarr") or store.name
    stored = read_labels(store)
    ndim = stored.data.ndim
    axes = "".join(stored.axes)
    sam2: dict[str, Any] = dict(stored.metadata)
    # the store holds the video axis first (our writer moved it there): this layer has it at 0
    sam2.update(axes=axes, video_axis=0 if ndim == 3 else None)
    root = zarr.open_group(store, mode="r")
    label_group = root[f"labels/{_label_name(root)}"]
    where = {
        "scale": stored.scale,
        "translate": _translation(label_group, ndim),
        "axis_labels": tuple(stored.axes),
        "units": _napari_units(stored.units),
    }
    layers: list[LayerData] = []
    if not stores_placeholder_image(store):
        array, scale, names, units = read_multiscale(root, str(store))
        image = da.from_zarr(array)
        image_meta: dict[str, Any] = {**where, "metadata": {"axes": axes}}
        if "c" in names:  # NGFF keeps channels before space; napari (and our writer's input) last
            c = names.index("c")
            image = da.moveaxis(image, c, -1)
            if image.shape[-1] in (3, 4):
                image_meta["rgb"] = True
            else:
                image_meta["channel_axis"] = image.ndim - 1
        name = sam2.get("image")
        image_meta["name"] = name if isinstance(name, str) and name else f"{stem} image"
        layers.append((image, image_meta, "image"))
    layers.append((stored.data, {**where, "name": stem, "metadata": {METADATA_KEY: sam2}}, "labels"))
    return layers


def _label_name(root: Any) -> str:
    labels = root["labels"].attrs.asdict()
    return list(labels.get("ome", labels)["labels"])[0]  # the one read_labels reads


def _translation(group: Any, ndim: int) -> tuple[float, ...]:
    """The NGFF translation of the first dataset (dataset then multiscale transforms), 0 if none."""
    attrs = group.attrs.asdict()
    ms = attrs.get("ome", attrs)["multiscales"][0]
    offset = [0.0] * ndim
    for transforms in (ms["datasets"][0].get("coordinateTransformations", []), ms.get("coordinateTransformations", [])):
        for t in transforms:
            if t.get("type") == "scale" and len(t.get("scale", ())) == ndim:
                offset = [o * float(s) for o, s in zip(offset, t["scale"], strict=True)]
            elif t.get("type") == "translation" and len(t.get("translation", ())) == ndim:
                offset = [o + float(s) for o, s in zip(offset, t["translation"], strict=True)]
    return tuple(offset)


def _napari_units(units: tuple[str | None, ...]) -> tuple[str, ...]:
    """NGFF units as napari takes them; an axis without a unit (or one pint does not know) is ``pixel``."""
    import pint

    registry = pint.get_application_registry()
    out = []
    for unit in units:
        try:
            registry.Unit(unit) if unit else None
        except Exception:  # noqa: BLE001 - an unknown unit name must not stop the store from opening
            unit = None
        out.append(unit or "pixel")
    return tuple(out)
