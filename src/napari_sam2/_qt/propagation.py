"""Propagation as a job: which runs a direction means, and the generator the worker drives."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from .tasks import Progress

DIRECTIONS = ("forward", "backward", "both")


def propagation_runs(prompt_frames: list[int], n_frames: int, direction: str) -> list[tuple[int, bool, int]]:
    """(start, reverse, number of frames) of each ``VideoSession.propagate`` run.

    forward: from the first prompted slice to the end; backward: from the last prompted slice
    to 0; both: forward from the first prompted slice, then backward from it.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    first, last = min(prompt_frames), max(prompt_frames)
    runs = []
    if direction in ("forward", "both"):
        runs.append((first, False, n_frames - first))
    if direction in ("backward", "both"):
        start = first if direction == "both" else last
        runs.append((start, True, start + 1))
    return runs


def propagation_job(session: Any, runs: list[tuple[int, bool, int]]) -> Generator[Progress, None, int]:
    """Yield ``Progress(done, total, (frame, label image))`` per tracked frame; return the count.

    The label image is made here, in the worker, so the UI thread only copies it.
    """
    total = sum(n for *_, n in runs)
    done = 0
    for start, reverse, _ in runs:
        for result in session.propagate(start=start, reverse=reverse):
            done += 1
            yield Progress(done, total, (result.frame, result.label_image()))
    return done
