"""The ``napari-sam2`` command line (also ``python -m napari_sam2``).

::

    napari-sam2 segment-image IMAGE --point X Y [...] -o MASK.tif      # one 2-D image, one object
    napari-sam2 segment INPUT --prompts PROMPTS [--boxes SHAPES.csv] -o OUT.zarr
    napari-sam2 batch INPUT... --prompts-dir DIR -o OUTDIR [--scheduler local:N | tcp://HOST:PORT]
    napari-sam2 models
    napari-sam2 finetune IMAGES... --labels LABELS... --from MODEL -o OUT.pt

Errors are one line, ``napari-sam2: error: ...``, naming the file or address (``--debug``
adds the traceback). Exit codes: 0 done; ``segment-image``: 1 error, 2 bad arguments or no
weights; ``segment``, ``batch``, ``models``: 2 error or bad arguments, 1 some batch stacks
failed; 130 interrupted (Ctrl-C), 143 terminated (SIGTERM), with no partial output left behind.
See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import SAM2Error, WeightsUnavailableError

PROG = "napari-sam2"
EXIT_FAILED_STACKS = 1
EXIT_ERROR = 2  # also argparse's code for bad arguments
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a terminated command
# segment-image keeps the codes it shipped with (README): 1 an error, 2 bad arguments / no weights
EXIT_IMAGE_ERROR = 1
# weights.DEFAULT_MODEL, spelled out so that --help and bad files need no torch import (a test checks it)
DEFAULT_MODEL_HELP = "sam2.1_hiera_tiny"
DEFAULT_HELP = f"{DEFAULT_MODEL_HELP} if its weights are cached, else the bundled napari-sam2-cells"


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    from ..batch import COMPUTE_DTYPES, DIRECTIONS

    parser = argparse.ArgumentParser(prog=PROG, description="SAM 2 segmentation without napari.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_segment_image(commands)

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
    common.add_argument("--compute-dtype", choices=COMPUTE_DTYPES, default="float32",
                        help="float32 (the official numbers) or bfloat16 (faster on some CPUs/GPUs)")  # fmt: skip
    common.add_argument(
        "--torch-threads", type=_positive_int, metavar="N",
        help=f"torch threads (per worker in batch). Default: all cores but one for segment (here: "
        f"{_threads_here()}); (cores - 1) / N per worker for batch on local:N; the workers' own for a "
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

    bat = commands.add_parser(
        "batch", parents=[common], help="segment many stacks on dask.distributed",
        description="Segment each INPUT with the prompts DIR/<stem>.csv (or .json, plus optional "
        "<stem>.boxes.csv) into OUTDIR/<stem>.zarr, one dask task per stack. Finished outputs are "
        "skipped unless --overwrite.",
    )  # fmt: skip
    bat.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="stacks (TIFF, zarr, .npy)")
    bat.add_argument("--prompts-dir", type=Path, required=True, help="folder with <stem>.csv or <stem>.json")
    bat.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output folder")
    bat.add_argument(
        "--scheduler", default="local",
        help="local:N (a LocalCluster of N worker processes) or an existing scheduler's address, "
        "e.g. tcp://HOST:8786 (default: local, one worker per two cores)",
    )  # fmt: skip
    bat.add_argument("--connect-timeout", type=_positive_seconds, default=10.0, metavar="SECONDS",
                     help="give up reaching a scheduler after this long (default: 10)")  # fmt: skip
    bat.add_argument("--report", type=Path, metavar="JSON", help="also write every stack's outcome to this JSON file")

    models = commands.add_parser("models", help="list the official models and which are cached locally")
    models.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    _add_finetune(commands)
    return parser


def _add_finetune(commands: Any) -> None:
    ft = commands.add_parser(
        "finetune", help="fine-tune a model on your own labelled stacks",
        description="Train a model further on stacks (or 2-D images) and their instance labels: "
        "image steps on labelled frames and tracking steps on clips of consecutive labelled frames. "
        "Progress is kept in OUT.run/; running the same command again resumes.",
    )  # fmt: skip
    ft.add_argument("images", type=Path, nargs="+", metavar="IMAGES", help="TIFF, zarr / OME-Zarr or .npy stacks")
    ft.add_argument("--labels", type=Path, nargs="+", required=True, metavar="LABELS",
                    help="their labels, one per image in the same order: OME-Zarr labels saved by the plugin "
                    "or segment, or integer label images of the image's shape")  # fmt: skip
    ft.add_argument("--from", dest="source", required=True, metavar="MODEL",
                    help="the model to start from: a name (napari-sam2-cells, sam2.1_hiera_tiny, ...) or a checkpoint")  # fmt: skip
    ft.add_argument("--config", type=Path, help="SAM2Config JSON for a checkpoint that is no official variant")
    ft.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="the fine-tuned model, e.g. mine.pt")
    ft.add_argument("--steps", type=_positive_int, default=300, help="training steps (default: 300)")
    ft.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default: 1e-4)")
    enc = ft.add_mutually_exclusive_group()
    enc.add_argument("--freeze-encoder", dest="freeze_encoder", action="store_true", default=True,
                     help="keep the image encoder; each frame is encoded once (default; fast on a CPU)")  # fmt: skip
    enc.add_argument("--train-encoder", dest="freeze_encoder", action="store_false",
                     help="train the image encoder too (every step encodes; with intensity augmentation)")  # fmt: skip
    ft.add_argument("--axis", type=int, default=0, help="the stack (z or time) axis of the inputs (default: 0)")
    ft.add_argument("--seed", type=int, default=0, help="seed of the data order and prompts (default: 0)")
    ft.add_argument("--minutes", type=float, metavar="M", help="stop after M minutes; run again to resume")
    ft.add_argument("--threads", "--torch-threads", dest="threads", type=_positive_int, metavar="N",
                    help=f"torch CPU threads (default: all cores but one, here {_threads_here()})")  # fmt: skip
    ft.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: cpu)")
    ft.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                    help="dtype of the written weights (default: float32; float16 halves the file)")  # fmt: skip
    ft.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    ft.add_argument("--debug", action="store_true", help="show the Python traceback of an error")


def _positive_seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _threads_here() -> int:
    from ..runtime import default_threads

    return default_threads()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_segment_image(commands: Any) -> None:
    seg = commands.add_parser(
        "segment-image",
        help="segment one object in a 2-D image from points and/or a box",
        description="Segment one object in a 2-D image (grayscale or RGB; uint8, uint16 or float) "
        "from positive/negative points and/or a box, given as x y pixel coordinates.",
    )
    seg.add_argument("image", type=Path, help="image file (TIFF, PNG, JPEG, ...)")
    seg.add_argument(
        "--point", nargs=2, type=float, action="append", default=[], metavar=("X", "Y"),
        help="a point on the object (repeatable)",
    )
    seg.add_argument(
        "--negative", nargs=2, type=float, action="append", default=[], metavar=("X", "Y"),
        help="a point on the background (repeatable)",
    )
    seg.add_argument(
        "--box", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"), help="a box around the object"
    )
    weights = seg.add_mutually_exclusive_group()
    weights.add_argument(
        "--model", help=f"model name; official ones are downloaded on first use (default: {DEFAULT_HELP})",
    )
    weights.add_argument("--checkpoint", type=Path, help="a local official checkpoint (.pt) instead")
    seg.add_argument(
        "--config", type=Path,
        help="JSON config (SAM2Config.to_json()) for a checkpoint that is not an official variant",
    )
    seg.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: cpu)")
    seg.add_argument("-o", "--output", type=Path, required=True, help="output mask TIFF")
    seg.add_argument("--overwrite", action="store_true",
                     help="replace an existing OUTPUT if it is a mask that segment-image wrote (never anything else)")  # fmt: skip


# --------------------------------------------------------------------------- segment-image


def _read_image(path: Path):  # -> np.ndarray
    import numpy as np

    from ..errors import InputError

    if not path.is_file():
        raise SAM2Error(f"image file {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise InputError(f"image file {str(path)!r} is empty (0 bytes)")
    if path.suffix.lower() in (".tif", ".tiff"):
        from ..io.stacks import read_tiff

        return read_tiff(path)  # a damaged TIFF raises instead of giving its first page
    try:
        import skimage.io

        image = skimage.io.imread(path)
    except Exception as exc:  # imageio's errors run to several lines of plugin advice: one line instead
        text = str(exc).strip().splitlines()
        if "could not find a backend" in str(exc).lower() or type(exc).__name__ == "UnidentifiedImageError":
            why = "it is not an image file that can be read (no reader recognises its contents)"
        else:
            why = f"the file is damaged ({type(exc).__name__}: {text[0][:160] if text else ''})"
        raise InputError(f"could not read image {str(path)!r}: {why}") from None
    return np.asarray(image)


def _model_name(args: argparse.Namespace) -> str:
    from ..weights import default_model

    return getattr(args, "model", None) or default_model()


def _weights_hint(model: str) -> str:
    from ..weights import REGISTRY, bundled_path, canonical_name

    if bundled_path(model) is not None:
        return f"the bundled model {model} is missing from this installation; reinstall napari-sam2"
    name = canonical_name(model) or model
    repo_id, filename = REGISTRY.get(name, ("facebook/" + name, name + ".pt"))
    return (
        f"the official {name} weights could not be downloaded (offline?); get {filename} "
        f"from https://huggingface.co/{repo_id} and pass it with --checkpoint FILE"
    )


def _segment_image(args: argparse.Namespace) -> int:
    import numpy as np
    import tifffile

    from .. import load_model

    if not args.point and not args.negative and args.box is None:
        _error("give at least one --point, --negative or --box")
        return EXIT_ERROR
    _check_mask_output(args)  # before any work: never the input, only our own earlier mask
    image = _read_image(args.image)
    try:
        model = load_model(args.checkpoint or _model_name(args), args.device, config=args.config)
    except WeightsUnavailableError:
        _error(_weights_hint(_model_name(args)))
        return EXIT_ERROR

    from .. import ImagePredictor

    predictor = ImagePredictor(model)
    predictor.set_image(image)
    points = args.point + args.negative
    coords = np.asarray(points, dtype=np.float32).reshape(-1, 2) if points else None
    labels = np.asarray([1] * len(args.point) + [0] * len(args.negative)) if points else None
    box = np.asarray(args.box, dtype=np.float32) if args.box is not None else None
    # One point is ambiguous (part / object / group): let SAM propose three and keep the best.
    multimask = len(points) == 1 and box is None
    masks, scores, _ = predictor.predict(
        point_coords=coords, point_labels=labels, box=box, multimask_output=multimask
    )
    best = int(np.argmax(scores))
    mask = np.asarray(masks[best], dtype=bool)
    description = json.dumps({"napari_sam2": {"model": model.config.name, "image": str(args.image)}})
    _write_mask(args.output, mask.astype(np.uint8) * 255, description, overwrite=args.overwrite)
    print(f"{args.output}: {int(mask.sum())} pixels, predicted IoU {float(scores[best]):.3f}, model {model.config.name}")
    return 0


MASK_SOFTWARE = "napari-sam2"  # the TIFF Software tag of the masks segment-image writes


def _is_our_mask(path: Path) -> bool:
    """A TIFF that segment-image wrote (its Software tag says so)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return tif.pages.first.software == MASK_SOFTWARE
    except Exception:  # noqa: BLE001 - unreadable: not ours
        return False


