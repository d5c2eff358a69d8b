"""What a session gives back for one frame: :class:`FrameResult`, lazy at full resolution.

A result keeps each object's low-resolution logits (the model's 256 x 256 output, say) and
makes the full-resolution arrays only when asked: :attr:`FrameResult.logits` once (then
cached), and :meth:`FrameResult.label_image` one object at a time, without the (O, H, W)
float array (800 MB per frame at 2048 x 2048 with 50 objects).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..model.sam2 import NO_OBJ_SCORE


def upsample(low: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(h, w) or (1, 1, h, w) logits -> (H, W) float32 at the image's size (bilinear, as the official)."""
    with torch.inference_mode():
        low = low.float().reshape(1, 1, *low.shape[-2:])
        return F.interpolate(low, size=hw, mode="bilinear", align_corners=False)[0, 0]


class FrameResult:
    """All objects' masks on one frame.

    Parameters
    ----------
    frame : int
        Frame index.
    obj_ids : list of int
        Object ids, in the order of the first axis of :attr:`logits`.
    logits : np.ndarray, optional
        (O, H, W) float32 mask logits at the image's resolution.
    low_res : sequence of torch.Tensor or None, optional
        Instead of ``logits``: each object's low-resolution logits (None where the object has
        no output on this frame), with ``hw`` the image's (H, W).
    hw : (int, int), optional
        The image's height and width; required with ``low_res``.

    Objects without an output on this frame hold -1024 (``NO_OBJ_SCORE``) everywhere.
    """

    def __init__(
        self,
        frame: int,
        obj_ids: list[int],
        logits: np.ndarray | None = None,
        *,
        low_res: Sequence[torch.Tensor | None] | None = None,
        hw: tuple[int, int] | None = None,
    ) -> None:
        if (logits is None) == (low_res is None):
            raise ValueError("give either logits or low_res")
        if low_res is not None and (hw is None or len(low_res) != len(obj_ids)):
            raise ValueError("low_res needs hw and one entry per object")
        self.frame = int(frame)
        self.obj_ids = list(obj_ids)
        self._logits = None if logits is None else np.asarray(logits, dtype=np.float32)
        self._low = None if low_res is None else list(low_res)
        self._hw = tuple(self._logits.shape[1:]) if self._logits is not None else tuple(hw)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"FrameResult(frame={self.frame}, obj_ids={self.obj_ids}, hw={self._hw})"

    @property
    def hw(self) -> tuple[int, int]:
        """The image's (H, W)."""
        return self._hw  # type: ignore[return-value]

    @property
    def logits(self) -> np.ndarray:
        """(O, H, W) float32 mask logits at the image's resolution (made on first use)."""
        if self._logits is None:
            out = np.full((len(self.obj_ids), *self.hw), NO_OBJ_SCORE, dtype=np.float32)
            for i, low in enumerate(self._low or []):
                if low is not None:
                    out[i] = upsample(low, self.hw).cpu().numpy()
            self._logits = out
        return self._logits

    @property
    def masks(self) -> np.ndarray:
        """(O, H, W) bool masks (logit > 0)."""
        return self.logits > 0

    def label_image(self, dtype: Any = np.uint32) -> np.ndarray:
        """(H, W) label image: each pixel gets the id of the object with the highest positive
        logit there (the first object on a tie), 0 where no object's logit is positive."""
        h, w = self.hw
        if not self.obj_ids:
            return np.zeros((h, w), dtype=dtype)
        ids = np.asarray([0, *self.obj_ids], dtype=dtype)
        if self._logits is not None:  # already at full resolution
            best = self._logits.argmax(axis=0)
            out = ids[best + 1]
            out[self._logits.max(axis=0) <= 0] = 0
            return out
        top = torch.zeros((h, w))  # only logits > 0 label a pixel
        which = torch.zeros((h, w), dtype=torch.long)
        for i, low in enumerate(self._low or []):
            if low is None:
                continue
            up = upsample(low, (h, w)).cpu()
            better = up > top  # strict: the first object keeps a tie, as argmax
            top = torch.where(better, up, top)
            which = torch.where(better, i + 1, which)
        return ids[which.numpy()]
