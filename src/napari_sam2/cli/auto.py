"""``napari-sam2 auto``: segment everything in one stack (or 2-D image) into OME-Zarr labels.

Builds a :class:`napari_sam2.auto_pipeline.AutoJob` from the options and drives
:func:`napari_sam2.auto_pipeline.auto_steps` with a progress bar (on a terminal), as
``segment`` drives its pipeline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import DEFAULT_HELP, PROG, _model_name, _positive_int


def auto_settings(*, stack_options: bool = True) -> argparse.ArgumentParser:
    """The automatic step's options, shared by ``auto`` and ``batch --auto`` (whose own options
    already have ``--direction``, ``--stack-kind`` and ``--axis``: ``stack_options=False``)."""
    from ..auto_pipeline import MODES
    from ..pipeline import DIRECTIONS

    auto = argparse.ArgumentParser(add_help=False)
    auto.add_argument("--mode", choices=MODES, default="grid",
                      help="grid: a grid of single clicks (SAM 2's automatic generator); seeded: seeds "
                      "from the image (default: grid)")  # fmt: skip
    auto.add_argument("--frame", type=int, metavar="N", help="the frame to search first (default: the middle one)")
    auto.add_argument("--every", type=int, default=5, metavar="K",
                      help="look for objects that appear later every K frames (default: 5)")  # fmt: skip
    if stack_options:
        auto.add_argument(
            "--direction", choices=DIRECTIONS, default="both",
            help="both: forward from the first frame searched, then backward; forward / backward: one way only "
            "(default: both)",
        )  # fmt: skip
        auto.add_argument(
            "--stack-kind", choices=("t", "z"), default=None,
            help="t: a time-lapse, z: a z-stack (a trained model tracks with its presence calibration for that "
            "kind). Default: the input's own axis name, else uncalibrated",
        )  # fmt: skip
        auto.add_argument("--axis", type=int, default=0, help="the stack (z or time) axis of the input (default: 0)")
    auto.add_argument("--points-per-side", type=int, default=32, metavar="N",
                      help="grid mode: N x N clicks per image (default: 32)")  # fmt: skip
    auto.add_argument("--pred-iou-thresh", type=float, default=0.8, metavar="X",
                      help="keep masks whose predicted IoU is above X, in [0, 1] (default: 0.8)")  # fmt: skip
    auto.add_argument("--stability-score-thresh", type=float, default=0.95, metavar="X",
                      help="keep masks whose stability score is at least X, in [0, 1] (default: 0.95)")  # fmt: skip
    auto.add_argument("--min-area", type=int, default=16, metavar="PIXELS",
                      help="smallest object kept on the first frame (default: 16)")  # fmt: skip
    auto.add_argument("--min-new-area", type=int, default=64, metavar="PIXELS",
                      help="uncovered foreground a later object needs (default: 64)")  # fmt: skip
    auto.add_argument("--tile", type=int, metavar="N", help="run the automatic step in N x N tiles (large images)")
    auto.add_argument("--halo", type=int, metavar="N", help="overlap of neighbouring tiles, pixels")
    return auto


def _add_auto(commands: Any) -> None:
    from ..pipeline import COMPUTE_DTYPES
    from ..runtime import default_threads

    auto = commands.add_parser(
        "auto", help="segment everything in a stack: find objects on one frame, track them, add new ones",
        description="Find every object on one frame with SAM 2's automatic step (a grid of clicks, or "
        "seeds), track them through the stack, look for objects that appear later every K frames, and "
        "write one instance label stack (OME-Zarr) of the input's shape. A 2-D image gives (Y, X) labels.",
        parents=[auto_settings()],
    )  # fmt: skip
    auto.add_argument("input", type=Path, help="TIFF, zarr / OME-Zarr or .npy stack (or 2-D image)")
    auto.add_argument("-o", "--output", type=Path, required=True, help="output OME-Zarr labels, e.g. labels.zarr")
    weights = auto.add_mutually_exclusive_group()
    weights.add_argument("--model", help=f"model name (default: {DEFAULT_HELP})")
    weights.add_argument("--checkpoint", type=Path, help="a local checkpoint file instead of --model")
    auto.add_argument("--config", type=Path, help="SAM2Config JSON for a checkpoint that is no official variant")
    auto.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: cpu)")
    auto.add_argument(
        "--compute-dtype", choices=COMPUTE_DTYPES, default="auto",
        help="auto: bfloat16 where the hardware computes it, float32 elsewhere; float32: the official "
        "numbers; bfloat16: faster where native (default: auto; the summary line says what was chosen)",
    )  # fmt: skip
    auto.add_argument("--torch-threads", type=_positive_int, metavar="N",
                      help=f"torch threads (default: all cores but one, here {default_threads()})")  # fmt: skip
    auto.add_argument("--overwrite", action="store_true", help="replace an existing output")
    auto.add_argument("--debug", action="store_true", help="show the Python traceback of an error")


def auto_job(args: argparse.Namespace, **fields: Any) -> Any:
    """The :class:`~napari_sam2.auto_pipeline.AutoJob` the options describe (``fields`` override)."""
    from ..auto_pipeline import AutoJob
    from ..pipeline import ModelSpec

    source = str(args.checkpoint.absolute()) if args.checkpoint is not None else _model_name(args)
    config = str(args.config.absolute()) if args.config is not None else None
    values: dict[str, Any] = dict(
        input=str(getattr(args, "input", "")), output=str(args.output),
        model=ModelSpec(source=source, config=config, device=args.device),
        mode=args.mode, frame=args.frame, every=args.every, axis=args.axis, direction=args.direction,
        stack_kind=args.stack_kind, points_per_side=args.points_per_side, pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh, min_area=args.min_area,
        min_new_area=args.min_new_area, tile=args.tile, halo=args.halo, compute_dtype=args.compute_dtype,
        overwrite=args.overwrite, torch_threads=args.torch_threads,
    )  # fmt: skip
    values.update(fields)
    return AutoJob(**values)


def _auto(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..auto_pipeline import auto_steps, check_job
    from ..runtime import default_threads
    from .segment import _warn_if_slow

    job = auto_job(args)
    check_job(job)  # bad settings fail before the model loads
    if job.torch_threads is None:
        job = auto_job(args, torch_threads=default_threads())
    _warn_if_slow(args)
    steps = auto_steps(job, configure=True)
    bar = None
    try:
        while True:
            try:
                progress = next(steps)
            except StopIteration as stop:
                result = stop.value
                break
            if bar is None:
                bar = tqdm(total=progress.total, unit="frame", desc=args.input.name, file=sys.stderr,
                           disable=not sys.stderr.isatty(), leave=False)  # fmt: skip
            bar.update(progress.done - bar.n)
    finally:
        steps.close()  # on an error or Ctrl-C: the writer removes its partial store
        if bar is not None:
            bar.close()
    print(
        f"{PROG}: wrote {result.output}: {result.summary}; {result.frames} frame{'s' * (result.frames != 1)}, "
        f"{result.seconds:.1f} s, {result.precision} ({result.precision_reason})"
    )
    return 0
