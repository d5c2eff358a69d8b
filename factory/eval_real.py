"""A model on REAL labelled microscopy that the project did not make (validation only).

The images come from files shipped inside PyPI packages (``benchmarks/real_data.py``:
stardist's 2018 Data Science Bowl nuclei field, CC0; laptrack's C2C12 frames, CC BY 4.0);
docs/model.md names sources and licences. Never train or choose training settings on
them: they are the check of how a model does on images nobody here generated.

Protocol: SAM's one click per object (``evaluate.evaluate_clicks``) and the classical
Otsu + watershed baseline on the same objects and clicks (``evaluate.baseline_clicks``),
as ``factory/eval_cells.py`` does on the synthetic test set.

    python -m factory.eval_real [--model napari-sam2-cells] [--out factory/results/real_eval.json]

The record carries its lineage: the commit, the command, the model and the sha256 of its
weights file, and of every image used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="napari-sam2-cells", help="model name or checkpoint path")
    ap.add_argument("--config", help="SAM2Config JSON for a checkpoint that is no official variant")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "factory" / "results" / "real_eval.json")
    args = ap.parse_args(argv)

    import torch

    from napari_sam2 import load_model
    from napari_sam2.evaluate.clicks import baseline_clicks, evaluate_clicks
    from napari_sam2.weights import BUNDLED_DIR

    sys.path.insert(0, str(REPO / "benchmarks"))
    from real_data import c2c12_frames, dsb2018_nuclei

    torch.set_num_threads(args.threads)
    model = load_model(args.model, config=args.config)
    weights = Path(args.model) if Path(args.model).exists() else next(BUNDLED_DIR.glob(f"{args.model}*"), None)
    record: dict = {
        "command": " ".join(["python -m factory.eval_real", *(argv if argv is not None else sys.argv[1:])]),
        "commit": _commit(),
        "model": args.model,
        "weights_sha256": _sha256(weights.read_bytes()) if weights is not None and weights.is_file() else None,
        "protocol": "one positive click per object at its interior-most pixel, best of 3 masks by predicted IoU",
        "datasets": {},
    }
    print(f"{'dataset':22s} {'objects':>7s}  {'model IoU':>9s} {'>=0.85':>7s}  {'watershed':>9s} {'>=0.85':>7s}")
    for name, recs in (("dsb2018_nuclei", [dsb2018_nuclei()]), ("c2c12_frames", c2c12_frames())):
        images, labels = [r.image for r in recs], [r.labels for r in recs]
        ours, base = evaluate_clicks(model, images, labels), baseline_clicks(images, labels)
        record["datasets"][name] = {
            "source": recs[0].source,
            "licence": recs[0].licence,
            "images_sha256": [_sha256(np.ascontiguousarray(i).tobytes()) for i in images],
            "objects": ours["count"],
            "model": {"mean_iou": ours["mean_iou"], "share_085": ours["share_085"]},
            "watershed": {"mean_iou": base["mean_iou"], "share_085": base["share_085"]},
        }
        print(f"{name:22s} {ours['count']:7d}  {ours['mean_iou']:9.3f} {ours['share_085']:7.3f}  "
              f"{base['mean_iou']:9.3f} {base['share_085']:7.3f}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
