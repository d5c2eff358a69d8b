"""Does fine-tuning teach the model a new appearance? Before/after on held-out membrane stacks.

The shipped model never sees the ``membrane`` style (a bright rim around a dark inside:
:data:`napari_sam2.synthetic.TRAINING_STYLES` leaves it out). This benchmark

1. makes ``--train-stacks`` labelled membrane stacks (time-lapses and z-stacks alternately)
   and ``--test-stacks`` held-out ones from other seeds;
2. measures the model on the held-out stacks: (a) one-click 2-D IoU per object on
   ``--test-frames`` evenly spaced frames of each stack
   (:func:`napari_sam2.evaluate.evaluate_clicks`), (b) tracking: one click per
   object, propagated through the stack, mean per-frame IoU, then one correction click
   (:func:`~napari_sam2.evaluate.evaluate_tracking`); plus (c) one-click IoU on
   ``--old-images`` 2-D images of the styles it was trained on, to see whether it forgets;
3. fine-tunes it on the training stacks (:func:`napari_sam2.finetune.finetune`,
   what ``napari-sam2 finetune`` runs; frozen encoder unless ``--train-encoder``);
4. measures it again on the same data.

Seeds: training stacks 2**31 + 300000 + i, held-out stacks 2**31 + 400000 + i, old-style
images 2**31 + 500000 + i; the shipped model's training draws seeds below 2**31, and
``factory/eval_cells.py`` uses 2**31 .. 2**31 + 2**18.

    python benchmarks/bench_finetune.py [--model napari-sam2-cells] [--steps 300] [--threads 2]

Results go to benchmarks/results/finetune.json (``--out``); the run directory (resumable,
``--run-dir``) defaults to a temporary folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import REPO, machine
from report import dumps, fmt

SEED_BASE = 2**31
SEED_OFFSET = {"train": 300_000, "test": 400_000, "old": 500_000}
NEW_STYLE = ("membrane",)


def membrane_stacks(kind: str, n: int, frames: int, size: int) -> tuple[list, list[int]]:
    """``n`` labelled membrane stacks: time-lapses and z-stacks alternately, seeded."""
    from napari_sam2.synthetic import Appearance, cell_timelapse, nuclei_zstack

    stacks, seeds = [], []
    for i in range(n):
        seed = SEED_BASE + SEED_OFFSET[kind] + i
        look = Appearance.sample(np.random.default_rng(seed), NEW_STYLE)
        make = cell_timelapse if i % 2 == 0 else nuclei_zstack
        stacks.append(make(frames, (size, size), seed=seed, appearance=look))
        seeds.append(seed)
    return stacks, seeds


def old_style_images(n: int, size: int) -> tuple[list, list]:
    """2-D images of the styles the model was trained on (a forgetting check)."""
    from napari_sam2.synthetic import TRAINING_STYLES, Appearance, cells_image

    images, labels = [], []
    for i in range(n):
        seed = SEED_BASE + SEED_OFFSET["old"] + i
        sample = cells_image((size, size), seed=seed, appearance=Appearance.sample(np.random.default_rng(seed), TRAINING_STYLES))
        images.append(sample.image)
        labels.append(sample.labels)
    return images, labels


def frames_of(stacks: list, per_stack: int) -> tuple[list, list]:
    """``per_stack`` evenly spaced frames of each stack, as 2-D images and labels."""
    images, labels = [], []
    for s in stacks:
        for t in np.linspace(0, len(s.image) - 1, per_stack).round().astype(int):
            images.append(s.image[t])
            labels.append(s.labels[t])
    return images, labels


def measure(model, test_stacks: list, test_frames: tuple, old: tuple, args: argparse.Namespace) -> dict:
    from napari_sam2.evaluate import evaluate_clicks, evaluate_tracking

    t = time.perf_counter()
    clicks = evaluate_clicks(model, *test_frames)
    track = evaluate_tracking(model, test_stacks, objects_per_stack=args.objects_per_stack,
                              correction=not args.no_correction)  # fmt: skip
    old_clicks = evaluate_clicks(model, *old) if old[0] else None
    return {
        "clicks_2d": clicks,
        "tracking": track,
        "old_styles_2d": old_clicks,
        "seconds": time.perf_counter() - t,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="napari-sam2-cells", help="bundled name or checkpoint path to start from")
    ap.add_argument("--steps", type=int, default=300, help="fine-tuning steps")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default: FINETUNE_SETTINGS's)")
    ap.add_argument("--train-encoder", action="store_true", help="train the image encoder too (slow)")
    ap.add_argument("--train-stacks", type=int, default=3)
    ap.add_argument("--test-stacks", type=int, default=4)
    ap.add_argument("--frames", type=int, default=24, help="frames (or slices) per stack")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--test-frames", type=int, default=6, help="frames per held-out stack for the 2-D clicks")
    ap.add_argument("--objects-per-stack", type=int, default=3, help="objects tracked per held-out stack")
    ap.add_argument("--old-images", type=int, default=20, help="2-D images of the trained styles (0: skip)")
    ap.add_argument("--no-correction", action="store_true", help="tracking without the correction click")
    ap.add_argument("--seed", type=int, default=0, help="fine-tuning seed")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--run-dir", type=Path, default=None, help="fine-tuning run directory (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "finetune.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from napari_sam2.finetune import FINETUNE_SETTINGS, finetune
    from napari_sam2.weights import load_model

    settings = dataclasses.replace(FINETUNE_SETTINGS, steps=args.steps, seed=args.seed,
                                   lr=FINETUNE_SETTINGS.lr if args.lr is None else args.lr)  # fmt: skip
    train_stacks, train_seeds = membrane_stacks("train", args.train_stacks, args.frames, args.size)
    test_stacks, test_seeds = membrane_stacks("test", args.test_stacks, args.frames, args.size)
    test_frames = frames_of(test_stacks, args.test_frames)
    old = old_style_images(args.old_images, args.size)

    model = load_model(args.model)
    print(f"model {args.model}: measuring before fine-tuning ...", flush=True)
    before = measure(model, test_stacks, test_frames, old, args)

    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="bench_finetune_"))
    t = time.perf_counter()
    finetune(model, [(s.image, s.labels) for s in train_stacks], run_dir, settings,
             freeze_encoder=not args.train_encoder)  # fmt: skip
    train_seconds = time.perf_counter() - t
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    print(f"fine-tuned {args.steps} steps in {train_seconds:.0f} s; measuring after ...", flush=True)
    after = measure(model, test_stacks, test_frames, old, args)

    report = {
        "machine": machine(),
        "model": args.model,
        "settings": {
            **{k: v for k, v in vars(args).items() if k not in ("out", "run_dir")},
            "finetune": dataclasses.asdict(settings),
            "freeze_encoder": not args.train_encoder,
            "new_style": list(NEW_STYLE),
            "seeds": {"train": train_seeds, "test": test_seeds,
                      "old_styles": f"{SEED_BASE + SEED_OFFSET['old']} + i"},  # fmt: skip
        },
        "training": {"seconds": train_seconds, "seconds_per_step": train_seconds / max(1, args.steps),
                     "run_dir": str(run_dir), "log": log},  # fmt: skip
        "before": before,
        "after": after,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(report))
    print_table(before, after)
    print(f"wrote {args.out}")


def print_table(before: dict, after: dict) -> None:
    rows = [
        ("membrane, one click 2-D: mean IoU", lambda r: r["clicks_2d"]["mean_iou"]),
        ("membrane, one click 2-D: share >= 0.85", lambda r: r["clicks_2d"]["share_085"]),
        ("membrane, tracking: mean per-frame IoU", lambda r: r["tracking"]["mean_before"]),
        ("membrane, tracking: after one correction", lambda r: r["tracking"]["mean_after"]),
        ("trained styles, one click 2-D: mean IoU", lambda r: (r["old_styles_2d"] or {}).get("mean_iou")),
    ]
    counts = (f"{before['clicks_2d']['count']} objects 2-D, {before['tracking']['count']} tracked, "
              f"{(before['old_styles_2d'] or {}).get('count', 0)} old-style objects")  # fmt: skip
    print(f"\n{'':46}before   after    ({counts})")
    for name, get in rows:
        print(f"  {name:<44}{fmt(get(before))}    {fmt(get(after))}")


if __name__ == "__main__":
    main()
