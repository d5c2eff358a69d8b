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

A TIFF that tifffile says holds samples (planar RGB ``(3, Y, X)``) or, in 4-D, channels
(an ImageJ ``ZCYX`` hyperstack) has them moved last.

Every problem is an :class:`~napari_sam2.errors.InputError` naming the file: a damaged file
(a TIFF cut short or with fewer pages than it declares, see :func:`check_tiff`) is refused
at open rather than read as a smaller image, and a frame that does not decode later names
the file and the frame. Float frames with NaN or infinite values are refused, naming both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import InputError, one_line
from ._tiff_calibration import TiffLayout
from ._tiff_checks import check_tiff, check_tiff_layout, quiet_tifffile
from .frame_view import FrameView

__all__ = ["STACK_SUFFIXES", "Stack", "check_tiff", "open_stack", "read_tiff", "stack_stem"]

#: suffixes stripped from an input's name to get its stem (``a.ome.tif`` -> ``a``)
STACK_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr", ".npy")


def stack_stem(path: str | PathLike[str]) -> str:
    """The name of an input without its image suffix: ``cells.ome.tif`` -> ``cells``."""
    name = Path(path).name
    for suffix in STACK_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


class _FileFrames(FrameView):
    """A file's frames (:class:`~napari_sam2.io.frame_view.FrameView`) that name the file when a read fails.

    A frame that does not decode raises :class:`InputError` naming the file and the frame; so
    does a float frame with NaN or infinite values. tifffile's log lines are kept quiet.
    """

    def __init__(
        self, array: Any, frame_axis: int | None, drop: tuple[int, ...], channel_axis: int | None,
        source: str = "the image", quiet: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(array, frame_axis, drop=drop, channel_axis=channel_axis)
        self._source = source  # named in read errors
        self._quiet = quiet  # a TIFF: tifffile's log lines stay off stderr

    def read(self, index: tuple[Any, ...], t: int) -> np.ndarray:
        """One frame from the source; a failed read names the file and the frame."""
        try:
            if self._quiet:
                with quiet_tifffile():
                    frame = np.asarray(super().read(index, t))
            else:
                frame = np.asarray(super().read(index, t))
        except MemoryError:
            raise
        except OSError as e:
            raise InputError(f"input {self._source!r}: frame {t} cannot be read ({one_line(e)})") from None
        except Exception as e:  # a strip or chunk that does not decode: the file is damaged
            why = f"frame {t} cannot be read: the file is damaged ({one_line(e)})"
            raise InputError(f"input {self._source!r}: {why}") from None
        if self.dtype.kind == "f" and not np.isfinite(frame).all():
            where = f"frame {t}" if self._frame_axis is not None else "the image"
            raise InputError(f"input {self._source!r}: {where} contains NaN or infinite values")
        return frame


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
    label_units : tuple of str or None
        The OME-Zarr units of the label axes (None for an axis without one), if any axis has one.
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
    label_units: tuple[str | None, ...] | None = None

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
    units: tuple[str | None, ...] | None = None
    channel: int | None = None  # a TIFF's own channel (samples) axis
    close = None
    tiff_names: tuple[str, ...] | None = None
    if name.endswith((".tif", ".tiff")):
        array, close, channel, (tiff_names, scale, units) = _open_tiff(p)
    elif name.endswith(".npy"):
        array = _open_npy(p)
    elif p.is_dir() or name.endswith(".zarr"):
        array, names, scale, units = _open_zarr(p)
    else:
        raise InputError(f"input {str(p)!r}: unknown image type; expected .tif/.tiff, .zarr (OME-Zarr) or .npy")
    try:
        return _make_stack(p, array, axis, names, scale, close, channel, units, tiff_names)
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
    channel_hint: int | None = None,
    units: tuple[str | None, ...] | None = None,
    tiff_names: tuple[str, ...] | None = None,
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
    elif channel_hint is not None and len(src) in (3, 4):
        channel = channel_hint  # the TIFF says which axis holds samples or channels (planar RGB, ImageJ ZCYX)
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
    tiff = p.name.lower().endswith((".tif", ".tiff"))
    view = _FileFrames(array, frame_axis, drop, channel, source=str(p), quiet=tiff)
    label_axes, label_scale, axis_name = "zyx" if len(label_shape) == 3 else "yx", None, None
    label_units = None
    named = names if names is not None else tiff_names  # OME-Zarr axes, or a TIFF's own (ImageJ, OME-TIFF)
    if named is not None:
        order = ([frame_axis] if frame_axis is not None else []) + [i for i in spatial if i != frame_axis]
        if frame_axis is not None and named[frame_axis] in ("t", "z"):
            axis_name = named[frame_axis]
        if axis_name == "t":
            label_axes = "tyx"
        if scale is not None:
            label_scale = tuple(scale[i] for i in order)
        if units is not None and any(units[i] for i in order):
            label_units = tuple(units[i] for i in order)
    return Stack(p, view, shape, axis, label_shape, label_axes, label_scale, axis_name, _close=close,
                 label_units=label_units)  # fmt: skip


def _open_tiff(p: Path) -> tuple[Any, Callable[[], None] | None, int | None, TiffLayout]:
    """A memory map if the pixels allow it, else tifffile's lazy zarr view, else the whole image.

    Also the axis that holds samples (``S``) or, in 4-D, channels (``C``) when the TIFF says so,
    else None, and its layout (:func:`~napari_sam2.io._tiff_calibration.tiff_layout`; all None
    when the array's axes do not match).
    A damaged file (see :func:`check_tiff`) raises instead of being read as a smaller image.
    """
    import tifffile

    with quiet_tifffile():  # it logs damaged files; we raise one error instead
        axes, layout = check_tiff_layout(p)
        array, close = _tiff_array(p, tifffile)
    if 0 in array.shape or array.ndim == 0:
        if close is not None:
            close()
        raise InputError(f"input {str(p)!r}: cannot read the TIFF file (no image data: damaged, or not a TIFF)")
    names = layout[0]
    if axes is None or names is None or len(axes) != array.ndim:
        return array, close, None, (None, None, None)
    # samples of a pixel (RGB, also stored planar (3, H, W)) first, else the channels of a 4-D hyperstack
    channel = axes.index("S") if "S" in axes else names.index("c") if "c" in names else None
    return array, close, channel, layout


def read_tiff(path: str | PathLike[str]) -> np.ndarray:
    """All of a TIFF's first series (one 2-D image for ``segment-image``), never a part of it.

    Raises :class:`InputError` naming the file if it is damaged (see :func:`check_tiff`) or
    its pixels do not decode.
    """
    import tifffile

    p = Path(path)
    with quiet_tifffile():
        check_tiff(p)
        try:
            return np.asarray(tifffile.imread(p))
        except MemoryError:
            raise
        except Exception as e:
            raise InputError(f"input {str(p)!r} cannot be read: the file is damaged ({one_line(e)})") from None


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
        raise InputError(f"input {str(p)!r}: cannot read the TIFF file ({one_line(e)})") from None


def _open_npy(p: Path) -> Any:
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as e:
        why = f"cannot read the .npy file: it is damaged or not a .npy file ({one_line(e)})"
        raise InputError(f"input {str(p)!r}: {why}") from None


def _open_zarr(
    p: Path,
) -> tuple[Any, tuple[str, ...] | None, tuple[float, ...] | None, tuple[str | None, ...] | None]:
    import zarr

    from ._ngff import read_multiscale
    from ._store_rules import stores_placeholder_image

    if stores_placeholder_image(p):
        raise InputError(
            f"input {str(p)!r} is a label store that napari-sam2 wrote, with no image in it (its root image is an "
            "all-zero placeholder); segment the original image instead"
        )
    try:
        node = zarr.open(p, mode="r")
    except Exception as e:
        raise InputError(f"input {str(p)!r}: cannot open it as zarr ({one_line(e)})") from None
    if isinstance(node, zarr.Array):
        return node, None, None, None
    attrs = node.attrs.asdict()
    if "multiscales" in attrs.get("ome", attrs):
        array, scale, names, units = read_multiscale(node, str(p))
        return array, names, scale, units
    arrays = [name for name, _ in node.arrays()]
    if len(arrays) == 1:
        return node[arrays[0]], None, None, None
    raise InputError(
        f"input {str(p)!r} is a zarr group with {len(arrays)} arrays ({', '.join(arrays[:5]) or 'none'}) "
        "and no OME-Zarr multiscales; pass the array's own path"
    )

