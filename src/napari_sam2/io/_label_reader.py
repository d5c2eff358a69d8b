"""Label stacks read back lazily: ours, or any NGFF 0.4/0.5 labels another tool wrote."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from typing import Any

import zarr

from ..errors import InputError
from ._ngff import METADATA_KEY, find_label_group, read_multiscale


@dataclass(frozen=True)
class StoredLabels:
    """A label stack read back lazily; unpacks as ``data, scale, metadata``.

    It is also a sequence of those three, like the tuple it unpacks as: ``labels[0]`` is
    ``data``, ``labels[1]`` is ``scale``, ``labels[2]`` (and ``labels[-1]``) is ``metadata``,
    slices work, and ``len(labels) == 3``. ``axes`` and ``units`` are attributes only.

    Attributes
    ----------
    data : dask.array.Array
        The labels, ``(Y, X)`` or ``(T|Z, Y, X)``, read chunk by chunk on demand.
    scale : tuple of float
        Physical pixel size per axis.
    metadata : dict
        The ``napari_sam2`` attribute (empty for stores other tools wrote).
    axes : tuple of str
        Axis names, e.g. ``("z", "y", "x")``.
    units : tuple of str or None
        NGFF unit per axis, None where not given.
    """

    data: Any
    scale: tuple[float, ...]
    metadata: dict[str, Any]
    axes: tuple[str, ...]
    units: tuple[str | None, ...]

    def _as_tuple(self) -> tuple[Any, tuple[float, ...], dict[str, Any]]:
        return (self.data, self.scale, self.metadata)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._as_tuple())

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int | slice) -> Any:
        return self._as_tuple()[index]


def read_labels(path: str | PathLike[str], *, name: str | None = None) -> StoredLabels:
    """Open the labels of an OME-Zarr store lazily (ours, or any NGFF 0.4/0.5 labels).

    Parameters
    ----------
    path : path-like
        The store.
    name : str, optional
        Which ``labels/<name>``; default the first listed.

    Returns
    -------
    StoredLabels
        Unpacks and indexes as ``data, scale, metadata`` (``read_labels(p)[0]`` is the
        data); also has ``axes`` and ``units``.
    """
    import dask.array as da

    source = str(path)
    try:
        root = zarr.open_group(path, mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        raise InputError(f"{source}: no zarr group found") from None
    group = find_label_group(root, name, source)
    array, scale, axes, units = read_multiscale(group, source)
    metadata = group.attrs.asdict().get(METADATA_KEY, {})
    return StoredLabels(da.from_zarr(array), scale, dict(metadata), axes, units)
