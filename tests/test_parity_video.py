"""VideoSession reproduces the official SAM2VideoPredictor on the same weights and frames.

Scenario (tests/fixtures/make_video_fixtures.py): object 1 by a click and object 2 by a
box on frame 0, forward propagation, a positive+negative correction of object 1 on
frame 6, forward re-propagation, backward propagation from the last frame; once with
``corrections_as_conditioning`` off (prefix ``a_``) and once on (``b_``). Every yielded
mask must match with IoU >= 0.98 (mean >= 0.995), in the same frame order with the same
object ids. The official run has no hole filling on CPU, so fill_hole_area=0 here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_sam2 import load_model
from napari_sam2.engine.session import VideoSession

from .parity import fixture_dirs, mask_iou

VIDEO_FIXTURES = [d for d in fixture_dirs() if (d / "video.npz").exists()]


def _compare(name: str, results, data, key: str, ious: list[float]) -> None:
    frames = data[f"{key}_frames"]
    assert [r.frame for r in results] == frames.tolist(), f"{name}: frame order"
    ref_masks = data[f"{key}_masks"]
    for r, ref in zip(results, ref_masks):
        assert r.obj_ids == data[f"{key}_obj_ids"].tolist(), f"{name}: object ids"
        for o in range(ref.shape[0]):
            iou = mask_iou(r.masks[o], ref[o])
            ious.append(iou)
            assert iou >= 0.98, f"{name}: frame {r.frame} object {r.obj_ids[o]} IoU {iou:.4f}"
    # With random weights two objects' masks can look alike on tracked frames, so masks
    # alone would not notice swapped memories: the logits must agree closely too.
    if f"{key}_lowres" in data.files:
        ref_logits = F.interpolate(torch.from_numpy(data[f"{key}_lowres"]), size=results[0].logits.shape[1:],
                                   mode="bilinear", align_corners=False).numpy()  # fmt: skip
    elif f"{key}_logits" in data.files:
        ref_logits = data[f"{key}_logits"].astype(np.float32)
    else:
        return
    for r, ref in zip(results, ref_logits):
        err = np.abs(r.logits - ref).max()
        assert err <= 0.05, f"{name}: frame {r.frame} max |logit difference| {err:.3g}"


@pytest.fixture(scope="module", params=VIDEO_FIXTURES, ids=lambda p: p.name)
def fixture(request):
    d = request.param
    return load_model(d / "checkpoint.pt", config=d / "config.json"), np.load(d / "video.npz")


@pytest.mark.parametrize("prefix, as_cond", [("a_", False), ("b_", True)], ids=["official-default", "corrections-as-cond"])
def test_video_session_matches_official_predictor(fixture, prefix, as_cond):
    model, data = fixture
    session = VideoSession(model, data["frames"], fill_hole_area=0, corrections_as_conditioning=as_cond)
    ious: list[float] = []
    t = int(data["T"])
    steps = [
        ("add1", lambda: [session.add_prompt(0, 1, points=data["add1_points"], labels=data["add1_labels"])]),
        ("add2", lambda: [session.add_prompt(0, 2, box=data["add2_box"])]),
        ("prop1", lambda: list(session.propagate())),
        ("corr", lambda: [session.add_prompt(6, 1, points=data["corr_points"], labels=data["corr_labels"])]),
        ("prop2", lambda: list(session.propagate())),
        ("back", lambda: list(session.propagate(start=t - 1, reverse=True))),
    ]
    for step, run in steps:
        _compare(f"{prefix}{step}", run(), data, f"{prefix}{step}", ious)
    assert np.mean(ious) >= 0.995, f"mean IoU {np.mean(ious):.4f}"
    session.close()
