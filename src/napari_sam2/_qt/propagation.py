"""Propagation as a job: the generator the worker drives, over the engine's editor."""

from __future__ import annotations

from collections.abc import Generator

from ..engine.editor import Editor
from ..engine.runs import Run, frames_visited
from .tasks import Progress


def propagation_job(editor: Editor, runs: list[Run]) -> Generator[Progress, None, int]:
    """Yield ``Progress(done, total, (frame, label image))`` per tracked frame; return the count.

    The label image is made here, in the worker, so the UI thread only copies it.
    """
    total = frames_visited(runs)
    done = 0
    for result in editor.propagate(runs):
        done += 1
        yield Progress(done, total, (result.frame, result.label_image()))
    return done
