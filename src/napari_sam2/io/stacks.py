"""Open an image stack from a file, lazily: TIFF, zarr / OME-Zarr, or ``.npy``.

:func:`open_stack` gives a :class:`Stack` whose ``frames`` is a read-only ``(T, H, W)`` or
``(T, H, W, C)`` view that reads one frame per ``frames[t]`` (what
:class:`~napari_sam2.engine.frames.FrameSource` asks for), with the chosen stack axis
moved to the front without reading anything:

- TIFF: ``tifffile.memmap`` when the pixels are stored uncompressed and contiguously, else
  tifffile's zarr view of the file (compressed TIFFs, still one frame per read).
- zarr: an array, or an OME-Zarr image group (its first, full-resolution level).
- ``.npy``: ``np.load(mmap_mode="r")``.

Shapes: ``(Y, X)`` is a one-frame stack; ``(Y, X, 3|4)`` is one RGB(A) image; 3-D is a stack
along ``axis``; 4-D has channels last (1-4 of them). OME-Zarr axes of size 1 (``t``, ``c``
of a ``tczyx`` image) are dropped and an OME-Zarr ``c`` axis is moved last.

Every problem is an :class:`~napari_sam2.errors.InputError` naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import InputError

#: suffixes stripped from an input's name to get its stem (``a.ome.tif`` -> ``a``)
STACK_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".npy")


def stack_stem(path: str | PathLike[str]) -> str:
    """The name of an input without its image suffix: ``cells.ome.tif`` -> ``cells``."""
    name = Path(path).name
    for suffix in STACK_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


class _FrameView:
    """``(T, H, W[, C])`` view of an array: frame axis first, size-1 axes dropped, channels last.

    Only ``view[t]`` with an integer ``t`` is supported; it reads one frame from the source.
    """

    def __init__(self, array: Any, frame_axis: int | None, drop: tuple[int, ...], channel_axis: int | None) -> None:
        self._array = array
        self._frame_axis = frame_axis
        self._drop = drop
        src = tuple(int(n) for n in array.shape)
        # axes of one frame as they come out of the source, in source order
        self._kept = [i for i in range(len(src)) if i != frame_axis and i not in drop]
        perm = [self._kept.index(i) for i in self._kept if i != channel_axis]
        if channel_axis is not None:
            perm.append(self._kept.index(channel_axis))
        self._perm = tuple(perm)  # source order of one frame -> (H, W[, C])
        frame_shape = tuple(src[self._kept[p]] for p in self._perm)
        self.shape = ((src[frame_axis] if frame_axis is not None else 1), *frame_shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t: Any) -> np.ndarray:
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)) or not 0 <= t < self.shape[0]:
            raise IndexError(f"frame index must be an integer in 0..{self.shape[0] - 1}, got {t!r}")
        index: list[Any] = [slice(None)] * len(self._array.shape)
        for i in self._drop:
            index[i] = 0
        if self._frame_axis is not None:
            index[self._frame_axis] = int(t)
        frame = np.asarray(self._array[tuple(index)])
        return frame.transpose(self._perm) if self._perm != tuple(range(len(self._perm))) else frame


@dataclass
class Stack:
    """An opened input: lazy frames, and what prompts and label output need to know.

    Attributes
    ----------
    path : Path
        The input.
    frames : array-like
        ``(T, H, W)`` or ``(T, H, W, C)`` lazy view (``frames[t]`` reads frame ``t``).
    shape : tuple of int
        The image's shape in napari's axis order without channels: ``(Y, X)`` or the 3-D
        stack with the stack axis where it is in the file. Prompt files are checked against it.
    axis : int
        The stack axis within ``shape`` (0 for a 2-D image).
    label_shape : tuple of int
        ``(Y, X)`` for a 2-D image, else ``(T|Z, Y, X)``: the shape of the labels written.
    label_axes : str
        ``"zyx"``, ``"tyx"`` (from OME-Zarr axis names) or ``"yx"``.
    label_scale : tuple of float or None
        The OME-Zarr pixel size of the label axes, if the input has one.
    axis_name : str or None
        The OME-Zarr name of the stack axis (``"t"`` or ``"z"``) if the input names its
        axes; None for TIFF, ``.npy``, plain zarr and 2-D images.
    """

    path: Path
    frames: Any
    shape: tuple[int, ...]
    axis: int
    label_shape: tuple[int, ...]
    label_axes: str
    label_scale: tuple[float, ...] | None = None
    axis_name: str | None = None
    _close: Callable[[], None] | None = field(default=None, repr=False)

    def close(self) -> None:
        """Release the file handle (TIFF); the frames cannot be read afterwards."""
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_stack(path: str | PathLike[str], *, axis: int = 0) -> Stack:
    """Open a TIFF, zarr / OME-Zarr or ``.npy`` image lazily, with ``axis`` as the stack axis.

    Parameters
    ----------
    path : path-like
        The image file (or zarr directory).
    axis : int
        For 3-D data (and 4-D with channels last), the axis that runs through the stack
        (z or time); negative values count from the last spatial axis. Ignored for 2-D images.

    Returns
    -------
    Stack
        Use it as a context manager (or call ``close()``) to release the file.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input {str(p)!r} does not exist")
    name = p.name.lower()
    names: tuple[str, ...] | None = None
    scale: tuple[float, ...] | None = None
    close = None
    if name.endswith((".tif", ".tiff")):
        array, close = _open_tiff(p)
    elif name.endswith(".npy"):
        array = _open_npy(p)
    elif p.is_dir() or name.endswith(".zarr"):
        array, names, scale = _open_zarr(p)
    else:
        raise InputError(f"input {str(p)!r}: unknown image type; expected .tif/.tiff, .zarr (OME-Zarr) or .npy")
    try:
        return _make_stack(p, array, axis, names, scale, close)
    except BaseException:
        if close is not None:
            close()
        raise