def _check_mask_output(args: argparse.Namespace) -> None:
    from ..io.labels import check_output_spares, check_replaceable

    inputs = [args.image, args.checkpoint, args.config]
    check_output_spares(args.output, [p for p in inputs if p is not None and p.exists()])
    check_replaceable(args.output, args.overwrite, ours=_is_our_mask, what="a mask that segment-image wrote")


def _write_mask(path: Path, mask: Any, description: str, *, overwrite: bool) -> None:
    """Write the mask TIFF to a temporary file beside ``path``, then rename it into place."""
    import tifffile

    from ..errors import OutputExistsError
    from ..io._files import temporary_beside

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path, ".partial.tif")
    try:
        tifffile.imwrite(tmp, mask, software=MASK_SOFTWARE, description=description, metadata=None)
        if overwrite and _is_our_mask(path):
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if something appeared there meanwhile, rather than replacing it
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links
                if os.path.lexists(path):
                    raise FileExistsError(path) from None
                os.replace(tmp, path)
    except FileExistsError:
        raise OutputExistsError(f"{path} already exists; choose another output") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


# --------------------------------------------------------------------------- segment and batch


def _model_spec(args: argparse.Namespace) -> Any:
    from ..batch import ModelSpec

    source = str(args.checkpoint.absolute()) if args.checkpoint is not None else _model_name(args)
    config = str(args.config.absolute()) if args.config is not None else None
    return ModelSpec(source=source, config=config, device=args.device)


