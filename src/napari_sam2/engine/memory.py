"""Per-object tracking state: prompts and per-frame outputs, with heavy tensors spillable.

This mirrors the official video predictor's bookkeeping (conditioning and
non-conditioning outputs, temporary outputs of clicks not yet propagated, frames
tracked and in which direction) as explicit dataclasses instead of a dict of dicts.
The large per-frame tensors (low-resolution logits and the memory features) live in a
:class:`~napari_sam2.engine.store.SpillStore`, so a long stack does not hold them all
in RAM.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

from .store import SpillStore


@dataclass
class FrameOutput:
    """One object's output on one frame.

    Attributes:
        key: key of the heavy tensors in the store.
        obj_ptr: (1, C) object pointer.
        object_score: (1, 1) object-present logit.
        has_memory: whether a memory has been encoded for this output.
    """

    key: int
    obj_ptr: torch.Tensor
    object_score: torch.Tensor
    has_memory: bool = False


@dataclass
class PointPrompt:
    """Clicks (and box corners) of one object on one frame, in model-input pixels."""

    coords: torch.Tensor  # (1, N, 2) x, y
    labels: torch.Tensor  # (1, N) int32


@dataclass
class ObjectTrack:
    """Everything the session knows about one object."""

    obj_id: int
    points: dict[int, PointPrompt] = field(default_factory=dict)
    masks: dict[int, torch.Tensor] = field(default_factory=dict)  # frame -> (1, 1, S, S) mask prompt
    cond: dict[int, FrameOutput] = field(default_factory=dict)
    non_cond: dict[int, FrameOutput] = field(default_factory=dict)
    temp_cond: dict[int, FrameOutput] = field(default_factory=dict)
    temp_non_cond: dict[int, FrameOutput] = field(default_factory=dict)
    tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse

    def output(self, frame: int, *, prefer_temp_cond: bool | None = None) -> FrameOutput | None:
        """The output shown on ``frame``: a pending click result first, then the stored one.

        Arguments:
            prefer_temp_cond: which pending (temp) dict to consult -- True: conditioning,
                False: non-conditioning, None: both (conditioning first).
        """
        temps = {True: (self.temp_cond,), False: (self.temp_non_cond,), None: (self.temp_cond, self.temp_non_cond)}
        for d in (*temps[prefer_temp_cond], self.cond, self.non_cond):
            if frame in d:
                return d[frame]
        return None

    def prompted_frames(self) -> set[int]:
        return set(self.points) | set(self.masks)


class OutputStore:
    """Creates :class:`FrameOutput` records and keeps their heavy tensors in a SpillStore.

    Arguments:
        ram_budget_bytes: RAM for logits and memories before they spill to disk.
        spill_dir: parent directory of the spill files (default: the system temp dir).
    """

    def __init__(self, ram_budget_bytes: int | None, spill_dir: str | None = None) -> None:
        self._store = SpillStore(ram_budget_bytes, spill_dir)
        self._ids = itertools.count()

    def new(self, logits: torch.Tensor, obj_ptr: torch.Tensor, object_score: torch.Tensor) -> FrameOutput:
        key = next(self._ids)
        self._store.put(key, {"logits": logits.detach()})
        return FrameOutput(key=key, obj_ptr=obj_ptr.detach(), object_score=object_score.detach())

    def logits(self, out: FrameOutput) -> torch.Tensor:
        """(1, 1, s, s) low-resolution logits of an output."""
        return self._tensors(out)["logits"]

    def memory(self, out: FrameOutput) -> torch.Tensor:
        """(1, mem_dim, E, E) memory features (bfloat16, as the official stores them)."""
        if not out.has_memory:
            raise KeyError("this output has no memory yet")
        return self._tensors(out)["memory"]

    def set_memory(self, out: FrameOutput, memory: torch.Tensor) -> None:
        tensors = dict(self._tensors(out))
        tensors["memory"] = memory.detach().to(torch.bfloat16)
        self._store.put(out.key, tensors)
        out.has_memory = True

    def drop(self, out: FrameOutput) -> None:
        self._store.pop(out.key)

    def close(self) -> None:
        self._store.close()

    @property
    def ram_bytes(self) -> int:
        return self._store.ram_bytes

    @property
    def disk_bytes(self) -> int:
        return self._store.disk_bytes

    def _tensors(self, out: FrameOutput) -> dict[str, torch.Tensor]:
        tensors = self._store.get(out.key)
        if tensors is None:
            raise KeyError(f"output {out.key} is not in the store")
        return tensors
