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

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import InputError, one_line

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

    def __init__(
        self, array: Any, frame_axis: int | None, drop: tuple[int, ...], channel_axis: int | None,
        source: str = "the image", quiet_tifffile: bool = False,
    ) -> None:  # fmt: skip
        self._array = array
        self._source = source  # named in read errors
        self._quiet = quiet_tifffile
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
        frame = self._read(tuple(index), int(t))
        if self.dtype.kind == "f" and not np.isfinite(frame).all():
            where = f"frame {t}" if self._frame_axis is not None else "the image"
            raise InputError(f"input {self._source!r}: {where} contains NaN or infinite values")
        return frame.transpose(self._perm) if self._perm != tuple(range(len(self._perm))) else frame

    def _read(self, index: tuple[Any, ...], t: int) -> np.ndarray:
        """One frame from the source; a failed read names the file and the frame."""
        try:
            if self._quiet:
                with _quiet_tifffile():
                    return np.asarray(self._array[index])
            return np.asarray(self._array[index])
        except MemoryError:
            raise
        except OSError as e:
            raise InputError(f"input {self._source!r}: frame {t} cannot be read ({one_line(e)})") from None
        except Exception as e:  # a strip or chunk that does not decode: the file is damaged
            why = f"frame {t} cannot be read: the file is damaged ({one_line(e)})"
            raise InputError(f"input {self._source!r}: {why}") from None


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
    view = _FrameView(array, frame_axis, drop, channel, source=str(p), quiet_tifffile=tiff)
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


def _open_tiff(p: Path) -> tuple[Any, Callable[[], None] | None, int | None, _TiffLayout]:
    """A memory map if the pixels allow it, else tifffile's lazy zarr view, else the whole image.

    Also the axis that holds samples (``S``) or, in 4-D, channels (``C``) when the TIFF says so,
    else None, and its layout (:func:`_tiff_layout`; all None when the array's axes do not match).
    A damaged file (see :func:`check_tiff`) raises instead of being read as a smaller image.
    """
    import tifffile

    with _quiet_tifffile():  # it logs damaged files; we raise one error instead
        axes, layout = _check_tiff(p)
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


#: NGFF unit names for the length and time units TIFF metadata spells in many ways
_LENGTH_UNITS = {
    "m": "meter", "meter": "meter", "cm": "centimeter", "centimeter": "centimeter", "mm": "millimeter",
    "millimeter": "millimeter", "um": "micrometer", "µm": "micrometer", "\u03bcm": "micrometer",
    "micron": "micrometer", "microns": "micrometer", "micrometer": "micrometer", "nm": "nanometer",
    "nanometer": "nanometer", "inch": "inch",
}  # fmt: skip
_TIME_UNITS = {"s": "second", "sec": "second", "second": "second", "ms": "millisecond", "millisecond": "millisecond",
               "min": "minute", "minute": "minute", "h": "hour", "hour": "hour"}  # fmt: skip


def _length_unit(text: Any) -> str | None:
    key = str(text or "").strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ").lower()
    return _LENGTH_UNITS.get(key)


#: a TIFF's axis names, pixel size and units, per axis of its first series (None where it says nothing)
_TiffLayout = tuple[tuple[str, ...] | None, tuple[float, ...] | None, tuple[str | None, ...] | None]


def _tiff_layout(tif: Any, axes: str) -> _TiffLayout:
    """The axis names, pixel size and units of an open TIFF whose first series has ``axes``.

    Axis names come from the series axes tifffile reads from ImageJ and OME metadata
    (``T``, ``Z``; ``C`` of a 4-D hyperstack and ``S`` samples are channels; a plain stack's
    ``Q``/``I`` and the ``C`` tifffile gives any 3-D ImageJ stack are unknown, ``?``). Pixel
    size: OME ``PhysicalSizeX/Y/Z`` (+ units) and ``TimeIncrement``; else ImageJ's
    ``spacing``, ``finterval`` and ``unit`` with the X/Y resolution tags; else the resolution
    tags with a centimetre or inch unit.
    """
    ndim = len(axes)
    names = tuple(
        "c" if a == "S" or (a == "C" and ndim == 4) else a.lower() if a in "TZYX" else "?" for a in axes
    )
    try:
        sizes, units = _ome_sizes(tif.ome_metadata) if tif.is_ome else ({}, {})
        if not sizes:
            sizes, units = _imagej_sizes(tif.imagej_metadata or {}, tif.pages.first, imagej=tif.is_imagej)
    except Exception:  # noqa: BLE001 - calibration is a bonus: the file itself was judged sound
        return None, None, None
    if not sizes:
        return names, None, None
    return names, tuple(float(sizes.get(n, 1.0)) for n in names), tuple(units.get(n) for n in names)


