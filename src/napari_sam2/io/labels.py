"""OME-Zarr label stacks: written frame by frame, committed atomically, read lazily.

Layout (NGFF 0.5 on zarr v3, one scale level)::

    out.zarr/                    image group: "multiscales" (+ our "napari_sam2" attribute)
      0/                         the image: a copy of ``image=`` or, by default, a zero
                                 placeholder of the labels' shape with no chunk stored (0 bytes)
      labels/                    "labels": ["sam2"]
        sam2/                    label image: "multiscales" + "image-label" + "napari_sam2"
          0/                     the labels, (Y, X) or (T|Z, Y, X), uint16/uint32, chunks (1, <=1024, <=1024)

Why an image at the root rather than a bare label image: NGFF puts labels under an image,
and napari-ome-zarr 0.10 opens a root label image by calling ``zarr.open_group`` in write
mode two directories up (it writes a stray ``zarr.json`` there, and fails on a read-only
parent). A root image is read without side effects by napari-ome-zarr and ome-zarr-py.

The writer is here; what is ours and may be replaced, and what a killed writer left, is
:mod:`._store_rules`; reading a store back is :mod:`._label_reader`. Both are imported here,
so ``napari_sam2.io.labels`` keeps every name it has always had.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import socket
import time
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import zarr

from .. import __version__
from ..errors import InputError, OutputExistsError, SAM2Error
from ._label_reader import StoredLabels, read_labels
from ._ngff import METADATA_KEY, check_axes, image_axes, multiscales, ome
from ._store_rules import (
    check_output_spares,
    check_replaceable,
    folder_lock,
    is_label_store,
    recover,
    recover_locked,
    stores_placeholder_image,
)

__all__ = [
    "METADATA_KEY",
    "LabelWriter",
    "StoredLabels",
    "check_output_spares",
    "check_replaceable",
    "is_label_store",
    "label_dtype",
    "read_labels",
    "recover",
    "stores_placeholder_image",
    "write_labels",
]

_MAX_CHUNK = 1024
_log = logging.getLogger("napari_sam2")


def label_dtype(max_label: int) -> np.dtype:
    """The smallest dtype we store labels as: uint16, or uint32 beyond 65535 objects."""
    if max_label <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    if max_label <= np.iinfo(np.uint32).max:
        return np.dtype(np.uint32)
    raise InputError(f"label {max_label} does not fit in uint32")


class LabelWriter:
    """Write a label stack frame by frame into a temporary store, then rename it into place.

    Parameters
    ----------
    path : path-like
        The final store, e.g. ``result.zarr``. It appears only at :meth:`commit`.
    shape : tuple of int
        ``(Y, X)`` or ``(T or Z, Y, X)``.
    dtype : numpy dtype
        An unsigned integer type: uint16 (default), uint32 for more than 65535 objects.
    scale : sequence of float, optional
        Physical size of a pixel per axis (e.g. ``(2.0, 0.5, 0.5)`` for anisotropic z).
    axes : str
        ``"zyx"`` (default) or ``"tyx"``; a 2-D shape uses ``"yx"``.
    units : sequence of str or None, optional
        NGFF unit per axis (``"micrometer"``, ``"second"``); None or ``"pixel"`` for none.
    chunks : tuple of int, optional
        Default: one frame per chunk, tiles of at most 1024 x 1024.
    metadata : dict, optional
        JSON-serialisable facts stored under the ``napari_sam2`` attribute of the label image
        (e.g. ``{"model": ..., "prompts": prompts_to_dict(...)}``); the package version is added.
    overwrite : bool
        Replace an existing ``path`` at commit (only once the new store is complete), and
        only if it is a label store napari-sam2 wrote (:func:`is_label_store`); anything else
        there is refused with :class:`~napari_sam2.errors.OutputExistsError`.
    name : str
        Name of the label image (``labels/<name>``).
    image : array-like, optional
        The image the labels belong to, shape ``shape`` or ``shape + (C,)``; copied frame by
        frame into the root at commit. Without it the root holds a zero placeholder.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        shape: tuple[int, ...],
        *,
        dtype: Any = np.uint16,
        scale: Any = None,
        axes: str = "zyx",
        units: Any = None,
        chunks: tuple[int, ...] | None = None,
        metadata: dict[str, Any] | None = None,
        overwrite: bool = False,
        name: str = "sam2",
        image: Any = None,
    ) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        ndim = len(self.shape)
        if ndim not in (2, 3) or min(self.shape) < 1:
            raise InputError(f"label stacks are (Y, X) or (T|Z, Y, X) with no empty axis, got shape {self.shape}")
        self.axes = check_axes(axes, ndim)
        self.dtype = np.dtype(dtype)
        if self.dtype.kind != "u":
            raise InputError(f"labels are stored as unsigned integers (uint16, uint32), not {self.dtype}")
        self.scale = tuple(float(s) for s in (scale if scale is not None else (1.0,) * ndim))
        if len(self.scale) != ndim or not all(np.isfinite(s) and s > 0 for s in self.scale):
            raise InputError(f"scale must be {ndim} positive numbers, got {scale!r}")
        self.units = tuple(units) if units is not None else None
        if self.units is not None and len(self.units) != ndim:
            raise InputError(f"units must have {ndim} entries, got {units!r}")
        if chunks is None:
            chunks = (1,) * (ndim - 2) + tuple(min(s, _MAX_CHUNK) for s in self.shape[-2:])
        if len(chunks) != ndim or min(chunks) < 1:
            raise InputError(f"chunks must be {ndim} positive sizes, got {chunks!r}")
        if not name or "/" in name or name in (".", ".."):
            raise InputError(f"the label image name must be a plain name like 'sam2', got {name!r}")
        self.metadata = {"package_version": __version__, **(metadata or {})}
        try:
            json.dumps(self.metadata, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InputError(f"label metadata must be plain JSON (dict, list, str, number, bool): {e}") from None
        self.name, self.overwrite, self._image = name, overwrite, image
        image_shape = None if image is None else tuple(image.shape)
        if image_shape is not None and (len(image_shape) not in (ndim, ndim + 1) or image_shape[:ndim] != self.shape):
            raise InputError(f"image shape {tuple(image.shape)} does not match the labels {self.shape} (+ channels)")
        self.recovered = recover(self.path)
        check_replaceable(self.path, overwrite)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial_path = self.path.with_name(f"{self.path.name}.partial-{secrets.token_hex(4)}")
        self._closed = False
        try:
            owner = {METADATA_KEY: {"writer": {"host": socket.gethostname(), "pid": os.getpid()}}}
            root = zarr.open_group(self.partial_path, mode="w-", zarr_format=3, attributes=owner)
            group = root.create_group("labels").create_group(name)
            self._labels = group.create_array(
                "0", shape=self.shape, dtype=self.dtype, chunks=chunks, fill_value=0, dimension_names=tuple(self.axes)
            )
        except BaseException:  # also Ctrl-C or SIGTERM while the store is being created
            self.abort()
            raise

    def write_frame(self, t: int, labels2d: Any) -> None:
        """Store the ``(Y, X)`` labels of frame ``t`` (``t = 0`` for a 2-D stack)."""
        if self._closed:
            raise SAM2Error(f"the writer for {self.path} is already committed or aborted")
        n_frames = self.shape[0] if len(self.shape) == 3 else 1
        if not 0 <= t < n_frames:
            raise InputError(f"frame {t} is outside the label stack ({n_frames} frames)")
        frame = np.asarray(labels2d)
        if frame.shape != self.shape[-2:]:
            raise InputError(f"frame {t} has shape {frame.shape}, expected {self.shape[-2:]}")
        if frame.dtype.kind not in "biu":
            raise InputError(f"labels must be integers, got {frame.dtype}")
        if frame.size and (frame.min() < 0 or frame.max() > np.iinfo(self.dtype).max):
            raise InputError(
                f"frame {t} has labels from {frame.min()} to {frame.max()}, outside {self.dtype} "
                "(create the writer with dtype=np.uint32 for more objects)"
            )
        if len(self.shape) == 3:
            self._labels[t] = frame.astype(self.dtype, copy=False)
        else:
            self._labels[...] = frame.astype(self.dtype, copy=False)

    def _write_image(self, root: zarr.Group) -> str:
        """Create the root image (a copy of ``image`` or a zero placeholder); returns its axes."""
        image = self._image
        channels = image is not None and len(image.shape) == len(self.shape) + 1
        axes = image_axes(self.axes, channels)
        sizes = dict(zip(self.axes, self.shape, strict=True), c=image.shape[-1] if channels else 1)
        shape = tuple(sizes[a] for a in axes)
        chunks = tuple(min(sizes[a], _MAX_CHUNK) if a in "yx" else 1 for a in axes)
        dtype = np.uint8 if image is None else np.dtype(image.dtype)
        stored = root.create_array(
            "0", shape=shape, dtype=dtype, chunks=chunks, fill_value=0, dimension_names=tuple(axes)
        )
        if image is None:
            return axes  # nothing written: the placeholder takes no space on disk
        if len(self.shape) == 2:
            frame = np.asarray(image)
            stored[...] = np.moveaxis(frame, -1, 0) if channels else frame  # (Y, X, C) -> (C, Y, X)
            return axes
        where = axes.index(self.axes[0])  # position of the t/z axis in the stored image
        for t in range(self.shape[0]):
            frame = np.asarray(image[t])
            if channels:
                frame = np.moveaxis(frame, -1, 0)  # (Y, X, C) -> (C, Y, X)
            stored[(slice(None),) * where + (t,)] = frame
        return axes

    def commit(self) -> Path:
        """Finish the metadata and move the store to ``path``; returns ``path``."""
        if self._closed:
            raise SAM2Error(f"the writer for {self.path} is already committed or aborted")
        try:
            root = zarr.open_group(self.partial_path, mode="r+")
            axes = self._write_image(root)
            scale = self._scale_with_channel(axes)
            root.attrs.update(ome(multiscales=multiscales("image", axes, scale, self.units)))
            # the writer (host, pid) stays: a kill after this point leaves a finished partial that
            # recover() must still be able to tell from a live writer's
            ours = root.attrs.asdict().get(METADATA_KEY, {})
            root.attrs[METADATA_KEY] = {**ours, "image_stored": self._image is not None}
            root["labels"].attrs.update(ome(labels=[self.name]))
            label_attrs = ome(
                multiscales=multiscales(self.name, self.axes, self.scale, self.units),
                **{"image-label": {"version": "0.5", "source": {"image": "../../"}}},
            )
            root[f"labels/{self.name}"].attrs.update({**label_attrs, METADATA_KEY: self.metadata})
            with folder_lock(self.path.parent):
                for note in recover_locked(self.path):
                    _log.warning(note)
                old = self._move_into_place()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        if old is not None:  # the replaced store, deleted once the new one is in place
            shutil.rmtree(old, ignore_errors=True)
        return self.path

    def _scale_with_channel(self, axes: str) -> list[float]:
        it = iter(self.scale)
        return [1.0 if a == "c" else next(it) for a in axes]

    def _move_into_place(self) -> Path | None:
        """Rename the finished store to ``path`` (under the folder lock); returns the replaced store."""
        check_replaceable(self.path, self.overwrite)
        if not os.path.lexists(self.path):
            try:
                os.rename(self.partial_path, self.path)
            except OSError as e:  # someone created it after the check (no lock on this file system)
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                    raise OutputExistsError(f"{self.path} already exists; choose another output") from None
                raise
            return None
        old = self.path.with_name(f"{self.path.name}.old-{secrets.token_hex(4)}")
        os.rename(self.path, old)  # a kill from here to the next rename: recover() restores it
        try:
            os.rename(self.partial_path, self.path)
        except BaseException:
            os.rename(old, self.path)
            raise
        return old

    def abort(self) -> None:
        """Delete the temporary store; ``path`` (new or old) is left as it was.

        Interrupted (Ctrl-C) inside a write, zarr's I/O thread may still finish writing a
        chunk, and that write recreates its folders: the store is deleted until it has
        stayed gone for a moment (a chunk write takes milliseconds; at most 2 s in all).
        """
        self._closed = True
        deadline = time.monotonic() + 2.0
        while True:
            shutil.rmtree(self.partial_path, ignore_errors=True)
            time.sleep(0.05)
            if not os.path.lexists(self.partial_path) or time.monotonic() > deadline:
                return

    def __enter__(self) -> LabelWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_labels(path: str | PathLike[str], labels: Any, *, dtype: Any = None, **kwargs: Any) -> Path:
    """Write a whole label array (numpy, dask or zarr) with :class:`LabelWriter`, frame by frame.

    ``dtype=None`` picks uint16, or uint32 when a label exceeds 65535. Other keyword arguments
    go to :class:`LabelWriter`. Returns the written path.
    """
    shape = tuple(labels.shape)
    frames = range(shape[0]) if len(shape) == 3 else range(1)
    take = (lambda t: labels[t]) if len(shape) == 3 else (lambda t: labels)
    if dtype is None:
        kind, size = np.dtype(labels.dtype).kind, np.dtype(labels.dtype).itemsize
        small = kind == "b" or (kind == "u" and size <= 2)
        dtype = np.uint16 if small else label_dtype(max(int(np.asarray(take(t)).max(initial=0)) for t in frames))
    with LabelWriter(path, shape, dtype=dtype, **kwargs) as writer:
        for t in frames:
            writer.write_frame(t, np.asarray(take(t)))
    return writer.path
