"""One lazy view of any array as a stack of frames: the frame axis first, channels last.

Every reader of frames goes through :class:`FrameView`: :func:`~napari_sam2.io.stacks.open_stack`
(TIFF, zarr, ``.npy``, with size-1 OME-Zarr axes dropped), the napari widget's video axis
(any of a layer's three axes), and :class:`~napari_sam2.engine.frames.FrameSource`'s
``channel_axis``. Nothing is read until ``view[t]``, and then only frame ``t``.

numpy only: no torch, Qt or napari.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class FrameView:
    """A read-only ``(T, H, W[, C])`` view of ``array``, read one frame at a time.

    Parameters
    ----------
    array : array-like
        numpy, memmap, zarr, dask, or any object with ``shape``, ``dtype`` and ``__getitem__``.
    frame_axis : int or None
        The axis of ``array`` that runs through the stack (time or z); it comes first. None:
        ``array`` is one frame, seen as a one-frame stack.
    drop : tuple of int
        Axes of size 1 to leave out (read at index 0), e.g. the ``t`` and ``c`` of a
        ``tczyx`` OME-Zarr image that has one of each.
    channel_axis : int or None
        The axis of ``array`` that holds channels; it goes last. None: no channels, or they
        are last already.

    Notes
    -----
    Only ``view[t]`` with an integer ``t`` in ``0 .. len(view) - 1`` is supported. The frame
    is read as ``array[index]`` with the trailing whole-axis slices left out (``array[t]``
    when the frame axis is first, ``array`` itself for a one-frame view), so an object that
    takes only an integer index can be viewed. Subclasses change how one frame is read by
    overriding :meth:`read`.
    """

    def __init__(
        self, array: Any, frame_axis: int | None, *, drop: tuple[int, ...] = (), channel_axis: int | None = None
    ) -> None:
        self._array = array
        self._frame_axis = frame_axis
        self._drop = drop
        src = tuple(int(n) for n in array.shape)
        # axes of one frame as they come out of the source, in source order
        kept = [i for i in range(len(src)) if i != frame_axis and i not in drop]
        perm = [kept.index(i) for i in kept if i != channel_axis]
        if channel_axis is not None:
            perm.append(kept.index(channel_axis))
        self._perm = tuple(perm)  # source order of one frame -> (H, W[, C])
        frame_shape = tuple(src[kept[p]] for p in self._perm)
        self.shape = ((src[frame_axis] if frame_axis is not None else 1), *frame_shape)
        self.dtype = array.dtype  # the source's, as it is: its readers check it
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t: Any) -> Any:
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)) or not 0 <= t < self.shape[0]:
            raise IndexError(f"frame index must be an integer in 0..{self.shape[0] - 1}, got {t!r}")
        index: list[Any] = [slice(None)] * len(self._array.shape)
        for i in self._drop:
            index[i] = 0
        if self._frame_axis is not None:
            index[self._frame_axis] = int(t)
        while index and index[-1] == slice(None):
            index.pop()  # array[t] rather than array[t, :, :]: some array-likes take only an integer
        frame = self.read(tuple(index), int(t))
        if self._perm == tuple(range(len(self._perm))) or np.ndim(frame) != len(self._perm):
            return frame  # in order already (or not a frame of this shape: the caller's check says so)
        return frame.transpose(self._perm)  # source order of one frame -> (H, W[, C])

    def read(self, index: tuple[Any, ...], t: int) -> Any:
        """Frame ``t`` as the source gives it: ``array[index]`` (``array`` for an empty index)."""
        if not index:
            return self._array
        return self._array[index[0] if len(index) == 1 else index]
