"""AutomaticMaskGenerator gives the official SAM2AutomaticMaskGenerator's masks on the same weights.

The fixture (``tests/fixtures/amg_small_sam2.1/amg.npz``, made by ``make_amg_fixtures.py``) holds
the official records for one synthetic image in five settings: a plain grid, crop layer 1,
``min_mask_region_area``, ``use_m2m`` and single-mask output, on the ``small_sam2.1`` weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sam2 import load_model
from napari_sam2.engine.automatic import AutomaticMaskGenerator, MaskRecord, label_image, nms
from napari_sam2.errors import InputError

from .parity import mask_iou

FIXTURES = Path(__file__).parent / "fixtures"
WEIGHTS = FIXTURES / "small_sam2.1"
DATA = FIXTURES / "amg_small_sam2.1" / "amg.npz"

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return load_model(WEIGHTS / "checkpoint.pt", config=WEIGHTS / "config.json")


@pytest.fixture(scope="module")
def data():
    return np.load(DATA)


def _reference(data, name: str) -> dict[str, np.ndarray]:
    h, w = data["image"].shape[:2]
    masks = np.unpackbits(data[f"{name}_masks"], axis=1, count=h * w).reshape(-1, h, w).astype(bool)
    keys = ("area", "bbox", "predicted_iou", "stability_score", "point_coords", "crop_box")
    return dict(masks=masks, **{k: data[f"{name}_{k}"] for k in keys})


NAMES = ("grid", "crops", "regions", "m2m", "single")


@pytest.mark.parametrize("name", NAMES)
def test_masks_match_official(model, data, name):
    assert name in list(data["names"])
    settings = json.loads(str(data[f"{name}_settings"]))
    ref = _reference(data, name)
    n = len(ref["masks"])
    assert n >= 2, "a parity on (almost) no masks proves nothing"
    records = AutomaticMaskGenerator(model, **settings).generate(data["image"])
    assert len(records) == n
    for k, r in enumerate(records):  # same order as the official
        assert r.mask.shape == data["image"].shape[:2] and r.mask.dtype == bool
        assert mask_iou(r.mask, ref["masks"][k]) >= 0.99, k
        # measured: identical masks, boxes and points; predicted IoU within 1.2e-7
        assert abs(r.area - int(ref["area"][k])) <= 0.01 * ref["area"][k]
        assert r.area == int(r.mask.sum())
        assert np.abs(np.array(r.bbox) - ref["bbox"][k]).max() <= (0 if r.area == ref["area"][k] else 1)
        assert abs(r.predicted_iou - float(ref["predicted_iou"][k])) <= 1e-5
        assert abs(r.stability_score - float(ref["stability_score"][k])) <= 1e-3
        assert np.abs(r.point_coords[0] - ref["point_coords"][k]).max() <= 1e-4
        assert tuple(r.crop_box) == tuple(ref["crop_box"][k].astype(int))


def test_fixture_covers_the_settings(data):
    """Crop layer 1 gives masks from more than one crop; the settings differ as documented."""
    crops = {tuple(b) for b in data["crops_crop_box"]}
    assert len(crops) >= 2
    assert json.loads(str(data["regions_settings"]))["min_mask_region_area"] > 0
    assert json.loads(str(data["m2m_settings"]))["use_m2m"] is True
    assert json.loads(str(data["single_settings"]))["multimask_output"] is False
    # min_mask_region_area changes the masks (the official post-processing ran)
    assert len(data["regions_area"]) != len(data["grid_area"]) or not np.array_equal(data["regions_area"], data["grid_area"])


def test_constant_and_blank_images_give_no_masks(model):
    gen = AutomaticMaskGenerator(model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert gen.generate(np.zeros((40, 50), dtype=np.uint8)) == []
    assert gen.generate(np.full((40, 50, 3), (10, 200, 30), dtype=np.uint8)) == []
    assert gen.generate(np.full((30, 30), 7.5, dtype=np.float32)) == []


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(points_per_side=0), "points_per_side"),
        (dict(points_per_side=2.5), "points_per_side"),
        (dict(points_per_batch=0), "points_per_batch"),
        (dict(pred_iou_thresh=1.5), "pred_iou_thresh"),
        (dict(pred_iou_thresh=-0.1), "pred_iou_thresh"),
        (dict(stability_score_thresh=float("nan")), "stability_score_thresh"),
        (dict(stability_score_offset=-1.0), "stability_score_offset"),
        (dict(box_nms_thresh=2.0), "box_nms_thresh"),
        (dict(crop_nms_thresh=-0.5), "crop_nms_thresh"),
        (dict(crop_n_layers=-1), "crop_n_layers"),
        (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio"),
        (dict(min_mask_region_area=-3), "min_mask_region_area"),
        (dict(points_per_side=4, crop_n_layers=1, crop_n_points_downscale_factor=8), "crop_n_points_downscale_factor"),
        (dict(use_m2m="yes"), "use_m2m"),
    ],
)
def test_bad_settings_raise_input_error(model, kwargs, word):
    with pytest.raises(InputError) as info:
        AutomaticMaskGenerator(model, **kwargs)
    message = str(info.value)
    assert word in message and "\n" not in message


def test_bad_image_raises_input_error(model):
    gen = AutomaticMaskGenerator(model, points_per_side=2)
    with pytest.raises(InputError):
        gen.generate(np.zeros((0, 10), dtype=np.uint8))
    with pytest.raises(InputError):
        gen.generate(np.zeros((4, 4, 4, 4), dtype=np.uint8))


def _record(mask: np.ndarray) -> MaskRecord:
    ys, xs = np.nonzero(mask)
    box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min()))
    return MaskRecord(mask, int(mask.sum()), box, 0.9, 0.9, np.zeros((1, 2)), (0, 0, *mask.shape[::-1]))


def test_label_image_puts_smaller_objects_on_top():
    big = np.zeros((10, 12), dtype=bool)
    big[1:9, 1:11] = True  # 80 px
    small = np.zeros_like(big)
    small[3:5, 3:6] = True  # 6 px, inside big
    twin_a = np.zeros_like(big)
    twin_a[6:8, 6:9] = True  # 6 px, same area as small
    twin_b = np.zeros_like(big)
    twin_b[7:9, 7:10] = True  # 6 px, overlaps twin_a at [7, 7:9]
    records = [_record(m) for m in (big, small, twin_b, twin_a)]
    labels = label_image(records)
    assert labels.dtype == np.uint32 and labels.shape == (10, 12)
    assert labels[0, 0] == 0
    assert labels[1, 1] == 1  # big where nothing smaller covers it
    assert (labels[small] == 2).all()  # the small mask stays visible on the big one
    assert labels[7, 7] == 3 and labels[7, 8] == 3  # equal areas: the earlier record (twin_b) on top
    assert labels[6, 6] == 4 and labels[8, 9] == 3
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    assert label_image([], (3, 4)).shape == (3, 4)
    with pytest.raises(InputError):
        label_image([])


def test_label_image_of_generated_records(model, data):
    settings = json.loads(str(data["regions_settings"]))
    records = AutomaticMaskGenerator(model, **settings).generate(data["image"])
    labels = label_image(records)
    covered = np.zeros(labels.shape, dtype=bool)
    for r in records:
        covered |= r.mask
    assert np.array_equal(labels > 0, covered)
    for i in np.unique(labels[labels > 0]):
        assert records[i - 1].mask[labels == i].all()  # a label is only where its mask is


def test_nms_keeps_by_score_with_stable_ties():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=torch.float32)
    scores = torch.tensor([0.5, 0.9, 0.5, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]  # 0 and 3 overlap box 1 by IoU 0.68
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 2]  # equal scores keep their order; 3 duplicates 0
    assert nms(boxes, scores, 1.0).tolist() == [1, 0, 2, 3]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
