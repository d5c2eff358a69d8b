"""Segment one stack headless, in this process: the dask-free pipeline under ``segment`` and batch.

One code path writes labels: :func:`segment_steps` (a generator yielding progress) opens the
stack, reads its prompt files, gives the prompts to the engine's
:class:`~napari_sam2.engine.editor.Editor`, propagates as planned by
:meth:`~napari_sam2.engine.editor.Editor.plan`, and writes each frame's labels into an atomic
:class:`~napari_sam2.io.LabelWriter`. ``napari-sam2 segment`` drives it with a progress
bar; :func:`run_stack` is the same thing as a task that never raises (what
:mod:`napari_sam2.batch` sends to dask workers).

Each process loads a model once (:func:`cached_model`) and reuses it for every stack.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.runs import DIRECTIONS, check_direction, frames_visited
from .errors import CheckpointError, InputError, SAM2Error, UnknownModelError, WeightsUnavailableError
from .progress import Progress
from .prompt import PromptSet
from .runtime import PRECISIONS, configure_torch

if TYPE_CHECKING:
    from .model.sam2 import SAM2
    from .prompt import Prompt

__all__ = [
    "COMPUTE_DTYPES",
    "DIRECTIONS",
    "MODEL_ERRORS",
    "ModelSpec",
    "Progress",
    "SegmentJob",
    "StackOutcome",
    "StackResult",
    "cached_model",
    "model_loads",
    "run_stack",
    "segment_stack",
    "segment_steps",
    "stack_kind",
]

COMPUTE_DTYPES = PRECISIONS  # auto, float32, bfloat16
#: errors that are about the model, not the stack: every other stack would fail the same way
MODEL_ERRORS = (CheckpointError, WeightsUnavailableError, UnknownModelError)


# --------------------------------------------------------------------------- what to run


@dataclass(frozen=True)
class ModelSpec:
    """Which weights to load, as plain strings so the spec travels to dask workers.

    Attributes
    ----------
    source : str
        A checkpoint file (use an absolute path for workers) or an official model name.
    config : str or None
        A ``SAM2Config`` JSON file for checkpoints that are not an official variant.
    device : str
        ``cpu``, ``cuda``, ``mps`` or ``auto``.
    """

    source: str
    config: str | None = None
    device: str = "cpu"


@dataclass(frozen=True)
class SegmentJob:
    """One stack to segment: its input, prompt files, output and settings.

    Attributes
    ----------
    input : str
        TIFF, zarr / OME-Zarr or ``.npy`` (see :func:`napari_sam2.io.stacks.open_stack`).
    prompts : str
        napari Points (or Shapes) CSV, or napari-sam2 JSON.
    output : str
        The OME-Zarr labels to write (atomically).
    model : ModelSpec
        The weights.
    boxes : str or None
        Optional napari Shapes CSV whose rectangles are box prompts.
    axis : int
        The stack axis of the input.
    direction : str
        ``both`` (forward from the first prompted frame, then backward from it),
        ``forward`` (from the first prompted frame to the end) or ``backward`` (from the
        last prompted frame to frame 0). Frames not reached stay 0.
    compute_dtype : str
        ``auto`` (bfloat16 where the hardware computes it natively, else float32; see
        :func:`napari_sam2.runtime.choose_precision`), ``float32`` (the official numbers)
        or ``bfloat16``. Resolved where the job runs: a batch worker on another machine
        picks for its own CPU.
    stack_kind : str or None
        ``"t"`` (time-lapse) or ``"z"`` (z-stack): tracks with the model's presence bias
        calibrated for that kind (``VideoSession``; only trained models such as
        napari-sam2-cells carry one). None takes the stack axis's OME-Zarr name if the input
        has one, else tracks uncalibrated.
    overwrite : bool
        Replace an existing output.
    torch_threads : int or None
        Threads torch may use in the process running the job (None: leave as it is).
    """

    input: str
    prompts: str
    output: str
    model: ModelSpec
    boxes: str | None = None
    axis: int = 0
    direction: str = "both"
    compute_dtype: str = "auto"
    stack_kind: str | None = None
    overwrite: bool = False
    torch_threads: int | None = None


@dataclass(frozen=True)
class StackResult:
    """What one stack gave: where it went, how big, how long, and which process did it."""

    input: str
    output: str
    frames: int  # frames in the stack
    frames_reached: int  # frames propagation reached; the others are 0 in the output
    objects: int
    seconds: float
    model: str
    precision: str = "float32"  # what the stack was computed in (the job's "auto" resolved)
    precision_reason: str = ""
    pid: int = field(default_factory=os.getpid)
    model_loads: int = 0  # models this process had loaded when the stack finished


@dataclass(frozen=True)
class StackOutcome:
    """The result of one stack in a batch: done, skipped, or failed with a one-line reason."""

    input: str
    output: str
    status: str  # "done", "skipped" or "failed"
    result: StackResult | None = None
    error: str | None = None
    error_type: str | None = None  # the exception's class name
    model_error: bool = False  # the failure is the model's: the other stacks would fail too
    traceback: str | None = None


# --------------------------------------------------------------------------- the model, once per process

_MODELS: dict[tuple[str, str | None, str], Any] = {}
_MODELS_LOCK = threading.Lock()
_LOADS = 0


def cached_model(spec: ModelSpec) -> SAM2:
    """The model for ``spec``, loaded on first use in this process and then reused.

    A dask worker keeps its models here across tasks, so a batch loads the weights once per
    worker, not once per stack.
    """
    global _LOADS
    key = (spec.source, spec.config, spec.device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from .weights import load_model

            _MODELS[key] = load_model(spec.source, spec.device, config=spec.config)
            _LOADS += 1
        return _MODELS[key]


def model_loads() -> int:
    """How many models this process has loaded through :func:`cached_model`."""
    return _LOADS


# --------------------------------------------------------------------------- one stack


def read_job_prompts(job: SegmentJob, shape: tuple[int, ...], axis: int | None) -> list[Prompt]:
    """The job's prompts (and boxes), checked against the stack's napari-order ``shape``."""
    from .io.prompts import merge_prompts, read_prompts, read_shapes_csv

    prompts = read_prompts(job.prompts, axis=axis, shape=shape)
    if job.boxes is not None:
        prompts = merge_prompts(prompts, read_shapes_csv(job.boxes, axis=axis or 0, shape=shape))
    if not prompts:
        raise InputError(f"{job.prompts}: no prompts in the file")
    return prompts


def stack_kind(job: SegmentJob, stack: Any) -> str | None:
    """What the stack axis is (``"t"``, ``"z"``, or None: not known), most explicit first.

    ``--stack-kind`` (``job.stack_kind``), else the prompt file's ``stack_kind``, else the
    input's own axis name (OME-Zarr axes, ImageJ or OME-TIFF metadata). A prompt file that
    says otherwise than ``--stack-kind`` is an error: one of them is wrong.
    """
    from .io.prompts import read_stack_kind

    said = read_stack_kind(job.prompts)
    if job.stack_kind is not None and said is not None and said != job.stack_kind:
        raise InputError(
            f"{job.prompts} says the stack is a {_KIND_NAMES[said]} (stack_kind {said!r}) but --stack-kind is "
            f"{job.stack_kind!r}; drop one of them"
        )
    return job.stack_kind or said or stack.axis_name


_KIND_NAMES = {"t": "time-lapse", "z": "z-stack"}


def segment_steps(
    job: SegmentJob, model: SAM2 | None = None, *, configure: bool = False
) -> Generator[Progress, None, StackResult]:
    """Segment one stack, yielding :class:`Progress` after each frame written.

    The labels are written to ``job.output`` atomically: nothing appears there unless every
    frame was written, and an error or an early ``close()`` of the generator leaves no
    partial store. Returns (as the generator's value) a :class:`StackResult`.

    ``model`` defaults to :func:`cached_model` of ``job.model``. ``configure=True`` calls
    :func:`configure_torch` with ``job.torch_threads`` once the input and prompts have been
    read (so bad files fail before torch is even imported).
    """
    from .io.labels import LabelWriter, check_output_spares, check_replaceable, label_dtype, recover
    from .io.prompts import prompts_to_dict
    from .io.stacks import open_stack

    start_time = time.perf_counter()
    check_direction(job.direction)
    output = Path(job.output)
    # never an input of this run, and --overwrite only over labels we wrote: checked before any work
    check_output_spares(output, [job.input, job.prompts, job.boxes, *_job_files(job.model)])
    recover(output)
    check_replaceable(output, job.overwrite)
    with open_stack(job.input, axis=job.axis) as stack:
        is_stack = len(stack.shape) == 3
        prompts = read_job_prompts(job, stack.shape, stack.axis if is_stack else None)
        from .engine.editor import Editor
        from .engine.session import VideoSession

        if configure:
            configure_torch(job.torch_threads)
        if model is None:
            model = cached_model(job.model)
        obj_ids = sorted({p.obj_id for p in prompts})
        kind = stack_kind(job, stack) if is_stack else None  # VideoSession checks it
        label_axes = f"{kind}yx" if kind is not None else stack.label_axes
        metadata = {
            "model": model.config.name,
            "checkpoint": job.model.source,
            "input": str(job.input),
            "axis": stack.axis,
            "direction": job.direction,
            "stack_kind": kind,
            "prompts": prompts_to_dict(prompts, axis=stack.axis, stack_kind=kind),
        }
        n_frames = stack.label_shape[0] if is_stack else 1
        session = VideoSession(
            model, stack.frames, compute_dtype=job.compute_dtype, corrections_as_conditioning=True,
            stack_kind=kind,
        )  # fmt: skip
        metadata["presence_bias"] = session.presence_bias
        metadata["compute_dtype"] = session.precision.dtype
        metadata["precision_reason"] = session.precision.reason
        import torch

        metadata["torch_threads"] = torch.get_num_threads()  # boundary pixels can differ between counts
        # an error, Ctrl-C or close() inside aborts the writer: no partial store stays
        with session, LabelWriter(
            output, stack.label_shape, dtype=label_dtype(max(obj_ids)), axes=label_axes,
            scale=stack.label_scale, units=stack.label_units, metadata=metadata, overwrite=job.overwrite,
        ) as writer:  # fmt: skip
            editor = Editor(session)
            editor.apply(PromptSet.of(prompts))
            runs = editor.plan(job.direction)
            total = frames_visited(runs)
            reached: set[int] = set()
            yield Progress(0, total)
            for done, result in enumerate(editor.propagate(runs), 1):
                writer.write_frame(result.frame, result.label_image(writer.dtype))
                reached.add(result.frame)
                yield Progress(done, total)
    return StackResult(
        input=str(job.input),
        output=str(output),
        frames=n_frames,
        frames_reached=len(reached),
        objects=len(obj_ids),
        seconds=time.perf_counter() - start_time,
        model=model.config.name,
        precision=session.precision.dtype,
        precision_reason=session.precision.reason,
        model_loads=model_loads(),
    )


def _job_files(spec: ModelSpec) -> list[str]:
    """The model's files of a job (a checkpoint path, a config), which no output may replace."""
    return [f for f in (spec.source, spec.config) if f is not None and os.path.exists(f)]


def segment_stack(job: SegmentJob, model: SAM2 | None = None, *, configure: bool = False) -> StackResult:
    """Run :func:`segment_steps` to the end and return its result."""
    steps = segment_steps(job, model, configure=configure)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def run_stack(job: SegmentJob) -> StackOutcome:
    """The dask task: segment one stack and report how it went instead of raising.

    Errors that belong to the stack or the model (:class:`~napari_sam2.errors.SAM2Error`,
    a file that cannot be read) become a failed outcome with a one-line reason; anything
    else is a bug and raises, so the batch shows it.
    """
    try:
        result = segment_stack(job, configure=True)
    except (SAM2Error, OSError) as exc:
        import traceback

        return StackOutcome(
            job.input, job.output, "failed", error=str(exc) or type(exc).__name__, error_type=type(exc).__name__,
            model_error=isinstance(exc, MODEL_ERRORS), traceback=traceback.format_exc(),
        )  # fmt: skip
    return StackOutcome(job.input, job.output, "done", result=result)