def _make_stack(
    p: Path,
    array: Any,
    axis: int,
    names: tuple[str, ...] | None,
    scale: tuple[float, ...] | None,
    close: Callable[[], None] | None,
) -> Stack:
    src = tuple(int(n) for n in array.shape)
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf":
        raise InputError(f"input {str(p)!r}: pixels must be numbers, got dtype {dtype}")
    drop: tuple[int, ...] = ()
    channel: int | None = None
    if names is not None:  # OME-Zarr: drop size-1 axes beyond (z, y, x), find the channel axis
        drop = tuple(i for i, (n, s) in enumerate(zip(names, src, strict=True)) if s == 1 and n in "tcz")
        if len(src) - len(drop) < 2:
            drop = drop[: len(src) - 2]
        if "c" in names and names.index("c") not in drop:
            channel = names.index("c")
    elif len(src) == 4 or (len(src) == 3 and src[-1] in (3, 4)):
        channel = len(src) - 1  # channels last: (T, H, W, C) or one RGB(A) image (H, W, 3|4)
    spatial = [i for i in range(len(src)) if i not in drop and i != channel]
    if len(spatial) not in (2, 3):
        raise InputError(
            f"input {str(p)!r} has shape {src}; expected (Y, X), a 3-D stack, or either with channels last"
        )
    if channel is not None and not 1 <= src[channel] <= 4:
        raise InputError(f"input {str(p)!r} has {src[channel]} channels (shape {src}); at most 4 are supported")
    shape = tuple(src[i] for i in spatial)
    if min(shape) < 1:
        raise InputError(f"input {str(p)!r} is empty (shape {src})")
    if len(spatial) == 2:
        frame_axis, axis = None, 0
        label_shape = shape
    else:
        if not -3 <= axis < 3:
            raise InputError(f"axis {axis} is out of range for the 3-D stack {shape} in {str(p)!r}")
        axis %= 3
        frame_axis = spatial[axis]
        rest = [i for i in spatial if i != frame_axis]
        label_shape = (src[frame_axis], src[rest[0]], src[rest[1]])
    view = _FrameView(array, frame_axis, drop, channel)
    label_axes, label_scale, axis_name = "zyx" if len(label_shape) == 3 else "yx", None, None
    if names is not None:
        order = ([frame_axis] if frame_axis is not None else []) + [i for i in spatial if i != frame_axis]
        if frame_axis is not None and names[frame_axis] in ("t", "z"):
            axis_name = names[frame_axis]
        if axis_name == "t":
            label_axes = "tyx"
        if scale is not None:
            label_scale = tuple(scale[i] for i in order)
    return Stack(p, view, shape, axis, label_shape, label_axes, label_scale, axis_name, _close=close)


def _open_tiff(p: Path) -> tuple[Any, Callable[[], None] | None]:
    """A memory map if the pixels allow it, else tifffile's lazy zarr view, else the whole image."""
    import tifffile

    logger = logging.getLogger("tifffile")  # it logs damaged files; we raise one error instead
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        array, close = _tiff_array(p, tifffile)
    finally:
        logger.setLevel(level)
    if 0 in array.shape or array.ndim == 0:
        if close is not None:
            close()
        raise InputError(f"input {str(p)!r}: cannot read the TIFF file (no image data: damaged, or not a TIFF)")
    return array, close


def _tiff_array(p: Path, tifffile: Any) -> tuple[Any, Callable[[], None] | None]:
    try:
        return tifffile.memmap(p, mode="r"), None
    except Exception:
        pass  # compressed, tiled or not contiguous: read it through tifffile's zarr view
    try:
        import zarr

        store = tifffile.imread(p, aszarr=True)
        try:
            array = zarr.open_array(store, mode="r")
        except Exception:
            store.close()
            raise
        return array, store.close
    except Exception:
        pass
    try:
        return tifffile.imread(p), None
    except Exception as e:
        raise InputError(f"input {str(p)!r}: cannot read the TIFF file ({_why(e)})") from None


def _open_npy(p: Path) -> Any:
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as e:
        raise InputError(f"input {str(p)!r}: cannot read the .npy file ({_why(e)})") from None


def _open_zarr(p: Path) -> tuple[Any, tuple[str, ...] | None, tuple[float, ...] | None]:
    import zarr

    from ._ngff import read_multiscale
    from .labels import stores_placeholder_image

    if stores_placeholder_image(p):
        raise InputError(
            f"input {str(p)!r} is a label store that napari-sam2 wrote, with no image in it (its root image is an "
            "all-zero placeholder); segment the original image instead"
        )
    try:
        node = zarr.open(p, mode="r")
    except Exception as e:
        raise InputError(f"input {str(p)!r}: cannot open it as zarr ({_why(e)})") from None
    if isinstance(node, zarr.Array):
        return node, None, None
    attrs = node.attrs.asdict()
    if "multiscales" in attrs.get("ome", attrs):
        array, scale, names, _ = read_multiscale(node, str(p))
        return array, names, scale
    arrays = [name for name, _ in node.arrays()]
    if len(arrays) == 1:
        return node[arrays[0]], None, None
    raise InputError(
        f"input {str(p)!r} is a zarr group with {len(arrays)} arrays ({', '.join(arrays[:5]) or 'none'}) "
        "and no OME-Zarr multiscales; pass the array's own path"
    )


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:160]}" if text else type(e).__name__
