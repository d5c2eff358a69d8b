"""Commit the preview into the result Labels layer without clobbering it, and undo that.

Overlap rule (also in ``docs/plugin.md``): an object's id is its label value. On every
slice where the session has a result for object ``k``,

* pixels of ``k``'s new mask are written as ``k`` where the result layer holds 0 or ``k``;
  pixels that already belong to another label are kept as they are (and counted);
* pixels that held ``k`` but are outside its new mask become 0 (re-committing a corrected
  object replaces its previous version on that slice);
* slices without a result for ``k`` are not touched.

The commit is planned in a worker (:func:`plan_commit`, a generator over slices) and applied
on the main thread in one napari history step (:func:`apply_commit`), so ``Ctrl+Z`` in the
Labels layer undoes it too. :func:`undo_commit` restores the old values of the pixels that
still hold what the commit wrote (later paint strokes are kept).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from .stack import StackSpec
from .tasks import Progress


@dataclass(frozen=True)
class CommitRecord:
    """What one commit changed: full-rank pixel indices with old and new values."""

    indices: tuple[np.ndarray, ...]
    old: np.ndarray
    new: np.ndarray
    objects: tuple[int, ...]
    frames: tuple[int, ...]
    kept: dict[int, int] = field(default_factory=dict)  # object -> pixels left to another label

    @property
    def n_changed(self) -> int:
        return int(self.old.size)

    def summary(self) -> str:
        """The note shown after the commit."""
        kept = "".join(
            f"; {n} pixels of object {k} overlapped other labels and were left to them" for k, n in self.kept.items()
        )
        return f"committed object(s) {', '.join(map(str, self.objects))} on {len(self.frames)} slice(s){kept}"


def check_label_dtype(data: Any, objects: list[int]) -> None:
    """Raise InputError if the result layer's dtype cannot hold every object id."""
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "iu":
        raise InputError(f"the result layer holds {dtype} values, not integer labels; pick or make an integer Labels layer")
    top = max(objects, default=0)
    if top > np.iinfo(dtype).max:
        raise InputError(
            f"the result layer is {dtype} and cannot hold label {top}; convert it to uint32 "
            "(layer.data = layer.data.astype('uint32')) or use lower object ids"
        )


def commit_problem(data: Any, coverage: dict[int, set[int]]) -> str | None:
    """Why ``coverage`` cannot be committed into the result layer's ``data``, or None."""
    if not coverage:
        return "nothing to commit yet: click on an object first"
    try:
        check_label_dtype(data, list(coverage))
    except InputError as exc:
        return str(exc)
    return None


def plan_commit(
    result: Any, preview: Any, coverage: dict[int, set[int]], spec: StackSpec
) -> Generator[Progress, None, CommitRecord]:
    """Yield one progress step per slice; return the :class:`CommitRecord` to apply.

    Arguments:
        result: the result Labels layer's data (shape ``spec.shape``), read only here.
        preview: the preview Labels data (same shape): the session's label image per slice.
        coverage: object id -> slices where the session has a result for it.
    """
    frames = sorted(set().union(*coverage.values())) if coverage else []
    check_label_dtype(result, list(coverage))
    idx_parts: list[list[np.ndarray]] = [[] for _ in range(spec.ndim)]
    olds: list[np.ndarray] = []
    news: list[np.ndarray] = []
    kept: dict[int, int] = {k: 0 for k in coverage}
    for i, frame in enumerate(frames):
        where = spec.plane_index(frame)
        new = np.asarray(preview[where])
        old = np.asarray(result[where])
        target = old.copy()
        for obj, frames_of_obj in coverage.items():
            if frame not in frames_of_obj:
                continue
            mine = new == obj
            free = (old == 0) | (old == obj)
            target[(old == obj) & ~mine] = 0
            target[mine & free] = obj
            kept[obj] += int(np.count_nonzero(mine & ~free))
        rows, cols = np.nonzero(target != old)
        if rows.size:
            full: list[np.ndarray] = [None] * spec.ndim  # type: ignore[list-item]
            r_axis, c_axis = spec.plane_axes
            full[r_axis], full[c_axis] = rows, cols
            if spec.video_axis is not None:
                full[spec.video_axis] = np.full(rows.size, frame, dtype=rows.dtype)
            for axis in range(spec.ndim):
                idx_parts[axis].append(full[axis])
            olds.append(old[rows, cols])
            news.append(target[rows, cols])
        yield Progress(i + 1, len(frames))
    dtype = np.dtype(result.dtype)
    indices = tuple(np.concatenate(p) if p else np.zeros(0, dtype=np.intp) for p in idx_parts)
    return CommitRecord(
        indices=indices,
        old=np.concatenate(olds).astype(dtype) if olds else np.zeros(0, dtype),
        new=np.concatenate(news).astype(dtype) if news else np.zeros(0, dtype),
        objects=tuple(sorted(coverage)),
        frames=tuple(frames),
        kept={k: v for k, v in kept.items() if v},
    )


def apply_commit(layer: Any, record: CommitRecord) -> None:
    """Write a planned commit into a Labels layer as one undoable napari history step."""
    if record.n_changed == 0:
        return
    with layer.block_history():
        layer.data_setitem(record.indices, record.new)


def undo_commit(layer: Any, record: CommitRecord) -> int:
    """Put back what ``record`` overwrote where the layer still holds the committed values.

    Returns the number of pixels restored.
    """
    if record.n_changed == 0:
        return 0
    current = np.asarray(layer.data[record.indices])
    still = current == record.new
    if not still.any():
        return 0
    indices = tuple(ix[still] for ix in record.indices)
    with layer.block_history():
        layer.data_setitem(indices, record.old[still])
    return int(still.sum())
