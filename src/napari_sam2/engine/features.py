"""FeatureCache: the image encoder runs once per frame per session; features are kept within a RAM budget."""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import Any

import torch

from .precision import autocast
from ..model.sam2 import SAM2, ImageFeatures
from .frames import FrameSource
from .store import SpillStore

#: tensor names of one frame's entry in the store (``pos`` is shared by all frames, kept once)
_EMBED, _HIGH0, _HIGH1 = "embed", "high_res0", "high_res1"


class FeatureCache:
    """Encoder features of the frames of one stack, computed on first use and never recomputed.

    Each frame's ``embed`` and two high-resolution maps live in a :class:`SpillStore`: up to
    ``ram_budget_bytes`` in RAM, the least recently used beyond that in a private temporary
    directory (read back bit-exactly). The position encoding is the same for every frame
    and is kept once. ``get`` returns tensors bit-identical to a fresh ``encode_image``.

    Thread-safe: while one thread encodes frame t, another asking for t waits for that
    result instead of encoding it again; hits on other frames do not wait.

    Arguments:
        model: the SAM 2 network.
        source: the frames (a :class:`FrameSource`, or an array that is wrapped in one).
        ram_budget_bytes: RAM for cached features (None: no limit). A frame takes 16 MiB
            in float32 with the official 1024-pixel models (embed 4 MiB, stride-4 map 8 MiB,
            stride-8 map 4 MiB), so the default 1 GiB keeps 64 frames in RAM.
        spill_dir: parent directory for spilled features (default: the system temp dir).
        compute_dtype: float32 (exact) or bfloat16 (autocast; features are then stored
            in bfloat16, half the bytes).
    """

    def __init__(
        self,
        model: SAM2,
        source: FrameSource | Any,
        *,
        ram_budget_bytes: int | None = 1 << 30,
        spill_dir: str | os.PathLike[str] | None = None,
        compute_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.model = model
        self.compute_dtype = compute_dtype
        self.source = source if isinstance(source, FrameSource) else FrameSource(source)
        self.store = SpillStore(ram_budget_bytes, spill_dir)
        self.encoded_count = 0
        self._pos: torch.Tensor | None = None
        self._lock = threading.Lock()
        self._pending: dict[int, threading.Event] = {}

    def __len__(self) -> int:
        """Number of frames with cached features."""
        return len(self.store)

    def __contains__(self, t: object) -> bool:
        """Whether frame ``t``'s features are cached (in RAM or on disk)."""
        return t in self.store

    def get(self, t: int) -> ImageFeatures:
        """Features of frame ``t`` (batch size 1), encoding the frame on the first request.

        Raises:
            FrameIndexError: ``t`` is not a valid frame index.
            InputError: the frame cannot be read as a model input (e.g. it holds NaN).
        """
        t = self.source.check_index(t)
        while True:
            with self._lock:
                entry = self.store.get(t)
                if entry is not None:
                    return self._features(entry)
                event = self._pending.get(t)
                if event is None:
                    event = self._pending[t] = threading.Event()
                    break
            event.wait()  # another thread is encoding t; re-check (it may have failed)
        try:
            features = self._encode(t)
            with self._lock:
                self.store.put(t, {_EMBED: features.embed, _HIGH0: features.high_res[0], _HIGH1: features.high_res[1]})
                if self._pos is None:
                    self._pos = features.pos
                self.encoded_count += 1
                return ImageFeatures(embed=features.embed, pos=self._pos, high_res=features.high_res)
        finally:
            with self._lock:
                del self._pending[t]
            event.set()

    def prefetch(self, t: int) -> None:
        """Encode frame ``t`` now if it is not cached (e.g. from a worker thread, ahead of use)."""
        self.get(t)

    def clear(self) -> None:
        """Forget every cached frame (``encoded_count`` keeps counting)."""
        with self._lock:
            self.store.clear()

    def close(self) -> None:
        """Forget every cached frame and delete the spill directory."""
        with self._lock:
            self.store.close()

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ---------------------------------------------------------------- internals
    def _encode(self, t: int) -> ImageFeatures:
        model = self.model
        x = self.source.model_input(t, model.config.image_size).to(model.device, model.dtype)
        with torch.inference_mode(), autocast(model.device, self.compute_dtype):
            return model.encode_image(x)

    def _features(self, entry: dict[str, torch.Tensor]) -> ImageFeatures:
        assert self._pos is not None
        return ImageFeatures(embed=entry[_EMBED], pos=self._pos, high_res=(entry[_HIGH0], entry[_HIGH1]))
