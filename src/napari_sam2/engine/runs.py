"""The one run planner: which propagation runs a direction means, and running them.

Every driver (the napari widget, ``segment``, dask batch, evaluation) plans its runs here:
:func:`plan_runs` for tracking from the prompted frames, :func:`correction_runs` for carrying
corrections outward (``VideoSession.correction_runs`` asks it with the session's tracks), and
:func:`run_all` to execute either.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Literal, NamedTuple

from ..errors import InputError

if TYPE_CHECKING:
    from .results import FrameResult
    from .session import VideoSession

Direction = Literal["both", "forward", "backward"]
#: the directions, the default ("both") first
DIRECTIONS: tuple[Direction, ...] = ("both", "forward", "backward")


class Run(NamedTuple):
    """One ``VideoSession.propagate`` run: from ``start``, backward if ``reverse``, visiting ``frames`` frames."""

    start: int
    reverse: bool
    frames: int


def check_direction(direction: str) -> Direction:
    """``direction`` if it is one of :data:`DIRECTIONS`, else an :class:`InputError` naming them."""
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    return direction  # type: ignore[return-value]


def plan_runs(prompt_frames: Iterable[int], n_frames: int, direction: str) -> list[Run]:
    """The runs that track every object from its prompts through a stack of ``n_frames``.

    Parameters
    ----------
    prompt_frames : iterable of int
        The frames with a prompt (any object).
    n_frames : int
        Frames in the stack.
    direction : {"both", "forward", "backward"}
        ``forward``: from the first prompted frame to the end; ``backward``: from the last
        prompted frame to frame 0; ``both``: forward from the first prompted frame, then
        backward from it, so that prompts on a middle slice label the whole stack.

    Returns
    -------
    list of Run
        In the order to run them; ``both`` from frame 0 is one forward run.
    """
    check_direction(direction)
    frames = sorted(set(prompt_frames))
    if not frames:
        raise InputError("no prompts yet: add a prompt before propagating")
    first, last = frames[0], frames[-1]
    runs = []
    if direction in ("forward", "both"):
        runs.append(Run(first, False, n_frames - first))
    if direction == "backward":
        runs.append(Run(last, True, last + 1))
    elif direction == "both" and first > 0:
        runs.append(Run(first, True, first + 1))
    return runs


def correction_runs(
    prompted: Mapping[int, set[int]], corrections: set[int], n_frames: int, direction: str
) -> list[Run]:
    """The runs that carry pending corrections through the stack.

    Each re-steers its object's track from the corrected frame *outward*, away from that
    object's first prompt (forward when the correction lies after it, backward when before;
    both ways for a correction on the first prompted frame): one forward run from the
    earliest such frame, one backward run from the latest. The frames between the first
    prompt and a correction keep their masks (tracking them again with the correction in
    memory made them worse: docs/model.md).

    Parameters
    ----------
    prompted : mapping of int to set of int
        Per object, the frames it has a prompt on.
    corrections : set of int
        The frames with a correction no propagation has passed since.
    n_frames : int
        Frames in the stack.
    direction : {"both", "forward", "backward"}
        Keeps only the runs of that direction.

    Returns
    -------
    list of Run
        [] when nothing is pending.
    """
    check_direction(direction)
    ahead, behind = [], []
    for w in corrections:
        for frames in prompted.values():
            if w not in frames:
                continue
            first = min((frames - corrections) or {w})
            if w >= first:
                ahead.append(w)
            if w <= first:
                behind.append(w)
    runs = []
    if ahead and direction in ("forward", "both"):
        runs.append(Run(min(ahead), False, n_frames - min(ahead)))
    if behind and direction in ("backward", "both"):
        runs.append(Run(max(behind), True, max(behind) + 1))
    return runs


def frames_visited(runs: Iterable[Run]) -> int:
    """How many frame results the runs yield (a frame two runs share counts twice)."""
    return sum(run.frames for run in runs)


def run_all(session: VideoSession, runs: Iterable[Run]) -> Iterator[FrameResult]:
    """Execute ``runs`` on ``session``, yielding each frame's result as it is tracked.

    A frame yielded twice (the start of ``both``'s backward run) is the same frame after more
    tracking: keep the later one. A backward run from frame 0 yields that frame alone (the
    session, like the official predictor, has nothing to track backward from it).
    """
    for run in runs:
        if run.reverse and run.start == 0:
            yield from session.propagate(start=0, max_frames=0)
        else:
            yield from session.propagate(start=run.start, reverse=run.reverse, max_frames=run.frames - 1)
