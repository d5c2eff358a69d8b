"""Print the measured parity of our image path against official fixtures.

    .venv/bin/python benchmarks/parity_report.py tests/fixtures/small_sam2.1 [DIR ...]

Each DIR is a fixture made by tests/fixtures/make_fixtures.py (small ones are committed;
a full-size one is made with ``--config sam2.1_hiera_tiny --out DIR``). For every prompt
case it prints the smallest mask IoU, the largest |difference| of the low-res logits,
of the full-size logits and of the IoU scores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from common import REPO

sys.path.insert(0, str(REPO))
from tests.parity import mask_iou  # noqa: E402

from napari_sam2 import ImagePredictor, load_model  # noqa: E402

CASES = ("point", "points_neg", "box", "box_point", "refine", "point_single")


def report(d: Path) -> None:
    predictor = ImagePredictor(load_model(d / "checkpoint.pt", config=d / "config.json"))
    data = np.load(d / "image.npz")
    predictor.set_image(data["image"])
    print(f"\n{d.name}: image {data['image'].shape}, model {predictor.model.config.name}")
    print(f"{'case':14s} {'min mask IoU':>12s} {'max|dlowres|':>12s} {'max|dlogits|':>12s} {'max|diou|':>10s}")
    for case in CASES:
        get = lambda k: data[f"{case}_{k}"] if f"{case}_{k}" in data.files else None  # noqa: E731
        kw = dict(
            point_coords=get("point_coords"),
            point_labels=get("point_labels"),
            box=get("box"),
            mask_input=get("mask_input"),
            multimask_output=bool(data[f"{case}_multimask"]),
        )
        masks, ious, low = predictor.predict(**kw)
        logits, _, _ = predictor.predict(**kw, return_logits=True)
        miou = min(mask_iou(a, b) for a, b in zip(masks, data[f"{case}_masks"]))
        print(
            f"{case:14s} {miou:12.6f} {np.abs(low - data[f'{case}_low_res']).max():12.2e} "
            f"{np.abs(logits - data[f'{case}_logits']).max():12.2e} {np.abs(ious - data[f'{case}_ious']).max():10.2e}"
        )


if __name__ == "__main__":
    torch.set_flush_denormal(True)
    for arg in sys.argv[1:] or [str(REPO / "tests" / "fixtures" / "small_sam2.1"), str(REPO / "tests" / "fixtures" / "small_sam2.0")]:
        report(Path(arg))
