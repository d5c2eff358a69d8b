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
"""

from __future__ import annotations

import errno
import glob
import json
import logging
import os
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import zarr

from .. import __version__
from ..errors import InputError, OutputExistsError, SAM2Error
from ._ngff import check_axes, find_label_group, image_axes, multiscales, ome, read_multiscale

METADATA_KEY = "napari_sam2"
_MAX_CHUNK = 1024
_log = logging.getLogger("napari_sam2")


# --------------------------------------------------------------------------- what is ours


def is_label_store(path: str | PathLike[str]) -> bool:
    """Whether ``path`` is a finished label store that :class:`LabelWriter` wrote.

    Recognised by its metadata, not its name: a folder (not a link) whose root group carries
    our ``napari_sam2`` attribute (written at commit) and lists a label image with our
    metadata. Only such a store may be replaced by ``overwrite=True``.
    """
    p = Path(path)
    if p.is_symlink() or not (p / "zarr.json").is_file():
        return False
    try:
        root = zarr.open_group(p, mode="r")
        ours = root.attrs.asdict().get(METADATA_KEY)
        if not isinstance(ours, dict) or "image_stored" not in ours:
            return False
        labels = root["labels"]
        names = labels.attrs.asdict().get("ome", {}).get("labels", [])
        return any("package_version" in labels[n].attrs.asdict().get(METADATA_KEY, {}) for n in names)
    except Exception:  # noqa: BLE001 - anything we cannot read as ours is not ours
        return False


def stores_placeholder_image(path: str | PathLike[str]) -> bool:
    """Whether ``path`` is one of our label stores whose root image is the zero placeholder."""
    if not is_label_store(path):
        return False
    return not zarr.open_group(Path(path), mode="r").attrs.asdict()[METADATA_KEY]["image_stored"]


def check_output_spares(output: str | PathLike[str], inputs: Iterable[str | PathLike[str] | None]) -> None:
    """Refuse an output that is, contains or lies inside one of the run's ``inputs``.

    Compares real paths (links resolved) and, where both exist, the files themselves
    (hard links). Raises :class:`~napari_sam2.errors.InputError` naming both.
    """
    out = Path(os.path.realpath(output))
    for item in inputs:
        if item is None:
            continue
        inp = Path(os.path.realpath(item))
        same = inp == out
        if not same and os.path.exists(inp) and os.path.exists(out):
            try:
                same = os.path.samefile(inp, out)
            except OSError:
                same = False
        if same or out in inp.parents:
            raise InputError(f"the output {str(output)!r} would replace the input {str(item)!r}; choose another output")
        if inp in out.parents and inp.is_dir():
            raise InputError(f"the output {str(output)!r} lies inside the input {str(item)!r}; choose another output")


def check_replaceable(
    path: str | PathLike[str],
    overwrite: bool,
    *,
    ours: Callable[[Path], bool] | None = None,
    what: str = "a label store that napari-sam2 wrote",
) -> None:
    """The overwrite rule: raise :class:`OutputExistsError` unless ``path`` is absent, or is
    ``what`` (``ours(path)``, default :func:`is_label_store`) and ``overwrite`` is on.

    Every command's output goes through it: label stores here, ``segment-image`` masks and
    ``finetune`` models with their own ``ours`` and ``what``.
    """
    p = Path(path)
    if not os.path.lexists(p):
        return
    mine = (ours or is_label_store)(p)
    if mine and not overwrite:
        raise OutputExistsError(f"{p} already exists; use --overwrite to replace it, or choose another output")
    if not mine:
        kind = "a link" if p.is_symlink() else "a folder" if p.is_dir() else "a file"
        raise OutputExistsError(
            f"{p} exists and is {kind}, not {what}; --overwrite replaces only {what}, never an input or "
            "anything else: move it away or choose another output"
        )


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (flock on the folder itself, no lock file) while moving stores.

    Serialises recovery and commits of the stores in one folder across processes, so that
    concurrent writers of one output end in a clean "already exists". Where flock is missing
    (Windows), nothing is locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _writer_alive(partial: Path) -> bool:
    """Whether the process that is building ``partial`` may still be running (unknown: yes)."""
    try:
        owner = json.loads((partial / "zarr.json").read_text())["attributes"][METADATA_KEY]["writer"]
        host, pid = str(owner["host"]), int(owner["pid"])
    except Exception:  # noqa: BLE001 - no owner recorded: it may be anyone's
        return True
    if host != socket.gethostname():
        return True  # another machine's, on a shared file system: not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _recover_locked(path: Path) -> list[str]:
    notes: list[str] = []
    pattern = glob.escape(path.name)
    olds = sorted((o for o in path.parent.glob(pattern + ".old-*") if is_label_store(o)), key=os.path.getmtime)
    if olds and not os.path.lexists(path):
        keep = olds.pop()  # the newest: the store the interrupted overwrite was replacing
        os.rename(keep, path)
        notes.append(f"restored {path} from {keep.name}, left by an overwrite that was interrupted")
    for old in olds:
        shutil.rmtree(old, ignore_errors=True)
        notes.append(f"removed {old.name}, a replaced store that an interrupted overwrite left")
    for partial in path.parent.glob(pattern + ".partial-*"):
        if partial.is_dir() and not partial.is_symlink() and not _writer_alive(partial):
            shutil.rmtree(partial, ignore_errors=True)
            notes.append(f"removed {partial.name}, the unfinished store of a run that was killed")
    return notes


def recover(path: str | PathLike[str]) -> list[str]:
    """Undo what a killed writer of ``path`` left, and say what was done.

    - ``path`` missing beside ``path.old-*`` (killed between the two renames of an overwrite):
      the old store is renamed back, so the earlier result is there again;
    - ``path.old-*`` beside ``path`` (killed after the second rename): removed;
    - ``path.partial-*`` of a process of this machine that no longer runs: removed.

    Only stores napari-sam2 wrote are touched. Each note is also logged (logger ``napari_sam2``).
    """
    p = Path(path)
    if not p.parent.is_dir():
        return []
    with _folder_lock(p.parent):
        notes = _recover_locked(p)
    for note in notes:
        _log.warning(note)
    return notes


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
            with _folder_lock(self.path.parent):
                for note in _recover_locked(self.path):
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