def _job_template(args: argparse.Namespace, **fields: Any) -> Any:
    from ..batch import SegmentJob

    return SegmentJob(
        model=_model_spec(args), axis=args.axis, direction=args.direction, stack_kind=args.stack_kind,
        compute_dtype=args.compute_dtype, overwrite=args.overwrite, torch_threads=args.torch_threads, **fields,
    )  # fmt: skip


def _segment(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dataclasses import replace

    from ..batch import segment_steps

    job = _job_template(
        args, input=str(args.input), prompts=str(args.prompts), output=str(args.output),
        boxes=None if args.boxes is None else str(args.boxes),
    )  # fmt: skip
    if job.torch_threads is None:
        job = replace(job, torch_threads=_threads_here())
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
        f"{result.objects} object{'s' * (result.objects != 1)}, {result.seconds:.1f} s"
    )
    return 0


def _batch(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from tqdm import tqdm

    from ..batch import dask_client, parse_scheduler, plan_jobs, remove_partials, run_batch

    start = time.perf_counter()
    kind, _ = parse_scheduler(args.scheduler)  # a bad value fails before any work
    template = _job_template(args, input="", prompts="", output="")
    jobs, outcomes = plan_jobs(args.inputs, args.prompts_dir, args.output, template)
    if args.report is not None:  # before any work: the report must not cost the user a file
        _check_report(args.report, [*args.inputs, args.checkpoint, args.config,
                                    *(f for j in jobs for f in (j.prompts, j.boxes))])  # fmt: skip
    for outcome in outcomes:
        _print_outcome(outcome, args.debug)
    status = 0
    if jobs:
        bar = tqdm(total=len(jobs), unit="stack", file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)
        try:
            with dask_client(args.scheduler, timeout=args.connect_timeout, n_stacks=len(jobs)) as (client, threads):
                threads = args.torch_threads or threads
                jobs = [replace(job, torch_threads=threads) for job in jobs]
                for outcome in run_batch(client, jobs):
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
              f"{r.seconds:.1f} s, worker pid {r.pid})", flush=True)  # fmt: skip
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


