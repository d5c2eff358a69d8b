"""Segment everything through a stack: found objects become ordinary objects of one session.

The automatic step (a *generator*: anything with ``.generate(image) -> list[MaskRecord]``, such
as :class:`~napari_sam2.engine.automatic.AutomaticMaskGenerator`) finds objects on one frame;
:func:`add_found` turns them into mask prompts ``Prompt(frame, obj_id, mask=...)`` applied through
the :class:`~napari_sam2.engine.editor.Editor` (the one edit path), so each is visible,
correctable with clicks, removable and committable like an object the user clicked.
:func:`everything_steps` then carries every object through the stack and adds the objects that
appear later.

The run order (``direction="both"``, start frame ``s``, check every ``k`` frames)::

    s                      find objects, write s
    s+1 .. s+k             track forward (one run), write each frame
    s+k                    check: uncovered foreground? run the automatic step, add new objects
    s+k-1 .. s+1           only if objects were added: track backward from s+k-1 (one run), so
                           the new objects reach back to the last check; rewrite those frames
    s+k                    rewrite (it now holds the new objects' masks)
    s+k+1 .. s+2k          track forward, check, ... to the last frame
    s-1 .. 0               the same backward from s (back-fills run forward)

Every frame is written once with all objects that exist there when the sweep passes it, and
again only when a later check added objects within ``k`` frames of it. The work is one visit per
frame plus at most ``k - 1`` per check that found something (all objects found at one check share
one back-fill run), never a re-propagation of the stack per new object. An object added at a check
is not tracked on frames before the previous check (the check there saw its place covered, or not
foreground); in the backward sweep it is tracked from its own frame's memory like any object.
The session tracks every object on every frame of a run (there is no per-object run), so a
back-fill also re-tracks the older objects on its frames, in the other direction.

*Uncovered foreground* (where a check looks for new objects): ``foreground(image)`` (default
:func:`otsu_foreground`) minus the pixels the tracked objects cover. A check runs the automatic
step only when at least ``min_new_area`` such pixels are left, and keeps a found mask as a new
object when at most ``max_overlap`` of it lies on tracked objects and at least ``min_new_area``
of its pixels are uncovered foreground (then only its uncovered pixels become the new object).
``foreground=None`` checks with the automatic step alone (every check runs it; masks are judged by
their overlap with tracked objects only).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..errors import InputError
from ..progress import Progress
from ..prompt import Prompt, PromptSet
from .automatic import MaskRecord
from .automatic import label_image as records_label_image
from .editor import Editor
from .results import FrameResult
from .runs import Run, check_direction

__all__ = [
    "EverythingResult",
    "FoundFrame",
    "MaskGenerator",
    "add_found",
    "everything_steps",
    "find_objects",
    "otsu_foreground",
]

#: a found mask must be at least this fraction foreground (with a foreground rule) to be an object
MIN_FOREGROUND_FRACTION = 0.5


@dataclass(frozen=True)
class FoundFrame:
    """One frame written by :func:`everything_steps` (the ``payload`` of its progress).

    Attributes
    ----------
    frame : int
        The frame.
    labels : np.ndarray
        (H, W) uint32 instance labels of every object there (``result.label_image()``).
    result : FrameResult
        The session's masks of that frame.
    """

    frame: int
    labels: np.ndarray
    result: FrameResult


class MaskGenerator(Protocol):
    """What the automatic step is: ``generate(image) -> list[MaskRecord]`` (grid, seeded, tiled)."""

    def generate(self, image: Any) -> list[MaskRecord]: ...


@dataclass
class EverythingResult:
    """What :func:`everything_steps` did.

    Attributes
    ----------
    frame : int
        The frame searched first.
    n_frames : int
        Frames in the stack.
    objects_per_frame : dict of int to int
        Per frame written, how many objects it holds (distinct labels).
    added : dict of int to list of int
        Per frame where objects were added (the first frame included), their ids.
    checked : list of int
        The frames where a check looked for new objects (not the first frame).
    generator_runs : int
        How many times the automatic step ran (the first frame included).
    frame_visits : int
        Frames tracked or written in all (a back-filled frame counts again).
    """

    frame: int
    n_frames: int
    objects_per_frame: dict[int, int] = field(default_factory=dict)
    added: dict[int, list[int]] = field(default_factory=dict)
    checked: list[int] = field(default_factory=list)
    generator_runs: int = 0
    frame_visits: int = 0

    @property
    def objects(self) -> list[int]:
        """Every object id found, in increasing order."""
        return sorted(i for ids in self.added.values() for i in ids)

    @property
    def new_objects(self) -> dict[int, list[int]]:
        """The objects added after the first frame, by the frame they were added on."""
        return {f: ids for f, ids in self.added.items() if f != self.frame}

    def summary(self) -> str:
        """One line: how many objects, where they were added; says so when there are none."""
        if not self.objects:
            return f"no objects found (frame {self.frame} searched first, {len(self.checked)} later checks)"
        n = len(self.objects)
        first = len(self.added.get(self.frame, []))
        text = f"{n} object{'s' * (n != 1)}: {first} on frame {self.frame}"
        later = self.new_objects
        if later:
            text += ", " + ", ".join(f"{len(ids)} new on frame {f}" for f, ids in sorted(later.items()))
        return text


def find_objects(generator: MaskGenerator, image: Any) -> list[MaskRecord]:
    """The automatic step on one image: ``generator.generate(image)``.

    Parameters
    ----------
    generator : MaskGenerator
        Anything with ``generate(image) -> list[MaskRecord]``.
    image : array-like
        (H, W) or (H, W, C).
    """
    return list(generator.generate(image))


def otsu_foreground(image: Any) -> np.ndarray:
    """Pixels on the object side of Otsu's threshold, (H, W) bool.

    Channels are averaged. The side that holds most of the image's border pixels is the
    background, so bright objects on a dark field and dark objects on a bright field both give
    the objects. A constant image has no foreground.
    """
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr.mean(axis=-1)
    if arr.ndim != 2:
        raise InputError(f"foreground needs an (H, W) or (H, W, C) image, got shape {np.shape(image)}")
    lo, hi = float(arr.min()), float(arr.max())
    if not hi > lo:
        return np.zeros(arr.shape, dtype=bool)
    counts, edges = np.histogram(arr, bins=256, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)  # pixels at or below each bin
    w1 = w0[-1] - w0
    s0 = np.cumsum(counts * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    threshold = centres[int(np.argmax(between[:-1]))]
    bright = arr > threshold
    border = np.concatenate([bright[0], bright[-1], bright[1:-1, 0], bright[1:-1, -1]])
    return ~bright if border.mean() > 0.5 else bright


def add_found(
    editor: Editor,
    frame: int,
    records: Sequence[MaskRecord],
    *,
    min_area: int = 16,
    first_id: int | None = None,
) -> list[int]:
    """Add found masks to the editor's session as new objects (mask prompts), in one ``apply``.

    Overlaps are resolved to one object per pixel: pixels the session's objects already cover
    on ``frame`` stay theirs, and among the records smaller masks lie on top
    (:func:`~napari_sam2.engine.automatic.label_image`). What is left of a record with fewer
    than ``min_area`` pixels is dropped.

    Parameters
    ----------
    editor : Editor
        The one edit path over the session.
    frame : int
        The frame the records were found on.
    records : sequence of MaskRecord
        Masks of the frame's (H, W).
    min_area : int, default 16
        Smallest object kept, in pixels (>= 1).
    first_id : int, optional
        The first new id; default (and at least) one above every id in use.

    Returns
    -------
    list of int
        The new object ids, increasing, in the order of ``records`` kept.
    """
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise InputError(f"min_area must be an integer >= 1, got {min_area!r}")
    session = editor.session
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or not 0 <= frame < session.num_frames:
        raise InputError(f"frame must be one of the stack's frames 0..{session.num_frames - 1}, got {frame!r}")
    if not records:
        return []
    hw = session.hw
    labels = records_label_image(records, hw)  # raises on masks of another shape
    in_use = set(session.obj_ids) | set(editor.prompts.obj_ids)
    lowest = max(in_use, default=0) + 1
    if first_id is not None:
        if isinstance(first_id, bool) or not isinstance(first_id, (int, np.integer)) or first_id < 1:
            raise InputError(f"first_id must be an integer >= 1, got {first_id!r}")
        if first_id < lowest:
            raise InputError(f"first_id {first_id} is in use: new objects start at {lowest} or above")
        lowest = int(first_id)
    if session.obj_ids:
        labels[session.label_image(frame) > 0] = 0
    counts = np.bincount(labels.ravel(), minlength=len(records) + 1)
    kept = [i for i in range(1, len(records) + 1) if counts[i] >= min_area]
    if not kept:
        return []
    prompts = dict(editor.prompts)
    new_ids = []
    for offset, i in enumerate(kept):
        obj_id = lowest + offset
        prompts[(frame, obj_id)] = Prompt(frame, obj_id, points_xy=None, labels=None, box=None, mask=labels == i)
        new_ids.append(obj_id)
    before = set(session.obj_ids)
    try:
        editor.apply(PromptSet(prompts))
    except BaseException:  # noqa: BLE001 - also Ctrl-C: no half-added object stays in the session
        for obj in set(session.obj_ids) - before - set(editor.prompts.obj_ids):
            session.remove_object(obj)
            editor.coverage.pop(obj, None)
        raise
    return new_ids


def everything_steps(
    editor: Editor,
    generator: MaskGenerator,
    *,
    frame: int | None = None,
    every: int = 5,
    direction: str = "both",
    min_area: int = 16,
    min_new_area: int = 64,
    max_overlap: float = 0.2,
    foreground: Callable[[np.ndarray], np.ndarray] | None = otsu_foreground,
    first_id: int | None = None,
) -> Generator[Progress, None, EverythingResult]:
    """Segment everything on ``frame`` and carry every object through the stack, adding new ones.

    See the module docstring for the run order and the foreground rule. Yields a
    :class:`~napari_sam2.progress.Progress` for each frame written: ``done`` counts distinct
    frames written of ``total`` (the frames the direction covers), ``payload`` is a
    :class:`FoundFrame` (write ``payload.labels``); a frame back-filled after a check comes
    again with its newer labels (keep the last).

    Closing the generator (cancel) stops after the current frame: the editor keeps every object
    found so far with its prompts and tracked frames, consistent with its session, so it can be
    corrected with clicks and propagated on (:meth:`Editor.plan`).

    Parameters
    ----------
    editor : Editor
        The edit path over a :class:`~napari_sam2.engine.session.VideoSession`; objects it
        already has are kept and tracked too (new ids start above theirs).
    generator : MaskGenerator
        The automatic step.
    frame : int, optional
        The frame to search first; default the middle frame ``n // 2``.
    every : int, default 5
        Check for new objects every this many frames (>= 1).
    direction : {"both", "forward", "backward"}, default "both"
        Which way from ``frame`` to go.
    min_area : int, default 16
        Smallest object kept on the first frame, in pixels.
    min_new_area : int, default 64
        Uncovered foreground a check needs before it runs the automatic step, and the uncovered
        pixels a new object needs, in pixels.
    max_overlap : float, default 0.2
        A mask found at a check with more than this fraction on tracked objects is one of them.
    foreground : callable or None, default :func:`otsu_foreground`
        ``foreground(image) -> (H, W) bool``; None: judge found masks by overlap alone.
    first_id : int, optional
        The lowest id a new object may take (the plugin passes the first id free in its
        result layer too, so a found object never takes a committed label's id); new ids are
        also above every id in the session.

    Returns
    -------
    EverythingResult
        As the generator's value.
    """
    session = editor.session
    n = session.num_frames
    check_direction(direction)
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise InputError(f"every must be an integer >= 1 (check for new objects every k frames), got {every!r}")
    if isinstance(min_new_area, bool) or not isinstance(min_new_area, (int, np.integer)) or min_new_area < 1:
        raise InputError(f"min_new_area must be an integer >= 1, got {min_new_area!r}")
    if not 0.0 <= float(max_overlap) <= 1.0:
        raise InputError(f"max_overlap must be in [0, 1], got {max_overlap!r}")
    start = n // 2 if frame is None else frame
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start < n:
        raise InputError(f"frame must be one of the stack's frames 0..{n - 1}, got {frame!r}")
    start = int(start)
    result = EverythingResult(frame=start, n_frames=n)
    total = n if direction == "both" else (n - start if direction == "forward" else start + 1)
    written: set[int] = set()

    def emit(res: FrameResult) -> Progress:
        written.add(res.frame)
        result.frame_visits += 1
        labels = res.label_image()
        result.objects_per_frame[res.frame] = int(np.count_nonzero(np.unique(labels)))
        return Progress(len(written), total, payload=FoundFrame(res.frame, labels, res))

    def search(t: int, first: bool) -> list[int]:
        image = session.source.frame(t)
        fg = None if foreground is None else np.asarray(foreground(image), dtype=bool)
        if fg is not None and fg.shape != session.hw:
            raise InputError(f"foreground gave shape {fg.shape} for a frame of {session.hw}")
        tracked = session.label_image(t) > 0 if session.obj_ids else np.zeros(session.hw, dtype=bool)
        uncovered = None if fg is None else fg & ~tracked
        if not first and uncovered is not None and int(uncovered.sum()) < min_new_area:
            return []
        records = find_objects(generator, image)
        result.generator_runs += 1
        keep = []
        for r in records:
            area = max(int(r.mask.sum()), 1)
            if not first and (r.mask & tracked).sum() > max_overlap * area:
                continue
            if uncovered is not None:
                free = int((r.mask & uncovered).sum())
                if free < MIN_FOREGROUND_FRACTION * int((r.mask & ~tracked).sum()) or (not first and free < min_new_area):
                    continue  # mostly background (the field around the objects is one of the masks)
            keep.append(r)
        floor = None
        if first_id is not None:  # above every id in use and at least first_id (e.g. a result layer's labels)
            in_use = set(session.obj_ids) | set(editor.prompts.obj_ids)
            floor = max(int(first_id), max(in_use, default=0) + 1)
        ids = add_found(editor, t, keep, min_area=min_area if first else min_new_area, first_id=floor)
        if ids:
            result.added.setdefault(t, []).extend(ids)
        return ids

    def track(first: int, last: int) -> Generator[Progress, None, None]:
        """Track every object from ``first`` to ``last`` (either way), writing each frame."""
        reverse = last < first
        count = abs(last - first) + 1
        if not session.obj_ids:  # nothing to track yet: the frames are empty
            step = -1 if reverse else 1
            for t in range(first, last + step, step):
                yield emit(session.result(t))
            return
        frames = editor.propagate([Run(first, reverse, count)])
        try:
            for res in frames:
                yield emit(res)
        finally:
            frames.close()  # a cancel ends the session's run here, its finished frames kept

    def sweep(step: int) -> Generator[Progress, None, None]:
        end = n - 1 if step > 0 else 0
        pos = start
        while pos != end:
            check = min(pos + every, end) if step > 0 else max(pos - every, end)
            yield from track(pos + step, check)
            result.checked.append(check)
            if search(check, first=False):
                if abs(check - pos) > 1:
                    yield from track(check - step, pos + step)  # back-fill since the last check
                yield emit(session.result(check))
            pos = check

    search(start, first=True)
    yield emit(session.result(start))
    if direction in ("forward", "both"):
        yield from sweep(+1)
    if direction in ("backward", "both"):
        yield from sweep(-1)
    return result

