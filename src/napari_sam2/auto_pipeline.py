"""Segment everything in one stack headless: the dask-free pipeline under ``napari-sam2 auto``.

:func:`auto_steps` (a generator yielding progress, like :func:`napari_sam2.pipeline.segment_steps`)
opens the stack, makes the automatic step (the grid :class:`~napari_sam2.engine.automatic.AutomaticMaskGenerator`,
or the seeded generator of ``engine.seeded``), runs :func:`~napari_sam2.engine.everything.everything_steps`
on an :class:`~napari_sam2.engine.editor.Editor` over a
:class:`~napari_sam2.engine.session.VideoSession`, and writes each frame's labels into an atomic
:class:`~napari_sam2.io.LabelWriter` as it comes (memory flat in the number of frames). A 2-D
image is segmented on its own and written as (Y, X) labels.

Mask prompts are too big for the labels' metadata, so it records per object the frame it was
found on and its box there (``found``), with the settings, the model and the precision.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .engine.runs import check_direction
from .errors import InputError
from .errors import SAM2Error
from .pipeline import MODEL_ERRORS, ModelSpec, StackOutcome, _job_files, cached_model, model_loads
from .progress import Progress
from .runtime import configure_torch

if TYPE_CHECKING:
    from .engine.editor import Editor
    from .model.sam2 import SAM2

__all__ = ["MODES", "AutoJob", "AutoResult", "auto_stack", "auto_steps", "make_generator", "run_auto_stack"]

#: the automatic steps: a grid of clicks, or seeds (``engine.seeded``)
MODES = ("grid", "seeded")
#: labels are written as uint16: more objects than this is refused (at the check that finds them)
_MAX_OBJECTS = int(np.iinfo(np.uint16).max)


@dataclass(frozen=True)
class AutoJob:
    """One stack to segment everything in: its input, output and settings.

    Attributes
    ----------
    input, output : str
        The stack (TIFF, zarr / OME-Zarr, ``.npy``, or a 2-D image) and the OME-Zarr labels to
        write (atomically).
    model : ModelSpec
        The weights.
    mode : {"grid", "seeded"}
        The automatic step: a ``points_per_side`` grid of clicks, or ``engine.seeded``.
    frame : int or None
        The frame searched first (None: the middle one).
    every : int
        Check for objects that appear later every this many frames.
    axis, direction, stack_kind, compute_dtype, overwrite, torch_threads
        As :class:`napari_sam2.pipeline.SegmentJob`.
    points_per_side, pred_iou_thresh, stability_score_thresh : int, float, float
        The grid generator's settings (``AutomaticMaskGenerator``).
    min_area, min_new_area : int
        Smallest object kept on the first frame, and uncovered foreground (pixels) a later
        check needs to add an object (``everything_steps``).
    tile, halo : int or None
        Tiled automatic step (``engine.tiles``) for large images: tile size and overlap.
    """

    input: str
    output: str
    model: ModelSpec
    mode: str = "grid"
    frame: int | None = None
    every: int = 5
    axis: int = 0
    direction: str = "both"
    stack_kind: str | None = None
    points_per_side: int = 32
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    min_area: int = 16
    min_new_area: int = 64
    tile: int | None = None
    halo: int | None = None
    compute_dtype: str = "auto"
    overwrite: bool = False
    torch_threads: int | None = None


@dataclass(frozen=True)
class AutoResult:
    """What one stack gave (the fields ``batch`` prints, as :class:`~napari_sam2.pipeline.StackResult`)."""

    input: str
    output: str
    frames: int
    frames_reached: int
    objects: int
    seconds: float
    model: str
    precision: str = "float32"
    precision_reason: str = ""
    summary: str = ""  # EverythingResult.summary(): says so when no objects were found
    new_objects: dict[int, list[int]] = field(default_factory=dict)
    pid: int = 0
    model_loads: int = 0


def check_job(job: AutoJob) -> None:
    """The settings' errors as one-line :class:`InputError` s, before any file is read."""
    if job.mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {job.mode!r}")
    check_direction(job.direction)
    _int_at_least("points_per_side", job.points_per_side, 1)
    _int_at_least("every", job.every, 1)
    _int_at_least("min_area", job.min_area, 1)
    _int_at_least("min_new_area", job.min_new_area, 1)
    for name in ("pred_iou_thresh", "stability_score_thresh"):
        value = getattr(job, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise InputError(f"{name} must be in [0, 1], got {value!r}")
    if job.frame is not None:
        _int_at_least("frame", job.frame, 0)
    for name in ("tile", "halo"):
        if getattr(job, name) is not None:
            _int_at_least(name, getattr(job, name), 0 if name == "halo" else 1)


def _int_at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")


def make_generator(job: AutoJob, model: SAM2) -> Any:
    """The automatic step the job asks for (``generate(image) -> list[MaskRecord]``).

    ``mode="seeded"`` and ``tile`` / ``halo`` use modules of their own (``engine.seeded``,
    ``engine.tiles``); without them this installation says so in one line.
    """
    if job.mode == "seeded":
        try:
            from .engine.seeded import SeededMaskGenerator  # type: ignore[import-not-found]
        except ModuleNotFoundError as exc:
            if exc.name != "napari_sam2.engine.seeded":
                raise
            raise InputError("--mode seeded is not available in this version of napari-sam2 "
                             "(napari_sam2.engine.seeded is missing); use --mode grid") from None  # fmt: skip
        generator: Any = SeededMaskGenerator(model)
    else:
        from .engine.automatic import AutomaticMaskGenerator

        generator = AutomaticMaskGenerator(
            model, points_per_side=job.points_per_side, pred_iou_thresh=job.pred_iou_thresh,
            stability_score_thresh=job.stability_score_thresh,
        )  # fmt: skip
    if job.tile is not None or job.halo is not None:
        generator = _tiled(generator, job)
    return generator


def _tiled(generator: Any, job: AutoJob) -> Any:
    import importlib

    try:
        importlib.import_module("napari_sam2.engine.tiles")
    except ModuleNotFoundError as exc:
        if exc.name != "napari_sam2.engine.tiles":
            raise
        raise InputError("--tile/--halo are not available in this version of napari-sam2 "
                         "(napari_sam2.engine.tiles is missing); leave them out") from None  # fmt: skip
    if job.tile is None or job.halo is None:
        raise InputError("--tile and --halo go together: give both (e.g. --tile 1024 --halo 64)")
    return TiledGenerator(generator, tile=job.tile, halo=job.halo)


class TiledGenerator:
    """The automatic step tile by tile (``engine.tiles.segment_tiled``), as a generator of records.

    ``segment_tiled`` stitches objects cut by tile borders into one label image; each of its
    objects becomes one :class:`~napari_sam2.engine.automatic.MaskRecord` (predicted IoU and
    stability 1.0: the tiles' own scores are not kept by the stitch).
    """

    def __init__(self, generator: Any, *, tile: int, halo: int) -> None:
        self.generator, self.tile, self.halo = generator, tile, halo

    def generate(self, image: Any) -> list[Any]:
        from .engine.automatic import MaskRecord
        from .engine.tiles import segment_tiled

        result = segment_tiled(self.generator, image, tile=self.tile, halo=self.halo)
        labels = np.asarray(result.labels)
        h, w = labels.shape
        records = []
        for i, (y0, x0, y1, x1) in enumerate(result.bbox.tolist(), 1):
            mask = labels == i
            if not mask.any():
                continue
            records.append(MaskRecord(
                mask=mask, area=int(mask.sum()), bbox=(x0, y0, x1 - 1 - x0, y1 - 1 - y0), predicted_iou=1.0,
                stability_score=1.0, point_coords=np.array([[(x0 + x1 - 1) / 2, (y0 + y1 - 1) / 2]]),
                crop_box=(0, 0, w, h),
            ))  # fmt: skip
        return records


def _check_modules(job: AutoJob) -> None:
    """Fail before any work when the job needs a module this installation lacks."""
    import importlib.util

    if job.mode == "seeded" and importlib.util.find_spec("napari_sam2.engine.seeded") is None:
        raise InputError("--mode seeded is not available in this version of napari-sam2 "
                         "(napari_sam2.engine.seeded is missing); use --mode grid")  # fmt: skip
    if (job.tile is not None or job.halo is not None) and importlib.util.find_spec("napari_sam2.engine.tiles") is None:
        raise InputError("--tile/--halo are not available in this version of napari-sam2 "
                         "(napari_sam2.engine.tiles is missing); leave them out")  # fmt: skip


def found_objects(editor: Editor) -> list[dict[str, Any]]:
    """Per object: the frame its mask prompt is on and its box there (x0, y0, x1, y1, inclusive)."""
    rows = []
    for (frame, obj), prompt in editor.prompts.items():
        if prompt.mask is None:
            continue
        ys, xs = np.nonzero(prompt.mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())] if len(xs) else None
        rows.append({"obj_id": obj, "frame": frame, "bbox_xyxy": box, "area": int(len(xs))})
    return sorted(rows, key=lambda r: r["obj_id"])