def _ome_sizes(xml: str | None) -> tuple[dict[str, float], dict[str, str | None]]:
    import xml.etree.ElementTree as ET

    if not xml:
        return {}, {}
    root = ET.fromstring(xml)
    pixels = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
    if pixels is None:
        return {}, {}
    sizes: dict[str, float] = {}
    units: dict[str, str | None] = {}
    for axis in "xyz":
        value = pixels.get(f"PhysicalSize{axis.upper()}")
        if value is not None and float(value) > 0:
            sizes[axis] = float(value)
            units[axis] = _length_unit(pixels.get(f"PhysicalSize{axis.upper()}Unit", "µm"))
    if pixels.get("TimeIncrement") is not None and float(pixels.get("TimeIncrement")) > 0:
        sizes["t"] = float(pixels.get("TimeIncrement"))
        units["t"] = _TIME_UNITS.get(str(pixels.get("TimeIncrementUnit", "s")).lower())
    return sizes, units


def _imagej_sizes(meta: dict[str, Any], page: Any, *, imagej: bool) -> tuple[dict[str, float], dict[str, str | None]]:
    sizes: dict[str, float] = {}
    units: dict[str, str | None] = {}
    res_unit = getattr(page.tags.get("ResolutionUnit"), "value", 1)
    unit = _length_unit(meta.get("unit")) if imagej else {2: "inch", 3: "centimeter"}.get(int(res_unit))
    for axis, tag in (("x", "XResolution"), ("y", "YResolution")):
        value = getattr(page.tags.get(tag), "value", None)
        if unit is None or not value or value[0] <= 0 or value[1] <= 0 or tuple(value) == (1, 1):
            continue
        size = value[1] / value[0]  # the tag counts pixels per unit
        if unit in ("inch", "centimeter"):  # as resolution tags mean them: say it in micrometres
            size *= 25400.0 if unit == "inch" else 10000.0
        sizes[axis], units[axis] = size, "micrometer" if unit in ("inch", "centimeter") else unit
    if imagej and meta.get("spacing") and float(meta["spacing"]) > 0 and unit is not None:
        sizes["z"], units["z"] = float(meta["spacing"]), unit
    if imagej and meta.get("finterval") and float(meta["finterval"]) > 0:
        sizes["t"], units["t"] = float(meta["finterval"]), _TIME_UNITS.get(str(meta.get("tunit", "s")).lower(), "second")
    return sizes, units


def read_tiff(path: str | PathLike[str]) -> np.ndarray:
    """All of a TIFF's first series (one 2-D image for ``segment-image``), never a part of it.

    Raises :class:`InputError` naming the file if it is damaged (see :func:`check_tiff`) or
    its pixels do not decode.
    """
    import tifffile

    p = Path(path)
    with _quiet_tifffile():
        check_tiff(p)
        try:
            return np.asarray(tifffile.imread(p))
        except MemoryError:
            raise
        except Exception as e:
            raise InputError(f"input {str(p)!r} cannot be read: the file is damaged ({one_line(e)})") from None


#: what tifffile logs when a file's structure is broken (page list cut short, fewer pages than declared)
_TIFF_DAMAGE = (
    "invalid page offset", "invalid offset to page", "corrupted tag list", "circular reference",
    "corrupted file", "failed to reshape", "does not match page shape", "corrupted IFD",
)  # fmt: skip