# --------------------------------------------------------------------------- models


def _models(args: argparse.Namespace) -> int:
    from ..weights import BUNDLED, REGISTRY, bundled_path

    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        try_to_load_from_cache = None
    rows = [("name", "Hugging Face repository", "file", "cached")]
    for name, filename in BUNDLED.items():
        path = bundled_path(name)
        where = str(path) if path is not None and path.is_file() else "missing"
        rows.append((name, "(bundled with napari-sam2)", filename, where))
    for name, (repo_id, filename) in REGISTRY.items():
        cached = try_to_load_from_cache(repo_id, filename) if try_to_load_from_cache else None
        rows.append((name, repo_id, filename, cached if isinstance(cached, str) else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return 0


# --------------------------------------------------------------------------- finetune


def _finetune(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..runtime import configure_torch, pick_dtype
    from ..train.files import FINETUNE_SETTINGS, finetune_files

    configure_torch(args.threads or _threads_here())
    settings = replace(FINETUNE_SETTINGS, steps=args.steps, lr=args.lr, seed=args.seed)
    result = finetune_files(
        args.images, args.labels, args.source, args.output, settings, freeze_encoder=args.freeze_encoder,
        axis=args.axis, config=args.config, device=args.device, dtype=pick_dtype(args.dtype),
        overwrite=args.overwrite, stop_after_minutes=args.minutes, progress=sys.stderr.isatty(),
    )  # fmt: skip
    what = f"{result.stacks} stack{'s' * (result.stacks != 1)}, {result.frames} labelled frames" + (
        "" if result.clips else ", image steps only (no stack has clip-long runs of labelled frames)"
    )
    iou = ""
    if result.iou_start is not None and result.iou_end is not None:
        iou = f", first-click IoU {result.iou_start:.2f} -> {result.iou_end:.2f}"
    if result.output is None:
        print(f"{PROG}: stopped at step {result.step} of {result.steps} ({what}{iou}); "
              f"run the same command again to resume from {result.run_dir}")  # fmt: skip
    else:
        print(f"{PROG}: wrote {result.output}: {result.steps} steps on {what}{iou}, {result.seconds:.0f} s "
              f"(log: {result.run_dir / 'log.jsonl'})")  # fmt: skip
    return 0


# --------------------------------------------------------------------------- main

_COMMANDS = {
    "segment-image": _segment_image, "segment": _segment, "batch": _batch, "models": _models, "finetune": _finetune,
}  # fmt: skip


def _notes_to_stderr() -> None:
    """The package's warnings (e.g. what was recovered from a killed run) as ``napari-sam2: note: ...`` lines."""
    import logging

    class Notes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            print(f"{PROG}: note: {record.getMessage()}", file=sys.stderr)  # whatever sys.stderr is now

    logger = logging.getLogger("napari_sam2")
    if not any(type(h).__name__ == "Notes" for h in logger.handlers):
        logger.addHandler(Notes(logging.WARNING))
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    _notes_to_stderr()
    debug = getattr(args, "debug", False)
    error_code = EXIT_IMAGE_ERROR if args.command == "segment-image" else EXIT_ERROR
    received, restore = _signals_as_interrupts()
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as Terminated
        return _signal_exit(type(exc))
    except Exception as exc:
        if received:  # the signal's doing, whatever a C extension made of the KeyboardInterrupt
            return _signal_exit(received[-1])
        return _error_exit(exc, args, debug, error_code)
    finally:
        restore()


def _signal_exit(kind: type[BaseException]) -> int:
    if issubclass(kind, Terminated):
        print(f"{PROG}: terminated; no partial output was kept", file=sys.stderr)
        return EXIT_TERMINATED
    newline = "\n" if sys.stderr.isatty() else ""  # end the ^C / progress-bar line
    print(f"{newline}{PROG}: interrupted; no partial output was kept", file=sys.stderr)
    return EXIT_INTERRUPTED


def _error_exit(exc: Exception, args: argparse.Namespace, debug: bool, error_code: int) -> int:
    """One line for an error (the traceback with --debug); returns the exit code."""
    if debug:
        traceback.print_exc()
    if isinstance(exc, WeightsUnavailableError):
        _error(_weights_hint(_model_name(args)))
    elif isinstance(exc, (SAM2Error, OSError)):
        _error(str(exc) or type(exc).__name__)
    else:  # a bug: still one line, the traceback on request
        text = str(exc).strip().splitlines()
        _error(f"unexpected {type(exc).__name__}: {text[0] if text else ''} (run with --debug for the traceback)")
    return error_code


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a cluster's time limit, ``timeout``), raised where the command is.

    A KeyboardInterrupt, so that every cleanup a Ctrl-C runs (the partial store removed, a
    local cluster's partials, the model's files closed) runs for it too.
    """


def _signals_as_interrupts() -> tuple[list[type[BaseException]], Any]:
    """In the main thread, SIGTERM raises :class:`Terminated` and Ctrl-C KeyboardInterrupt, and
    each signal is remembered; returns that record and what undoes the handlers.

    The record is for an error that follows a signal: a KeyboardInterrupt raised inside C code
    can come out as another exception (CPython's warnings machinery turns it into
    ``TypeError: expected a message argument``), which is the signal's doing, not a bug. An
    ignored SIGINT (a background job) stays ignored.
    """
    import signal
    import threading

    received: list[type[BaseException]] = []
    if threading.current_thread() is not threading.main_thread():
        return received, lambda: None

    def on_term(signum: int, frame: Any) -> None:
        received.append(Terminated)
        raise Terminated()

    def on_int(signum: int, frame: Any) -> None:
        received.append(KeyboardInterrupt)
        raise KeyboardInterrupt()

    previous_term = signal.signal(signal.SIGTERM, on_term)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_int)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous_term)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)

    return received, restore