def auto_steps(
    job: AutoJob, model: SAM2 | None = None, *, configure: bool = False
) -> Generator[Progress, None, AutoResult]:
    """Segment everything in one stack, yielding :class:`Progress` after each frame written.

    The labels go to ``job.output`` atomically: nothing appears there unless the whole run
    finished, and an error or an early ``close()`` leaves no partial store. Returns (as the
    generator's value) an :class:`AutoResult`.

    ``model`` defaults to :func:`~napari_sam2.pipeline.cached_model` of ``job.model``.
    ``configure=True`` calls :func:`~napari_sam2.runtime.configure_torch` with
    ``job.torch_threads`` once the input has been opened (bad files fail before torch loads).
    """
    import os

    from .io.labels import LabelWriter, check_output_spares, check_replaceable, recover
    from .io.stacks import open_stack

    start_time = time.perf_counter()
    check_job(job)
    _check_modules(job)
    output = Path(job.output)
    check_output_spares(output, [job.input, *_job_files(job.model)])
    recover(output)
    check_replaceable(output, job.overwrite)
    with open_stack(job.input, axis=job.axis) as stack:
        is_stack = len(stack.shape) == 3
        n_frames = stack.label_shape[0] if is_stack else 1
        if job.frame is not None and job.frame >= n_frames:
            raise InputError(f"--frame {job.frame} is out of range: {job.input} has frames 0..{n_frames - 1}")
        if job.stack_kind not in (None, "t", "z"):
            raise InputError(f"stack_kind is 't' (time-lapse), 'z' (z-stack) or None, got {job.stack_kind!r}")
        kind = (job.stack_kind or stack.axis_name) if is_stack else None
        label_axes = f"{kind}yx" if kind is not None else stack.label_axes
        from .engine.editor import Editor
        from .engine.everything import everything_steps
        from .engine.session import VideoSession

        if configure:
            configure_torch(job.torch_threads)
        if model is None:
            model = cached_model(job.model)
        generator = make_generator(job, model)
        settings = {
            "mode": job.mode, "first_frame": job.frame if job.frame is not None else n_frames // 2,
            "every": job.every, "direction": job.direction, "points_per_side": job.points_per_side,
            "pred_iou_thresh": job.pred_iou_thresh, "stability_score_thresh": job.stability_score_thresh,
            "min_area": job.min_area, "min_new_area": job.min_new_area, "tile": job.tile, "halo": job.halo,
            "foreground": "otsu",
        }  # fmt: skip
        metadata: dict[str, Any] = {
            "command": "auto",
            "model": model.config.name,
            "checkpoint": job.model.source,
            "input": str(job.input),
            "axis": stack.axis,
            "stack_kind": kind,
            "auto": settings,
        }
        session = VideoSession(  # a 2-D image is a stack of one frame (open_stack)
            model, stack.frames, compute_dtype=job.compute_dtype, corrections_as_conditioning=True, stack_kind=kind
        )
        metadata["presence_bias"] = session.presence_bias
        metadata["compute_dtype"] = session.precision.dtype
        metadata["precision_reason"] = session.precision.reason
        import torch

        metadata["torch_threads"] = torch.get_num_threads()
        with session, LabelWriter(
            output, stack.label_shape, dtype=np.uint16, axes=label_axes, scale=stack.label_scale,
            units=stack.label_units, metadata=metadata, overwrite=job.overwrite,
        ) as writer:  # fmt: skip
            editor = Editor(session)
            steps = everything_steps(
                editor, generator, frame=job.frame, every=job.every, direction=job.direction,
                min_area=job.min_area, min_new_area=job.min_new_area,
            )  # fmt: skip
            try:
                while True:
                    try:
                        progress = next(steps)
                    except StopIteration as stop:
                        found = stop.value
                        break
                    frame = progress.payload
                    if frame.labels.size and int(frame.labels.max()) > _MAX_OBJECTS:
                        raise InputError(f"more than {_MAX_OBJECTS} objects found; labels are written as uint16")
                    writer.write_frame(frame.frame, frame.labels.astype(np.uint16))
                    yield Progress(progress.done, progress.total)
            finally:
                steps.close()
            metadata["found"] = found_objects(editor)
            metadata["objects"] = len(found.objects)
            metadata["summary"] = found.summary()
            metadata["new_objects"] = {str(f): ids for f, ids in sorted(found.new_objects.items())}
            writer.metadata.update(metadata)  # written at commit
    return AutoResult(
        input=str(job.input),
        output=str(output),
        frames=n_frames,
        frames_reached=len(found.objects_per_frame),
        objects=len(found.objects),
        seconds=time.perf_counter() - start_time,
        model=model.config.name,
        precision=session.precision.dtype,
        precision_reason=session.precision.reason,
        summary=found.summary(),
        new_objects=found.new_objects,
        pid=os.getpid(),
        model_loads=model_loads(),
    )


def auto_stack(job: AutoJob, model: SAM2 | None = None, *, configure: bool = False) -> AutoResult:
    """Run :func:`auto_steps` to the end and return its result."""
    steps = auto_steps(job, model, configure=configure)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value



def run_auto_stack(job: AutoJob) -> StackOutcome:
    """The batch task (as :func:`napari_sam2.pipeline.run_stack`): segment everything in one stack
    and report how it went instead of raising.

    Errors of the stack or the model (:class:`~napari_sam2.errors.SAM2Error`, a file that cannot
    be read) become a failed outcome with a one-line reason; anything else is a bug and raises.
    The outcome's ``result`` is an :class:`AutoResult` (the fields ``batch`` prints).
    """
    try:
        result = auto_stack(job, configure=True)
    except (SAM2Error, OSError) as exc:
        import traceback

        return StackOutcome(
            job.input, job.output, "failed", error=str(exc) or type(exc).__name__, error_type=type(exc).__name__,
            model_error=isinstance(exc, MODEL_ERRORS), traceback=traceback.format_exc(),
        )  # fmt: skip
    return StackOutcome(job.input, job.output, "done", result=result)  # type: ignore[arg-type]