def check_tiff(path: str | PathLike[str]) -> str | None:
    """Raise :class:`InputError` if a TIFF is damaged; else return its first series' axes.

    Damaged: its list of pages ends early (a truncated or overwritten file), it holds fewer
    pages than its own metadata (tifffile shape, ImageJ, OME-XML) declares, or its pixel data
    reach past the end of the file. tifffile alone reads such files as their first page(s).
    """
    return _check_tiff(path)[0]


def _check_tiff(path: str | PathLike[str]) -> tuple[str | None, _TiffLayout]:
    """:func:`check_tiff`, and the file's layout (:func:`_tiff_layout`) read while it is open."""
    import tifffile

    p = Path(path)
    with _quiet_tifffile() as logged:
        try:
            with tifffile.TiffFile(p) as tif:
                size = tif.filehandle.size
                series = tif.series[0] if tif.series else None
                damage = next((m for m in logged if any(k in m for k in _TIFF_DAMAGE)), None)
                if damage is not None:
                    what = "its list of pages breaks off"
                    if "shape" in damage or "corrupted file" in damage:
                        what = "it holds fewer pages than its metadata declare"
                    why = f"{what}; {_tifffile_message(damage)}"
                    raise InputError(f"input {str(p)!r}: the TIFF file is damaged ({why})")
                if series is None:
                    return None, (None, None, None)
                pages = list(getattr(series, "_pages", None) or series.pages)
                missing = sum(page is None for page in pages)
                if missing:
                    raise InputError(
                        f"input {str(p)!r}: the TIFF file is damaged ({missing} of the {len(pages)} pages "
                        "its metadata lists are missing)"
                    )
                end = _data_end(series, pages)
                if end > size:
                    raise InputError(
                        f"input {str(p)!r}: the TIFF file is damaged (truncated: its pixel data end at byte {end} "
                        f"but the file has {size} bytes)"
                    )
                return str(series.axes), _tiff_layout(tif, str(series.axes))
        except InputError:
            raise
        except Exception as e:
            why = f"cannot read the TIFF file: it is damaged or not a TIFF ({one_line(e)})"
            raise InputError(f"input {str(p)!r}: {why}") from None


def _data_end(series: Any, pages: list[Any]) -> int:
    """The byte just past the last pixel data of ``series``."""
    if series.dataoffset is not None:  # contiguous (memory-mappable): one block
        return int(series.dataoffset) + int(series.nbytes)
    end = 0
    for page in pages:
        ends = [int(o) + int(c) for o, c in zip(page.dataoffsets, page.databytecounts, strict=False) if c]
        end = max(end, *ends) if ends else end
    return end


def _tifffile_message(message: str) -> str:
    """tifffile's log line without the ``<tifffile.TiffPages @8>`` object it starts with."""
    text = message.strip().splitlines()[0] if message.strip() else message
    if text.startswith("<") and "> " in text:
        text = text.split("> ", 1)[1]
    return "tifffile: " + text[:160]


class _Collect(logging.Handler):
    """Keeps the messages tifffile logs in one thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


_quiet_lock = threading.Lock()
_quiet_users = 0
_quiet_saved: tuple[int, bool] = (logging.NOTSET, True)


@contextmanager
def _quiet_tifffile() -> Iterator[list[str]]:
    """Keep tifffile's log lines off stderr (and the root logger) while we read; yield what it logged.

    We report a damaged file in one error of our own. The logger's level and ``propagate`` are
    restored when the last reader (of any thread) is done.
    """
    global _quiet_users, _quiet_saved
    logger = logging.getLogger("tifffile")
    handler = _Collect()
    with _quiet_lock:
        if _quiet_users == 0:
            _quiet_saved = (logger.level, logger.propagate)
            logger.setLevel(logging.WARNING)
            logger.propagate = False
        _quiet_users += 1
        logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        with _quiet_lock:
            logger.removeHandler(handler)
            _quiet_users -= 1
            if _quiet_users == 0:
                logger.setLevel(_quiet_saved[0])
                logger.propagate = _quiet_saved[1]


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
    from .labels import stores_placeholder_image

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

