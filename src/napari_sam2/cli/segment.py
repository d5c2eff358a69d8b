"""``napari-sam2 segment`` (prompt files through one stack, into OME-Zarr labels) and
``napari-sam2 batch`` (many stacks, one dask task each, with an optional JSON report).

Both build :class:`napari_sam2.pipeline.SegmentJob` s from the same options and drive the same
one-stack pipeline; ``segment`` runs it here with a progress bar, ``batch`` on dask.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ._common import (
    DEFAULT_HELP,
    EXIT_ERROR,
    EXIT_FAILED_STACKS,
    PROG,
    _error,
    _model_name,
    _positive_int,
    _weights_hint,
)


def _add_segment_and_batch(commands: Any) -> None:
    from ..pipeline import COMPUTE_DTYPES, DIRECTIONS
    from ..runtime import default_threads

    common = argparse.ArgumentParser(add_help=False)
    weights = common.add_mutually_exclusive_group()
    weights.add_argument("--model", help=f"model name (default: {DEFAULT_HELP})")
    weights.add_argument("--checkpoint", type=Path, help="a local checkpoint file instead of --model")
    common.add_argument("--config", type=Path, help="SAM2Config JSON for a checkpoint that is no official variant")
    common.add_argument("--axis", type=int, default=0, help="the stack (z or time) axis of the input (default: 0)")
    common.add_argument(
        "--direction", choices=DIRECTIONS, default="both",
        help="both: forward from the first prompted frame, then backward from it (the whole stack); "
        "forward: from the first prompted frame to the end; backward: from the last prompted frame "
        "to frame 0 (default: both)",
    )  # fmt: skip
    common.add_argument(
        "--stack-kind", choices=("t", "z"), default=None,
        help="t: a time-lapse, z: a z-stack. A trained model (napari-sam2-cells) then tracks with its presence "
        "calibration for that kind. Default, per stack: the prompt file's stack_kind (JSON), else the input's "
        "own axis name (OME-Zarr axes, ImageJ or OME-TIFF metadata), else uncalibrated",
    )  # fmt: skip
    common.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: cpu)")
    common.add_argument(
        "--compute-dtype", choices=COMPUTE_DTYPES, default="auto",
        help="auto: bfloat16 where the hardware computes it (a CPU with AMX-BF16 or AVX512-BF16, a GPU "
        "from Ampere on), float32 elsewhere; float32: the official numbers; bfloat16: faster where native, "
        "slower where emulated (default: auto; the summary line says what was chosen)",
    )  # fmt: skip
    common.add_argument(
        "--torch-threads", type=_positive_int, metavar="N",
        help=f"torch threads (per worker in batch). Default: all cores but one for segment (here: "
        f"{default_threads()}); (cores - 1) / N per worker for batch on local:N; the workers' own for a "
        "scheduler address. A core left free keeps torch fast on a busy machine. Results can differ in a "
        "few boundary pixels between thread counts; the same count gives the same labels.",
    )  # fmt: skip
    common.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    common.add_argument("--debug", action="store_true", help="show the Python traceback of an error")

    seg = commands.add_parser(
        "segment", parents=[common], help="segment objects through one stack from prompt files",
        description="Add every prompt of PROMPTS (and --boxes) to a SAM 2 video session, propagate "
        "through the stack and write OME-Zarr labels of the input's shape.",
    )  # fmt: skip
    seg.add_argument("input", type=Path, help="TIFF, zarr / OME-Zarr or .npy stack (or 2-D image)")
    seg.add_argument("--prompts", type=Path, required=True,
                     help="napari Points CSV (features object, positive) or napari-sam2 JSON")  # fmt: skip
    seg.add_argument("--boxes", type=Path, help="napari Shapes CSV: each rectangle is a box prompt")
    seg.add_argument("-o", "--output", type=Path, required=True, help="output OME-Zarr labels, e.g. labels.zarr")

    from .auto import auto_settings

    bat = commands.add_parser(
        "batch", parents=[common, auto_settings(stack_options=False)], help="segment many stacks on dask.distributed",
        description="Segment each INPUT with the prompts DIR/<stem>.csv (or .json, plus optional "
        "<stem>.boxes.csv), or with --auto everything in it as `napari-sam2 auto` does (--mode, --every, "
        "--points-per-side, ... apply then), into OUTDIR/<stem>.zarr, one dask task per stack. Finished "
        "outputs are skipped unless --overwrite.",
    )  # fmt: skip
    bat.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="stacks (TIFF, zarr, .npy)")
    bat.add_argument("--prompts-dir", type=Path, help="folder with <stem>.csv or <stem>.json (not with --auto)")
    bat.add_argument("--auto", action="store_true",
                     help="segment everything in each stack (napari-sam2 auto) instead of following prompt files")  # fmt: skip
    bat.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output folder")
    bat.add_argument(
        "--scheduler", default="local",
        help="local:N (a LocalCluster of N worker processes) or an existing scheduler's address, "
        "e.g. tcp://HOST:8786 (default: local, one worker per two cores)",
    )  # fmt: skip
    bat.add_argument("--connect-timeout", type=_positive_seconds, default=10.0, metavar="SECONDS",
                     help="give up reaching a scheduler after this long (default: 10)")  # fmt: skip
    bat.add_argument("--report", type=Path, metavar="JSON", help="also write every stack's outcome to this JSON file")


def _positive_seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _model_spec(args: argparse.Namespace) -> Any:
    from ..pipeline import ModelSpec

    source = str(args.checkpoint.absolute()) if args.checkpoint is not None else _model_name(args)
    config = str(args.config.absolute()) if args.config is not None else None
    return ModelSpec(source=source, config=config, device=args.device)


def _job_template(args: argparse.Namespace, **fields: Any) -> Any:
    from ..pipeline import SegmentJob

    return SegmentJob(
        model=_model_spec(args), axis=args.axis, direction=args.direction, stack_kind=args.stack_kind,
        compute_dtype=args.compute_dtype, overwrite=args.overwrite, torch_threads=args.torch_threads, **fields,
    )  # fmt: skip


def _segment(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tqdm import tqdm

    from ..pipeline import segment_steps
    from ..runtime import default_threads

    job = _job_template(
        args, input=str(args.input), prompts=str(args.prompts), output=str(args.output),
        boxes=None if args.boxes is None else str(args.boxes),
    )  # fmt: skip
    if job.torch_threads is None:
        job = replace(job, torch_threads=default_threads())
    _warn_if_slow(args)
    steps = segment_steps(job, configure=True)
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
        f"{PROG}: wrote {result.output}: {result.frames_reached} of {result.frames} frames reached, "
        f"{result.objects} object{'s' * (result.objects != 1)}, {result.seconds:.1f} s, "
        f"{result.precision} ({result.precision_reason})"
    )
    return 0


def _warn_if_slow(args: argparse.Namespace) -> None:
    """Warn before any work when this machine would compute an emulated bfloat16 (slower than
    float32). A remote batch worker decides for its own hardware."""
    from ..runtime import choose_precision, pick_device

    if getattr(args, "scheduler", "local").split(":")[0] != "local":
        return
    try:
        device = pick_device(args.device)
    except RuntimeError:  # a device torch does not know: loading the model says so
        return
    precision = choose_precision(args.compute_dtype, device)
    if precision.slow:
        print(f"{PROG}: warning: {precision.reason}; --compute-dtype auto or float32 is faster here", file=sys.stderr)


def _batch(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tqdm import tqdm

    from ..batch import dask_client, parse_scheduler, plan_jobs, remove_partials, run_batch

    from ..errors import InputError
    from ..pipeline import run_stack

    start = time.perf_counter()
    kind, _ = parse_scheduler(args.scheduler)  # a bad value fails before any work
    if args.auto == (args.prompts_dir is not None):
        raise InputError("batch needs --prompts-dir DIR (prompt files per stack) or --auto (segment everything), "
                         "one of the two")  # fmt: skip
    if args.auto:
        from ..auto_pipeline import check_job, run_auto_stack
        from .auto import auto_job

        template, task = auto_job(args, output=""), run_auto_stack
        check_job(template)  # bad settings fail before any work
    else:
        template, task = _job_template(args, input="", prompts="", output=""), run_stack
    _warn_if_slow(args)
    jobs, outcomes = plan_jobs(args.inputs, args.prompts_dir, args.output, template)
    if args.report is not None:  # before any work: the report must not cost the user a file
        _check_report(args.report, [*args.inputs, args.checkpoint, args.config,
                                    *(f for j in jobs for f in (getattr(j, "prompts", None), getattr(j, "boxes", None)))])  # fmt: skip
    for outcome in outcomes:
        _print_outcome(outcome, args.debug)
    status = 0
    if jobs:
        bar = tqdm(total=len(jobs), unit="stack", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)
        try:
            with dask_client(args.scheduler, timeout=args.connect_timeout, n_stacks=len(jobs)) as (client, threads):
                threads = args.torch_threads or threads
                jobs = [replace(job, torch_threads=threads) for job in jobs]
                for outcome in run_batch(client, jobs, task=task):
                    outcomes.append(outcome)
                    if outcome.model_error:  # every other stack would fail the same way
                        no_weights = outcome.error_type == "WeightsUnavailableError"
                        _error(_weights_hint(_model_name(args)) if no_weights else str(outcome.error))
                        status = EXIT_ERROR
                        break
                    with bar.external_write_mode(file=sys.stdout):  # the line above the bar
                        _print_outcome(outcome, args.debug)
                    bar.update()
        except KeyboardInterrupt:
            if kind == "local":  # the workers are gone: their temporary stores are garbage
                remove_partials(jobs)
            raise
        finally:
            bar.close()
    if args.report is not None:
        _write_report(args.report, outcomes)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    print(
        f"{PROG} batch: {counts['done']} done, {counts['skipped']} skipped (finished earlier), "
        f"{counts['failed']} failed, in {time.perf_counter() - start:.1f} s -> {args.output}"
    )
    if status:
        return status
    return EXIT_FAILED_STACKS if counts["failed"] else 0


def _print_outcome(outcome: Any, debug: bool) -> None:
    name = Path(outcome.input).name
    if outcome.status == "done":
        r = outcome.result
        print(f"done     {name} -> {r.output} ({r.frames_reached}/{r.frames} frames, {r.objects} objects, "
              f"{r.seconds:.1f} s, {r.precision}, worker pid {r.pid})", flush=True)  # fmt: skip
    elif outcome.status == "skipped":
        print(f"skipped  {name}: {outcome.output} exists (finished earlier; --overwrite redoes it)", flush=True)
    else:
        if debug and outcome.traceback:
            print(outcome.traceback, file=sys.stderr)
        print(f"FAILED   {name}: {outcome.error}", flush=True)


def _check_report(path: Path, inputs: list[Any]) -> None:
    """The --report file may replace only an earlier report, never an input of the run."""
    from ..errors import InputError, OutputExistsError
    from ..io.labels import check_output_spares

    try:
        check_output_spares(path, [p for p in inputs if p is not None and os.path.exists(p)])
    except InputError as exc:
        raise InputError(f"--report {path}: {exc}") from None
    if os.path.lexists(path):
        try:
            ours = path.is_file() and isinstance(json.loads(path.read_text())["stacks"], list)
        except Exception:  # noqa: BLE001 - not JSON, or not a report
            ours = False
        if not ours:
            raise OutputExistsError(f"--report {path} exists and is not a batch report; choose another file")


def _write_report(path: Path, outcomes: list[Any]) -> None:
    """Write the report atomically (a temporary file renamed into place)."""
    from dataclasses import asdict

    from ..io._files import write_text_atomically

    rows = [{k: v for k, v in asdict(o).items() if k != "traceback"} for o in outcomes]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps({"stacks": rows}, indent=2) + "\n")
