"""The widget's long jobs as generators a worker drives: opening a session, encoding slices,
propagating. Each yields :class:`~napari_sam2.progress.Progress`; none touches a layer."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..engine.editor import Editor
from ..engine.runs import Run, frames_visited
from .model_picker import ModelChoice, load_job
from .stack import StackSpec
from .tasks import Progress


def open_job(choice: ModelChoice, spec: StackSpec, model: Any, old: Any) -> Generator[Progress, None, tuple[Any, Any]]:
    """Load the model (unless ``model`` is given) and open a session on ``spec``'s image, or reset
    ``old`` (a restart on the same image with the same model and precision keeps its encoded slices)."""
    from ..engine.session import VideoSession

    if model is None:
        model = yield from load_job(choice)
    yield Progress(1, 2)
    if old is not None:
        old.reset()
        session = old
    else:  # reads a few frames for the intensity window
        # the kind of stack picks the model's calibrated presence bias (0 for official weights)
        kind = spec.axis_kind if spec.video_axis is not None else None
        session = VideoSession(
            model, spec.frames(), corrections_as_conditioning=True, stack_kind=kind, compute_dtype=choice.precision
        )
    yield Progress(2, 2)
    return model, session


def encode_job(session: Any, frames: list[int]) -> Generator[Progress, None, None]:
    """Encode ``frames`` into the session's feature cache, one step per slice."""
    for i, frame in enumerate(frames):
        session.features.get(frame)
        yield Progress(i + 1, len(frames))


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
