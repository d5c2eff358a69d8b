"""Choose a trained model's presence bias per kind of stack on the validation split, and write it.

SAM 2 decides on every tracked frame whether the object is there (the object-present
logit > 0). A model trained on both time-lapses and z-stacks makes that call with one
threshold, but the two kinds disagree about absence: a cell in a time-lapse is almost
always still there, while every nucleus in a z-stack ends on some slice. The tracker
then drops cells it still sees in time-lapses and follows a neighbour after a nucleus has
ended in z-stacks. ``VideoSession(stack_kind=...)`` adds a per-kind offset to that logit
(``SAM2Config.presence_bias_t`` / ``presence_bias_z``); this script chooses the two
offsets from a grid on the **validation** split of ``eval_cells.py`` (one click per
object, no correction, the mean per-frame IoU), so that the test split stays untouched:

* each bias is scored by its worst mean per-frame IoU over itself and its neighbours on
  the grid, so that a bias next to a cliff (one step further and the tracker drops every
  object) is not chosen: a user's stacks differ from the validation set more than one
  step's worth;
* the best such score wins, except that a smaller |bias| within ``--tolerance`` of it
  wins (the least change that gets the gain);
* then it writes the model with them (same weights, fp16) and the sweep as JSON.

    python -m factory.calibrate_presence --model runs/cells-p67/model.pt \\
        -o runs/cells-p67cal/model.pt --threads 2        # from the repository root

The shipped file's own command and its sweep are in its lineage record (lineage.json beside
it; factory/results/presence_calibration.json). Until issue 17 this script was
``benchmarks/calibrate_presence.py``.

The official models keep 0 (their object-score head was trained on natural videos, and
0 reproduces the official tracker); a model trained again must be calibrated again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from benchmarks.common import REPO, machine
from benchmarks.report import rounded

from .eval_cells import held_out_stacks

GRID = {"t": (0.0, 0.5, 1.0, 1.5, 2.0), "z": (0.0, -0.5, -1.0, -1.5, -2.0, -2.5)}
KINDS = {"t": "timelapse", "z": "zstack"}


def robust(scores: dict[float, float]) -> dict[float, float]:
    """Each bias's worst score over itself and its neighbours on the (sorted) grid."""
    grid = sorted(scores)
    return {b: min(scores[g] for g in grid[max(0, i - 1) : i + 2]) for i, b in enumerate(grid)}


def choose(scores: dict[float, float], tolerance: float) -> float:
    """The bias to use: the smallest |bias| whose :func:`robust` score is within
    ``tolerance`` of the best one."""
    safe = robust(scores)
    best = max(safe.values())
    return min((b for b, s in safe.items() if s >= best - tolerance), key=lambda b: (abs(b), b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="bundled name or checkpoint path")
    ap.add_argument("-o", "--output", type=Path, required=True, help="the calibrated model file to write")
    ap.add_argument("--stacks", type=int, default=10, help="validation stacks per kind")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--tolerance", type=float, default=0.005, help="mean IoU within which a smaller |bias| wins")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "factory" / "results" / "presence_calibration.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from napari_sam2.evaluate import evaluate_tracking
    from napari_sam2.finetune.loop import export_model
    from napari_sam2.weights import load_model, resolve_checkpoint

    source = resolve_checkpoint(args.model)
    model = load_model(source)
    if model.config.presence_bias_t or model.config.presence_bias_z:
        raise SystemExit(f"{args.model} is calibrated already; calibrate the uncalibrated model")
    report: dict = {
        "machine": machine(), "model": str(args.model), "split": "validation", "stacks_per_kind": args.stacks,
        "frames": args.frames, "objects_per_stack": 3, "tolerance": args.tolerance, "grid": GRID, "kinds": {},
    }  # fmt: skip
    chosen = {}
    for kind, grid in GRID.items():
        stacks, seeds = held_out_stacks(KINDS[kind], args.stacks, args.frames, args.size, "validation")
        rows = []
        for bias in grid:
            t0 = time.perf_counter()
            r = evaluate_tracking(model, stacks, correction=False, presence_bias=bias)
            rows.append({"bias": bias, "mean": r["mean_before"], **r["lost_before"]})
            print(f"{KINDS[kind]:9s} bias {bias:+.1f}: mean per-frame IoU {r['mean_before']:.3f}, "
                  f"dropped {r['lost_before']['dropped']}, spilled {r['lost_before']['spilled']} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        scores = {row["bias"]: row["mean"] for row in rows}
        safe = robust(scores)
        for row in rows:
            row["worst_with_neighbours"] = safe[row["bias"]]
        chosen[kind] = choose(scores, args.tolerance)
        report["kinds"][KINDS[kind]] = {"seeds": seeds, "sweep": rows, "chosen": chosen[kind]}
        print(f"{KINDS[kind]}: presence bias {chosen[kind]:+.1f}", flush=True)

    model.config = dataclasses.replace(model.config, presence_bias_t=chosen["t"], presence_bias_z=chosen["z"])
    meta = torch.load(source, map_location="cpu", weights_only=True)
    # the checkpoint's own notes (e.g. averaged_from); a bare state dict has only tensors
    keep = {k: v for k, v in meta.items() if k != "config" and isinstance(v, str)}
    export_model(model, args.output, **keep, presence_calibrated_by="factory/calibrate_presence.py")
    report["written"] = str(args.output)
    args.out.write_text(json.dumps(rounded(report), indent=1) + "\n")
    print(f"wrote {args.output} (t {chosen['t']:+.1f}, z {chosen['z']:+.1f}) and {args.out}")


if __name__ == "__main__":
    main()
