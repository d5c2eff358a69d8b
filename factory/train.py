"""Train the shipped model: ``python -m factory.train --out runs/cells`` (from the repository root).

The model (``CELLS_CONFIG``) starts from random weights (seeded) and learns from fresh
synthetic images and clips at every step (:mod:`factory.training_data`). Re-running the
same command resumes; ``--minutes`` stops early (resumable) to split a run over sessions.
The final fp16 weights are written to ``OUT/model.pt``.

A later training phase starts from a finished model with its own schedule
(``--init-from``). The shipped model is the mean (:mod:`factory.average`) of runs
6 and 7 (commands in docs/model.md), which descend from phase 1 (random weights, the
defaults), phase 2, which trains tracking more and teaches that objects end, and runs 3b
and 5 on longer clips. Where an object ends (a nucleus in z, a
cell leaving the field) the phase-1 model followed a neighbour, and a negative correction
there hurt the whole track: ``--end-fraction`` makes that share of the clips show an
object ending, ``--correction-at worst`` puts the correction click where tracking fails,
as the evaluation does, and ``--correction-fraction`` is the share of clips corrected.
``--clip-length`` sets the frames per clip, ``--gap-fraction`` the share of clips in
which an object is gone for a while and back, ``--division-fraction`` the share in
which the tracked cell divides (the target stays the mother), ``--timelapse-fraction``
the share cut from time-lapses rather than z-stacks. Their defaults are what phase 1 did.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from napari_sam2.finetune.loop import TrainSettings, export_model, train
from napari_sam2.model.config import CELLS_CONFIG
from napari_sam2.model.sam2 import SAM2
from napari_sam2.runtime import configure_torch

from .training_data import FAST_SPEED, synthetic_clip, synthetic_image_batch


def build_parser() -> argparse.ArgumentParser:
    """The command's options (:func:`settings_from` turns them into :class:`TrainSettings`)."""
    defaults = TrainSettings()
    p = argparse.ArgumentParser(prog="python -m factory.train", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="run directory (resumes if it has last.pt)")
    p.add_argument("--steps", type=int, default=defaults.steps)
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--warmup", type=int, default=defaults.warmup, help="warm-up steps")
    p.add_argument("--video-fraction", type=float, default=defaults.video_fraction, help="share of clip steps")
    p.add_argument("--video-start", type=float, default=defaults.video_start,
                   help="fraction of the run trained on images only")  # fmt: skip
    p.add_argument("--end-fraction", type=float, default=defaults.end_fraction,
                   help="share of clips in which an object ends (is absent on the last 1-4 frames)")  # fmt: skip
    p.add_argument("--gap-fraction", type=float, default=defaults.gap_fraction,
                   help="share of clips in which an object is gone on some frames and back on the last")  # fmt: skip
    p.add_argument("--division-fraction", type=float, default=defaults.division_fraction,
                   help="share of clips in which the tracked cell divides (it stays the mother)")  # fmt: skip
    p.add_argument("--timelapse-fraction", type=float, default=defaults.timelapse_fraction,
                   help="share of the clips (gap clips aside) cut from time-lapses; the rest from z-stacks")  # fmt: skip
    p.add_argument("--timelapse-frames", type=int, default=defaults.timelapse_frames,
                   help="draw the time-lapses of plain and ending clips with at least this many frames "
                   "and cut the clip from them (default: as many as the clip needs)")  # fmt: skip
    p.add_argument("--fast-fraction", type=float, default=defaults.fast_fraction,
                   help="share of the time-lapses drawn with fast cells (%g-%g of the side per frame)" % FAST_SPEED)  # fmt: skip
    p.add_argument("--correction-fraction", type=float, default=defaults.correction_fraction,
                   help="share of clips with a correction click")  # fmt: skip
    p.add_argument("--correction-at", choices=("random", "worst"), default=defaults.correction_at,
                   help="the corrected frame: a random one, or the worst of a first tracking pass")  # fmt: skip
    p.add_argument("--clip-length", type=int, default=defaults.clip_length,
                   help="frames per training clip (longer clips put corrections further from the first prompt)")  # fmt: skip
    p.add_argument("--init-from", default=None, help="start from this model's weights (a new phase)")
    p.add_argument("--minutes", type=float, default=None, help="stop (resumably) after this many minutes")
    return p


def settings_from(args: argparse.Namespace) -> TrainSettings:
    """The run's :class:`TrainSettings` from parsed options (what ``OUT/settings.json`` records)."""
    return dataclasses.replace(
        TrainSettings(),
        steps=args.steps,
        lr=args.lr,
        seed=args.seed,
        warmup=args.warmup,
        video_fraction=args.video_fraction,
        video_start=args.video_start,
        end_fraction=args.end_fraction,
        gap_fraction=args.gap_fraction,
        division_fraction=args.division_fraction,
        timelapse_fraction=args.timelapse_fraction,
        timelapse_frames=args.timelapse_frames,
        fast_fraction=args.fast_fraction,
        correction_fraction=args.correction_fraction,
        correction_at=args.correction_at,
        clip_length=args.clip_length,
    )


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    configure_torch(args.threads)
    settings = settings_from(args)
    torch.manual_seed(settings.seed)
    model = SAM2(CELLS_CONFIG)
    if args.init_from is not None:
        from napari_sam2.weights import load_model

        start = load_model(args.init_from)
        if start.config.architecture() != CELLS_CONFIG:  # a calibration is not kept: see docs/model.md
            p.error(f"--init-from {args.init_from} is not a {CELLS_CONFIG.name} model")
        model.load_state_dict(start.state_dict())
    size = CELLS_CONFIG.image_size
    train(
        model,
        args.out,
        settings,
        image_batches=lambda s: synthetic_image_batch(s, size, settings.images_per_step, settings.objects_per_image),
        clips=lambda s: synthetic_clip(
            s, size, settings.clip_length, settings.objects_per_clip,
            p_end=settings.end_fraction, p_gap=settings.gap_fraction, p_timelapse=settings.timelapse_fraction,
            p_division=settings.division_fraction, timelapse_frames=settings.timelapse_frames,
            p_fast=settings.fast_fraction,
        ),  # fmt: skip
        stop_after_minutes=args.minutes,
    )
    import json
    from pathlib import Path

    last = json.loads(Path(args.out, "log.jsonl").read_text().splitlines()[-1])
    if last["step"] >= settings.steps:
        path = export_model(model, Path(args.out) / "model.pt", seed=settings.seed, steps=settings.steps)
        print(f"wrote {path}")
    else:
        print(f"stopped at step {last['step']} of {settings.steps}; run the same command again to resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
