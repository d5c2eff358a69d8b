"""FrameSource: frames of a stack read lazily, one at a time, from whatever array the user has."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..io.frame_view import FrameView
from .preprocess import DEFAULT_PERCENTILES, _PERCENTILE_SAMPLE, to_model_input

#: at most this many evenly spaced frames are read to choose the stack-wide window
WINDOW_SAMPLE_FRAMES = 16
#: frames whose bytes enter :meth:`FrameSource.fingerprint`
FINGERPRINT_FRAMES = 4


class FrameIndexError(InputError, IndexError):
    """A frame index outside ``0 .. len(source) - 1`` (both an InputError and an IndexError)."""


class FrameSource:
    """Read-only, lazy view of a (T, H, W) or (T, H, W, C) stack as SAM 2 model inputs.

    Nothing proportional to the stack length is read or kept: a frame is read with
    ``frames[t]`` only when asked for, and at construction at most
    ``WINDOW_SAMPLE_FRAMES`` frames are read (one for uint8 data).

    Intensity rule (the same for every frame, so slices share contrast, which helps tracking):

    * ``uint8`` data gets exactly the official preprocessing; ``window`` is None.
    * ``bool`` data uses the fixed window (0, 1).
    * Other dtypes use ONE per-channel window for the whole stack: ``window`` if given,
      otherwise the ``percentiles`` (default 1st-99.8th) of up to 16 evenly spaced frames
      (large frames are sub-sampled on a regular grid, ~4 M pixels per channel in all).
      Values are scaled to [0, 1] by the window and clipped (see ``engine.preprocess``).

    Arguments:
        frames: numpy array, numpy memmap (e.g. ``tifffile.memmap``), zarr array, dask
            array, or any object with ``shape``, ``dtype``, ``ndim`` and ``__getitem__``.
            Axis 0 is the frame (time or z) axis.
        channel_axis: axis of ``frames`` that holds channels (1..3 for 4-D input, e.g. 1
            for (T, C, H, W)). Default: 3-D is grayscale, 4-D has channels last.
        window: fixed (low, high) intensity window, shape (2,) or (C, 2), for non-uint8 data.
        percentiles: (low, high) percentiles for the automatic window.

    Raises:
        InputError: wrong rank, no frames, empty frames, more than 4 channels, a
            non-numeric dtype, a bad window, or NaN/infinite values in a frame read.
    """

    def __init__(
        self,
        frames: Any,
        *,
        channel_axis: int | None = None,
        window: Any = None,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    ) -> None:
        for attr in ("shape", "dtype", "ndim", "__getitem__"):
            if not hasattr(frames, attr):
                raise InputError(f"frames must be an array-like with .{attr}, got {type(frames).__name__}")
        self._source_type = type(frames).__name__
        raw_shape = tuple(int(n) for n in frames.shape)
        axis = _check_channel_axis(channel_axis, len(raw_shape))
        if axis is not None:  # (T, C, H, W) and the like: channels last, still one frame per read
            frames = FrameView(frames, 0, channel_axis=axis)
        self._frames = frames
        self._shape = _check_frame_layout(tuple(frames.shape), raw_shape)
        self._dtype = _check_dtype(frames.dtype)
        self.percentiles = _check_percentiles(percentiles)
        self._fingerprint: str | None = None
        win: np.ndarray | None = None
        if self._dtype == np.uint8:
            self.frame(0)  # cheap check that frames[0] reads and has the right shape
        elif window is not None:
            win = _check_window(window, self.channels)
            self.frame(0)
        elif self._dtype == np.bool_:
            win = np.tile([0.0, 1.0], (self.channels, 1))
            self.frame(0)
        else:
            win = self._stack_window()
        if win is not None:
            win.flags.writeable = False  # fixed for the life of the source (caches rely on it)
        self._window = win

    # ---------------------------------------------------------------- shape
    def __len__(self) -> int:
        return self._shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """(T, H, W) or (T, H, W, C): the stack with channels last, as ``frame`` returns it."""
        return self._shape

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return self._shape[1], self._shape[2]

    @property
    def channels(self) -> int:
        """C, or 1 for a grayscale (T, H, W) stack."""
        return self._shape[3] if len(self._shape) == 4 else 1

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def window(self) -> np.ndarray | None:
        """The stack-wide (C, 2) float64 intensity window (read-only), or None for uint8 data."""
        return self._window

    def __repr__(self) -> str:
        return f"FrameSource(shape={self._shape}, dtype={self._dtype}, source={self._source_type})"

    # ---------------------------------------------------------------- reading
    def frame(self, t: int) -> np.ndarray:
        """Read frame ``t`` as an (H, W) or (H, W, C) numpy array (may be a view of the source).

        Raises:
            FrameIndexError: ``t`` is not an integer in ``0 .. len - 1`` (negative indices
                are refused: they are almost always a bug in frame arithmetic).
            InputError: the frame holds NaN or infinite values, or has the wrong shape.
        """
        t = self.check_index(t)
        arr = np.asarray(self._frames[t])
        if arr.shape != self._shape[1:]:
            raise InputError(f"frame {t} has shape {arr.shape}, expected {self._shape[1:]}")
        if arr.dtype != self._dtype:
            arr = arr.astype(self._dtype)
        if np.issubdtype(self._dtype, np.floating) and not np.isfinite(arr).all():
            raise InputError(f"frame {t} contains NaN or infinite values")
        return arr

    def model_input(self, t: int, size: int) -> torch.Tensor:
        """Frame ``t`` as a (1, 3, size, size) normalised float32 model input (stack-wide window)."""
        return to_model_input(self.frame(t), size, window=self.window)

    def fingerprint(self) -> str:
        """A cheap, stable hex digest of shape, dtype, window and a few sampled frames' bytes.

        Meant as a key for on-disk caches of model inputs/features: it changes when the
        shape, dtype, intensity window or any sampled frame changes, but it is NOT a hash
        of every frame (that would read the whole stack).
        """
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=16)
            h.update(repr((self._shape, self._dtype.str)).encode())
            h.update(b"none" if self.window is None else np.ascontiguousarray(self.window, np.float64).tobytes())
            for t in _spaced(len(self), FINGERPRINT_FRAMES):
                h.update(memoryview(np.ascontiguousarray(self.frame(t))).cast("B"))
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def check_index(self, t: Any) -> int:
        """``t`` as an int if it is a valid frame index, else raise :class:`FrameIndexError`."""
        n = len(self)
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise FrameIndexError(f"frame index must be an integer in 0..{n - 1}, got {t!r}")
        if not 0 <= t < n:
            raise FrameIndexError(f"frame index {int(t)} is out of range: the stack has frames 0..{n - 1}")
        return int(t)

    # ---------------------------------------------------------------- internals
    def _stack_window(self) -> np.ndarray:
        """Per-channel percentiles, shape (C, 2), over up to 16 evenly spaced frames."""
        picks = _spaced(len(self), WINDOW_SAMPLE_FRAMES)
        per_frame = max(1, _PERCENTILE_SAMPLE // len(picks))
        samples = []
        for t in picks:
            arr = self.frame(t)
            if arr.ndim == 2:
                arr = arr[..., None]
            step = int(np.ceil(np.sqrt(arr.shape[0] * arr.shape[1] / per_frame)))
            samples.append(arr[::step, ::step].reshape(-1, arr.shape[-1]))  # (N, C)
        flat = np.concatenate(samples).astype(np.float64)
        return np.percentile(flat, self.percentiles, axis=0).T  # (C, 2)


def _spaced(n: int, k: int) -> list[int]:
    """Up to ``k`` distinct evenly spaced indices in 0..n-1, first and last included."""
    return sorted({int(i) for i in np.linspace(0, n - 1, min(n, k)).round()})


def _check_channel_axis(channel_axis: int | None, ndim: int) -> int | None:
    if ndim not in (3, 4):
        raise InputError(f"frames must be 3-D (T, H, W) or 4-D (T, H, W, C), got {ndim}-D")
    if channel_axis is None:
        return None
    if ndim != 4:
        raise InputError(f"channel_axis={channel_axis} needs 4-D frames, got {ndim}-D")
    axis = channel_axis + ndim if channel_axis < 0 else channel_axis
    if not 1 <= axis <= 3:
        raise InputError(f"channel_axis must be 1, 2 or 3 (axis 0 is the frame axis), got {channel_axis}")
    return None if axis == 3 else axis


def _check_frame_layout(shape: tuple[int, ...], raw: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` (the stack with channels last) if it has frames of 1-4 channels; ``raw`` is named in errors."""
    if shape[0] == 0:
        raise InputError(f"the stack has no frames (shape {raw})")
    if shape[1] == 0 or shape[2] == 0:
        raise InputError(f"the frames are empty (H or W is 0, shape {raw})")
    if len(shape) == 4 and not 1 <= shape[3] <= 4:
        raise InputError(
            f"frames have {shape[3]} channels (shape {raw}); expected 1-4 channels "
            "-- pick up to 3 channels first, or set channel_axis"
        )
    return shape


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InputError(f"frames must have a numpy dtype, got {dtype!r}") from None
    if dt == np.bool_ or (np.issubdtype(dt, np.number) and not np.issubdtype(dt, np.complexfloating)):
        return dt
    raise InputError(f"frames must be numeric (integer, float or bool), got dtype {dt}")


def _check_percentiles(p: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in p)
    if not 0.0 <= lo < hi <= 100.0:
        raise InputError(f"percentiles must satisfy 0 <= low < high <= 100, got {p}")
    return lo, hi


def _check_window(window: Any, channels: int) -> np.ndarray:
    w = np.asarray(window, dtype=np.float64)
    if w.shape not in ((2,), (1, 2), (channels, 2)):
        raise InputError(f"window must have shape (2,) or ({channels}, 2), got {w.shape}")
    if not np.isfinite(w).all():
        raise InputError("window contains NaN or infinite values")
    return np.array(np.broadcast_to(w.reshape(-1, 2), (channels, 2)))
