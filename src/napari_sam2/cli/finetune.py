"""``napari-sam2 finetune``: train a model further on the user's own labelled stacks
(:func:`napari_sam2.finetune.files.finetune_files`); the same command again resumes a stopped run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._common import PROG, _positive_int


def _add_finetune(commands: Any) -> None:
    from ..runtime import default_threads

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
                    help=f"torch CPU threads (default: all cores but one, here {default_threads()})")  # fmt: skip
    ft.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default: cpu)")
    ft.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                    help="dtype of the written weights (default: float32; float16 halves the file)")  # fmt: skip
    ft.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    ft.add_argument("--debug", action="store_true", help="show the Python traceback of an error")


def _finetune(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..runtime import configure_torch, default_threads, pick_dtype
    from ..finetune.files import FINETUNE_SETTINGS, finetune_files

    configure_torch(args.threads or default_threads())
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
