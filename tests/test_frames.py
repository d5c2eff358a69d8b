"""FrameSource: lazy reading from numpy / zarr / dask / tiff memmap, one stack-wide window, bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from napari_sam2.engine.frames import FrameIndexError, FrameSource
from napari_sam2.engine.preprocess import percentile_window, to_model_input
from napari_sam2.errors import InputError

SIZE = 64  # model input side used in these tests (small = fast)


class CountingArray:
    """A duck-typed array that records every ``__getitem__`` key and refuses whole-array reads."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.keys: list[Any] = []

    def __getitem__(self, key: Any) -> np.ndarray:
        self.keys.append(key)
        return self._data[key]

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise AssertionError("the whole array was read")


def _stack(kind: str, t: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uint16":
        data = rng.integers(100, 4000, (t, 40, 50)).astype(np.uint16)
        data += (np.arange(t) * 300).astype(np.uint16)[:, None, None]  # brightness drifts along the stack
        return data
    if kind == "uint8_rgb":
        return rng.integers(0, 256, (t, 40, 50, 3), dtype=np.uint8)
    if kind == "float32_2ch":
        return rng.normal(0.0, 1.0, (t, 40, 50, 2)).astype(np.float32)
    raise ValueError(kind)


def _backend(name: str, data: np.ndarray, tmp_path: Path) -> Any:
    if name == "numpy":
        return data
    if name == "zarr":
        zarr = pytest.importorskip("zarr")
        z = zarr.create_array(store=str(tmp_path / "stack.zarr"), shape=data.shape, chunks=(1, *data.shape[1:]), dtype=data.dtype)
        z[:] = data
        return zarr.open_array(str(tmp_path / "stack.zarr"), mode="r")
    if name == "dask":
        da = pytest.importorskip("dask.array")
        return da.from_array(data, chunks=(1, *data.shape[1:]))
    if name == "tiff_memmap":
        tifffile = pytest.importorskip("tifffile")
        tifffile.imwrite(tmp_path / "stack.tif", data)
        return tifffile.memmap(tmp_path / "stack.tif", mode="r")
    raise ValueError(name)


# ---------------------------------------------------------------- backends
@pytest.mark.parametrize("kind", ["uint16", "uint8_rgb", "float32_2ch"])
def test_numpy_zarr_dask_and_tiff_memmap_give_identical_model_inputs(kind: str, tmp_path: Path) -> None:
    data = _stack(kind)
    ref = FrameSource(data)
    for name in ("zarr", "dask", "tiff_memmap"):
        src = FrameSource(_backend(name, data, tmp_path))
        assert src.shape == ref.shape and src.dtype == ref.dtype and src.hw == (40, 50)
        assert (src.window is None) == (ref.window is None)
        if ref.window is not None:
            np.testing.assert_array_equal(src.window, ref.window)
        for t in (0, 3, 5):
            np.testing.assert_array_equal(src.frame(t), data[t])
            assert torch.equal(src.model_input(t, SIZE), ref.model_input(t, SIZE))
        assert src.fingerprint() == ref.fingerprint()


def test_construction_and_one_frame_read_a_bounded_number_of_frames() -> None:
    data = _stack("uint16", t=200)
    proxy = CountingArray(data)
    src = FrameSource(proxy)
    assert len(proxy.keys) <= 16  # the window sample
    assert all(isinstance(k, int) for k in proxy.keys)  # one frame per read, never a slab
    proxy.keys.clear()
    src.model_input(5, SIZE)
    assert proxy.keys == [5]
    assert len(src) == 200


def test_uint8_stack_reads_only_the_first_frame_at_construction() -> None:
    proxy = CountingArray(_stack("uint8_rgb", t=50))
    FrameSource(proxy)
    assert proxy.keys == [0]


# ---------------------------------------------------------------- intensity window
def test_uint8_rgb_gets_exactly_the_official_preprocessing() -> None:
    data = _stack("uint8_rgb")
    src = FrameSource(data)
    assert src.window is None
    assert torch.equal(src.model_input(2, SIZE), to_model_input(data[2], SIZE))


def test_one_window_for_the_whole_stack_from_percentiles_of_all_frames() -> None:
    data = _stack("uint16", t=8)  # <= 16 frames of small size: every pixel is sampled
    src = FrameSource(data)
    expected = np.percentile(data.astype(np.float64), (1.0, 99.8))
    np.testing.assert_allclose(src.window, [expected])
    for t in (0, 7):  # brightness drifts, yet both frames use the same window
        assert torch.equal(src.model_input(t, SIZE), to_model_input(data[t], SIZE, window=src.window))


def test_single_frame_stack_matches_the_image_predictor_preprocessing() -> None:
    data = _stack("float32_2ch", t=1)
    src = FrameSource(data)
    np.testing.assert_array_equal(src.window, percentile_window(data[0]))
    assert torch.equal(src.model_input(0, SIZE), to_model_input(data[0], SIZE))


def test_large_frames_are_subsampled_for_the_window() -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 10000, (16, 600, 600)).astype(np.uint16)  # 16 x 360k px > 4M budget
    win = FrameSource(data).window
    full = np.percentile(data.astype(np.float64), (1.0, 99.8))
    np.testing.assert_allclose(win[0], full, rtol=0.02)


