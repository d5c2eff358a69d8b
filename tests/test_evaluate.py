"""The evaluation metrics: click rule, IoU rule, correction rule, classical baseline, and
the model evaluations run end to end on a tiny random-weight model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_sam2.model import SAM2
from napari_sam2.evaluate import (
    baseline_clicks,
    click_point,
    correction_click,
    evaluate_clicks,
    evaluate_tracking,
    lost_frames,
    mask_iou,
)
from napari_sam2.evaluate.tracking import _largest_objects

from .parity import SMALL_CONFIG


def _disk(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _disks_image(shape=(128, 128), centres=((30, 30), (30, 95), (95, 40), (90, 100)), r=13.0, seed=0):
    """Separated bright disks on a dark, noisy background, and their labels."""
    labels = np.zeros(shape, dtype=np.uint16)
    for k, (cy, cx) in enumerate(centres, start=1):
        labels[_disk(shape, cy, cx, r)] = k
    rng = np.random.default_rng(seed)
    clean = ndimage.gaussian_filter(np.where(labels > 0, 1000.0, 100.0), 1.0)
    image = np.clip(clean + rng.normal(0, 15, shape), 0, None).astype(np.uint16)
    return image, labels


# ---------------------------------------------------------------- click and IoU rules
def test_click_point_is_the_centre_of_the_deepest_pixel():
    mask = _disk((64, 64), 20, 37, 9)
    x, y = click_point(mask)
    assert (x, y) == (37.5, 20.5)
    row, col = int(y), int(x)
    assert mask[row, col]
    dist = ndimage.distance_transform_edt(mask)
    assert dist[row, col] == dist.max()


def test_click_point_picks_the_larger_part_and_treats_the_border_as_outside():
    mask = np.zeros((40, 60), dtype=bool)
    mask[5:10, 5:10] = True  # small square
    mask[20:35, 30:45] = True  # larger square, its centre (27, 37)
    assert click_point(mask) == (37.5, 27.5)
    edge = np.zeros((20, 20), dtype=bool)
    edge[:, :7] = True  # touches the left border: the deepest column is 3, not 6
    assert click_point(edge)[0] == 3.5
    with pytest.raises(ValueError):
        click_point(np.zeros((5, 5), dtype=bool))


def test_mask_iou_counts_absent_objects_by_whether_anything_was_predicted():
    empty = np.zeros((8, 8), dtype=bool)
    some = empty.copy()
    some[2:4, 2:4] = True
    assert mask_iou(empty, empty) == 1.0  # absent and predicted empty
    assert mask_iou(some, empty) == 0.0  # absent but predicted
    assert mask_iou(empty, some) == 0.0  # present but missed
    half = empty.copy()
    half[2:4, 2:6] = True
    assert mask_iou(some, half) == pytest.approx(0.5)


def test_correction_click_goes_to_the_larger_error():
    gt = np.zeros((40, 40), dtype=bool)
    gt[10:30, 10:30] = True
    under = gt.copy()
    under[10:30, 20:30] = False  # right half missed
    (x, y), label = correction_click(under, gt)
    assert label == 1 and gt[int(y), int(x)] and not under[int(y), int(x)]
    over = gt.copy()
    over[10:30, 30:38] = True  # spilled to the right, nothing missed
    (x, y), label = correction_click(over, gt)
    assert label == 0 and over[int(y), int(x)] and not gt[int(y), int(x)]
    with pytest.raises(ValueError):
        correction_click(gt, gt)


def test_largest_objects_by_volume_skip_objects_too_small_on_every_slice():
    labels = np.zeros((5, 32, 32), dtype=np.uint16)
    labels[:, :4, :4] = 1  # 16 px on 5 slices: volume 80, too small on each
    labels[:2, 10:20, 10:20] = 2  # volume 200
    labels[:, 22:30, 22:30] = 3  # volume 320
    assert _largest_objects(labels, 3, min_area=64) == [3, 2]
    assert _largest_objects(labels, 1, min_area=64) == [3]


# ---------------------------------------------------------------- classical baseline
@pytest.mark.parametrize("inverted", [False, True])
def test_baseline_segments_separated_disks_under_each_click(inverted):
    image, labels = _disks_image()
    if inverted:
        image = (image.max() - image + 100).astype(np.uint16)  # dark disks on a bright background
    r = baseline_clicks([image], [labels])
    assert r["count"] == 4 and r["objects"] == [[0, 1], [0, 2], [0, 3], [0, 4]]
    assert min(r["iou"]) > 0.9
    assert r["mean_iou"] == pytest.approx(np.mean(r["iou"]))
    assert r["share_085"] == 1.0


# ---------------------------------------------------------------- model evaluations, tiny model
@pytest.fixture(scope="module")
def tiny_model() -> SAM2:
    """Random weights, except that the object is always judged present, so that masks are
    not all empty and the per-frame numbers differ from frame to frame."""
    torch.manual_seed(0)
    model = SAM2(SMALL_CONFIG).eval().requires_grad_(False)
    model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += 30.0
    return model


def test_evaluate_clicks_runs_end_to_end(tiny_model):
    a, la = _disks_image((96, 96), centres=((25, 25), (70, 65)), r=12)
    b, lb = _disks_image((96, 96), centres=((48, 48),), r=4)  # one object below min_area
    r = evaluate_clicks(tiny_model, [a, b], [la, lb])
    assert r["count"] == 2 and r["objects"] == [[0, 1], [0, 2]]
    assert len(r["iou"]) == 2 and all(0.0 <= v <= 1.0 for v in r["iou"])
    assert r["mean_iou"] == pytest.approx(np.mean(r["iou"]))
    assert r["share_085"] == pytest.approx(np.mean(np.asarray(r["iou"]) >= 0.85))
    assert evaluate_clicks(tiny_model, [b], [lb])["count"] == 0


def _moving_stack(n: int = 5, shape=(64, 64)) -> tuple[np.ndarray, np.ndarray]:
    """Two disks moving right; disk 2 leaves the field after frame 2 (absent on 3, 4)."""
    labels = np.zeros((n, *shape), dtype=np.uint16)
    for t in range(n):
        labels[t][_disk(shape, 20, 12 + 3 * t, 9)] = 1
        if t < 3:
            labels[t][_disk(shape, 46, 40 + 3 * t, 8)] = 2
    image = np.where(labels > 0, 900, 80).astype(np.uint16)
    return image, labels


def test_evaluate_tracking_scores_every_frame_and_objects_independently(tiny_model):
    image, labels = _moving_stack()
    r = evaluate_tracking(tiny_model, [(image, labels)], objects_per_stack=2)
    assert r["count"] == 2 and r["frames"] == [5]
    assert [o["label"] for o in r["objects"]] == [1, 2]
    two = r["objects"][1]
    assert two["frames_present"] == 3 and two["click_frame"] == 0
    for o in r["objects"]:
        assert len(o["per_frame_before"]) == 5 and len(o["per_frame_after"]) == 5
        assert o["before"] == pytest.approx(np.mean(o["per_frame_before"]))
        assert o["after"] == pytest.approx(np.mean(o["per_frame_after"]))
        if o["correction"] is None:
            assert o["per_frame_before"] == [1.0] * 5
        else:
            assert o["correction"]["frame"] == int(np.argmin(o["per_frame_before"]))
    # frames where object 2 is absent score exactly 1 or 0
    assert all(v in (0.0, 1.0) for v in two["per_frame_before"][3:])
    assert two["lost_before"]["spilled"] == sum(v == 0.0 for v in two["per_frame_before"][3:])
    assert r["mean_before"] == pytest.approx(np.mean([o["before"] for o in r["objects"]]))
    for key in ("lost_before", "lost_after"):
        assert r[key] == {k: sum(o[key][k] for o in r["objects"]) for k in r["objects"][0][key]}
        assert set(r[key]) == {"dropped", "spilled", "spilled_pixels", "spilled_on_others"}

    # tracking object 2 alone gives the same numbers: objects are tracked and scored independently
    alone = evaluate_tracking(tiny_model, [(image, np.where(labels == 2, labels, 0))], objects_per_stack=2)
    assert alone["count"] == 1
    assert alone["objects"][0]["per_frame_before"] == two["per_frame_before"]
    assert alone["objects"][0]["per_frame_after"] == two["per_frame_after"]

    without = evaluate_tracking(tiny_model, [(image, labels)], objects_per_stack=1, correction=False)
    assert without["objects"][0]["per_frame_before"] == r["objects"][0]["per_frame_before"]
    assert without["mean_after"] is None and without["objects"][0]["correction"] is None
    assert r["division"] is None and all(o["past_division"] == [] for o in r["objects"])

    # with divisions: a bud born next to object 1 on frame 3 (the click is on frame 0)
    budded = labels.copy()
    budded[3:][(budded[3:] == 0) & np.roll(budded[3:] == 1, 8, axis=2)] = 3
    split = evaluate_tracking(tiny_model, [(image, budded)], objects_per_stack=1, correction=False, divisions=True)
    one = split["objects"][0]
    assert one["label"] == 1 and one["past_division"] == [3, 4]
    d = split["division"]
    assert (d["frames_past"], d["frames_other"]) == (2, 3)
    assert d["mean_before_past"] == pytest.approx(np.mean(one["per_frame_before"][3:]))
    assert d["mean_before_other"] == pytest.approx(np.mean(one["per_frame_before"][:3]))


def test_lost_frames_counts_dropped_and_spilled_frames():
    gt = np.zeros((5, 6, 6), bool)
    gt[:3, 1:4, 1:4] = True  # present on frames 0-2
    pred = np.zeros_like(gt)
    pred[0, 1:3, 1:3] = True  # 0: partly right (neither)
    pred[3, 0, 0] = True  # 1, 2: empty while present (dropped); 3: a pixel while absent (spilled)
    assert lost_frames(pred, gt) == {"dropped": 2, "spilled": 1}
    assert lost_frames(gt, gt) == {"dropped": 0, "spilled": 0}
    pred[4, 4:6, 4:6] = True  # frame 4: 4 pixels, 2 of them on another object
    others = np.zeros_like(gt)
    others[3:, 4, :] = True
    counts = lost_frames(pred, gt, others)
    assert counts == {"dropped": 2, "spilled": 2, "spilled_pixels": 5, "spilled_on_others": 2}


def test_frames_past_division_are_those_a_division_separates_from_the_click():
    from napari_sam2.synthetic import divisions
    from napari_sam2.evaluate import frames_past_division

    labels = np.zeros((8, 40, 40), dtype=np.uint16)
    labels[:, 5:20, 5:20] = 1
    labels[4:, 5:20, 14:20] = 3  # frame 4: 1 divides, 3 buds off at her side
    labels[:, 30:36, 30:36] = 2
    labels[5:, 0:4, 30:36] = 4  # frame 5: a cell enters the field, touching nobody
    assert divisions(labels) == [(4, 3, 1)]
    np.testing.assert_array_equal(frames_past_division(labels, 1, 2), np.arange(8) >= 4)
    np.testing.assert_array_equal(frames_past_division(labels, 1, 6), np.arange(8) < 4)
    np.testing.assert_array_equal(frames_past_division(labels, 3, 6), np.arange(8) < 4)  # before the bud's birth
    assert not frames_past_division(labels, 2, 0).any() and not frames_past_division(labels, 4, 6).any()


def test_bootstrap_interval_resamples_whole_stacks():
    from napari_sam2.evaluate import bootstrap_interval

    # one stack: no spread to estimate
    assert bootstrap_interval([0.2, 0.9], [0, 0]) is None
    # equal stacks: the interval is the mean itself
    lo, hi = bootstrap_interval([0.5, 0.7, 0.5, 0.7], [0, 0, 1, 1])
    assert lo == pytest.approx(0.6) and hi == pytest.approx(0.6)
    # stacks 0.0 and 1.0: the interval spans most of [0, 1] and holds the mean 0.5
    values, groups = [0.0] * 3 + [1.0] * 3, [0] * 3 + [1] * 3
    lo, hi = bootstrap_interval(values, groups)
    assert lo < 0.2 and hi > 0.8
    # tracks of one stack move together: as two stacks of three tracks, the same values
    # give a wider interval than as six independent stacks
    lo6, hi6 = bootstrap_interval(values, list(range(6)))
    assert hi6 - lo6 < hi - lo
    # the mean of a draw is over its tracks, as mean_before is: a one-track stack at 1.0
    # drawn with a three-track stack at 0.0 gives 0.25 (a mean of stack means would give
    # 0.5), and that mixed draw is the median one
    lo, hi = bootstrap_interval([1.0, 0.0, 0.0, 0.0], [0, 1, 1, 1], level=0.0)
    assert lo == pytest.approx(0.25) and hi == pytest.approx(0.25)
    assert bootstrap_interval([0.1, 0.2, 0.3], [0, 1, 2]) == bootstrap_interval([0.1, 0.2, 0.3], [0, 1, 2])
    with pytest.raises(ValueError, match="same length"):
        bootstrap_interval([0.1, 0.2], [0])


def test_object_speed_is_the_mean_step_of_the_centroid_between_present_frames():
    from napari_sam2.evaluate import object_speed

    gt = np.zeros((5, 40, 40), bool)
    gt[0, 10:14, 10:14] = True  # centroid (11.5, 11.5)
    gt[1, 13:17, 14:18] = True  # moved (3, 4): 5 px
    gt[3, 20:24, 20:24] = True  # frame 2 absent: no step across the gap
    gt[4, 20:24, 21:25] = True  # moved 1 px
    assert object_speed(gt) == pytest.approx(3.0)  # mean of 5 and 1
    assert object_speed(gt[:1]) is None
    assert object_speed(np.zeros((3, 8, 8), bool)) is None
