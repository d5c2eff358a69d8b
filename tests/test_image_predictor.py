"""ImagePredictor behaviour beyond parity: microscopy inputs and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2 import ImagePredictor, load_model
from napari_sam2.engine.preprocess import to_model_input, to_unit_rgb
from napari_sam2.errors import InputError

from .parity import FIXTURES


@pytest.fixture(scope="module")
def predictor() -> ImagePredictor:
    d = FIXTURES / "small_sam2.1"
    p = ImagePredictor(load_model(d / "checkpoint.pt", config=d / "config.json"))
    rng = np.random.default_rng(0)
    p.set_image(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    return p


# ---------------------------------------------------------------- normalisation
def test_uint8_rgb_is_divided_by_255_exactly():
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    unit = to_unit_rgb(img)
    assert unit.shape == (3, 2, 3)
    np.testing.assert_array_equal(unit.numpy(), img.transpose(2, 0, 1).astype(np.float32) / 255)


def test_uint16_uses_robust_percentiles_and_ignores_hot_pixels():
    rng = np.random.default_rng(1)
    img = rng.integers(100, 1100, (100, 100)).astype(np.uint16)
    img[0, 0] = 65535  # one saturated pixel must not squash the contrast
    unit = to_unit_rgb(img).numpy()
    assert unit.shape == (3, 100, 100)
    np.testing.assert_array_equal(unit[0], unit[1])  # grayscale copied to R, G, B
    lo, hi = np.percentile(img.astype(np.float64), (1.0, 99.8))
    expected = np.clip((img.astype(np.float32) - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(unit[0], expected, atol=1e-6)
    assert 0.45 < unit[0].mean() < 0.55  # uniform data stays spread over [0, 1]


def test_fixed_window_overrides_percentiles():
    img = np.array([[0.0, 5.0], [10.0, 20.0]], dtype=np.float32)
    unit = to_unit_rgb(img, window=np.array([0.0, 10.0])).numpy()
    np.testing.assert_allclose(unit[0], [[0.0, 0.5], [1.0, 1.0]])


def test_constant_image_becomes_zero_not_nan():
    unit = to_unit_rgb(np.full((8, 8), 7.0, dtype=np.float32))
    assert torch.isfinite(unit).all() and unit.abs().max() == 0


def test_two_channels_map_to_red_and_green():
    img = np.zeros((4, 4, 2), dtype=np.uint8)
    img[..., 0], img[..., 1] = 255, 51
    unit = to_unit_rgb(img).numpy()
    np.testing.assert_allclose(unit[:, 0, 0], [1.0, 0.2, 0.0])


def test_rgba_drops_alpha():
    img = np.zeros((4, 4, 4), dtype=np.uint8)
    img[..., 3] = 255
    assert to_unit_rgb(img).abs().max() == 0


def test_grayscale_uint16_gives_a_mask(predictor):
    rng = np.random.default_rng(2)
    img = (rng.random((50, 70)) * 4000).astype(np.uint16)
    predictor.set_image(img)
    masks, ious, low = predictor.predict(point_coords=[[30, 20]], point_labels=[1])
    assert masks.shape == (3, 50, 70) and ious.shape == (3,) and low.shape == (3, 64, 64)
    assert predictor.original_size == (50, 70)


def test_model_input_is_square_and_normalised():
    x = to_model_input(np.full((10, 30, 3), 255, dtype=np.uint8), 64)
    assert x.shape == (1, 3, 64, 64)
    std = torch.tensor([0.229, 0.224, 0.225])
    mean = torch.tensor([0.485, 0.456, 0.406])
    torch.testing.assert_close(x[0, :, 5, 5], (1 - mean) / std)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4,), np.uint8), "2-D"),
        (np.zeros((2, 4, 4, 3), np.uint8), "4-D"),
        (np.zeros((8, 8, 7), np.uint16), "7 channels"),
        (np.zeros((0, 8), np.uint8), "empty"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    ],
)
def test_bad_images_are_rejected_with_a_clear_message(predictor, image, message):
    with pytest.raises(InputError, match=message):
        predictor.set_image(image)


def test_predict_before_set_image_is_an_error():
    d = FIXTURES / "small_sam2.1"
    p = ImagePredictor(load_model(d / "checkpoint.pt", config=d / "config.json"))
    with pytest.raises(RuntimeError, match="set_image"):
        p.predict(point_coords=[[1, 1]], point_labels=[1])


@pytest.fixture
def ready(predictor) -> ImagePredictor:
    predictor.set_image(np.zeros((60, 80, 3), np.uint8))
    return predictor


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(point_coords=[[85, 10]], point_labels=[1]), "outside the image"),
        (dict(point_coords=[[10, -3]], point_labels=[1]), "outside the image"),
        (dict(point_coords=[[10, 10], [20, 20]], point_labels=[1]), "2 points"),
        (dict(point_coords=[[10, 10]], point_labels=[2]), "1 \\(object\\) or 0"),
        (dict(point_coords=[[10, 10]]), "together"),
        (dict(point_coords=np.zeros((0, 2)), point_labels=[]), "empty"),
        (dict(point_coords=[[10, 10, 1]], point_labels=[1]), "\\(N, 2\\)"),
        (dict(point_coords=[[np.nan, 10]], point_labels=[1]), "NaN"),
        (dict(box=[30, 10, 20, 40]), "x0 < x1"),
        (dict(box=[10, 10, 20]), "4 numbers"),
        (dict(box=[10, 10, 200, 40]), "outside the image"),
        (dict(mask_input=np.zeros((1, 32, 32))), "shape \\(1, 64, 64\\)"),
        (dict(), "no prompts"),
    ],
)
def test_bad_prompts_are_rejected_with_a_clear_message(ready, kwargs, message):
    with pytest.raises(InputError, match=message):
        ready.predict(**kwargs)


def test_points_on_the_image_edge_are_accepted(ready):
    masks, _, _ = ready.predict(point_coords=[[79.4, 59.4], [-0.5, 0]], point_labels=[1, 0])
    assert masks.shape[1:] == (60, 80)


def test_a_failed_predict_keeps_the_image(ready):
    with pytest.raises(InputError):
        ready.predict(point_coords=[[500, 500]], point_labels=[1])
    assert ready.is_image_set
    masks, _, _ = ready.predict(point_coords=[[10, 10]], point_labels=[1])
    assert masks.shape == (3, 60, 80)


def test_a_rejected_image_keeps_the_previous_one(ready):
    with pytest.raises(InputError):
        ready.set_image(np.zeros((3,), np.uint8))
    assert ready.original_size == (60, 80)