def test_given_window_and_percentiles_are_used() -> None:
    data = _stack("float32_2ch")
    src = FrameSource(data, window=[-1.0, 1.0])
    np.testing.assert_array_equal(src.window, [[-1.0, 1.0], [-1.0, 1.0]])
    narrow = FrameSource(data, percentiles=(10.0, 90.0))
    np.testing.assert_allclose(narrow.window[:, 1], np.percentile(data.reshape(-1, 2), 90.0, axis=0))
    assert FrameSource(data > 0).window.tolist() == [[0.0, 1.0], [0.0, 1.0]]  # bool: fixed (0, 1)


def test_channel_axis_moves_channels_last() -> None:
    data = _stack("float32_2ch")
    tchw = np.ascontiguousarray(np.moveaxis(data, 3, 1))
    src = FrameSource(tchw, channel_axis=1)
    assert src.shape == data.shape and src.channels == 2
    assert torch.equal(src.model_input(4, SIZE), FrameSource(data).model_input(4, SIZE))


# ---------------------------------------------------------------- fingerprint
def test_fingerprint_is_stable_and_sees_shape_data_and_window() -> None:
    data = _stack("uint16")
    fp = FrameSource(data).fingerprint()
    assert fp == FrameSource(data.copy()).fingerprint() and len(fp) == 32
    changed = data.copy()
    changed[0, 0, 0] += 1
    assert FrameSource(changed, window=FrameSource(data).window).fingerprint() != fp
    assert FrameSource(data[:5]).fingerprint() != fp
    assert FrameSource(data, window=[0, 1000]).fingerprint() != fp


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((4, 5)), "3-D"),
        (np.zeros((2, 4, 5, 3, 1)), "3-D"),
        (np.zeros((0, 4, 5)), "no frames"),
        (np.zeros((3, 0, 5)), "empty"),
        (np.zeros((3, 4, 5, 5)), "5 channels"),
        (np.zeros((3, 4, 5), dtype=object), "numeric"),
        (np.zeros((3, 4, 5), dtype="U1"), "numeric"),
        (np.zeros((3, 4, 5), dtype=np.complex64), "numeric"),
        ([[[1, 2]]], ".shape"),
    ],
)
def test_bad_stacks_raise_clear_input_errors(frames: Any, match: str) -> None:
    with pytest.raises(InputError, match=match):
        FrameSource(frames)


def test_nan_in_the_first_frame_is_caught_at_construction() -> None:
    data = np.ones((40, 8, 8), dtype=np.float32)
    data[0, 3, 3] = np.nan
    with pytest.raises(InputError, match="frame 0 contains NaN"):
        FrameSource(data, window=[0, 1])


def test_nan_in_a_later_frame_is_caught_when_read_and_names_it() -> None:
    data = np.ones((40, 8, 8), dtype=np.float32)
    data[1, 2, 2] = np.inf  # frame 1 is not among the window's sampled frames
    src = FrameSource(data)
    with pytest.raises(InputError, match="frame 1 contains NaN or infinite"):
        src.model_input(1, SIZE)
    src.model_input(2, SIZE)  # the source stays usable


@pytest.mark.parametrize("t", [-1, 6, 100, 1.0, True, "0"])
def test_frame_index_out_of_range_names_the_valid_range(t: Any) -> None:
    src = FrameSource(_stack("uint16"))
    with pytest.raises(FrameIndexError, match=r"0\.\.5"):
        src.frame(t)
    assert issubclass(FrameIndexError, IndexError) and issubclass(FrameIndexError, InputError)
    assert src.frame(np.int64(5)).shape == (40, 50)


@pytest.mark.parametrize("window", [[1.0], [[0, 1], [0, 1], [0, 1]], [0, np.nan]])
def test_bad_window_is_refused(window: Any) -> None:
    with pytest.raises(InputError, match="window"):
        FrameSource(_stack("float32_2ch"), window=window)
