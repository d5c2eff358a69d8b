"""open_stack: TIFF / zarr / OME-Zarr / .npy inputs opened lazily, any stack axis, channels last."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam2.errors import InputError
from napari_sam2.io._ngff import multiscales, ome
from napari_sam2.io.stacks import open_stack, stack_stem

RNG = np.random.default_rng(3)
STACK = RNG.integers(0, 4000, (5, 12, 16), dtype=np.uint16)


def frames_of(stack) -> np.ndarray:
    return np.stack([stack.frames[t] for t in range(stack.frames.shape[0])])


def test_uncompressed_tiff_is_memory_mapped(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "s.tif", STACK)
    with open_stack(tmp_path / "s.tif") as stack:
        assert isinstance(stack.frames._array, np.memmap)
        assert stack.frames.shape == (5, 12, 16) and stack.label_shape == (5, 12, 16) and stack.label_axes == "zyx"
        np.testing.assert_array_equal(frames_of(stack), STACK)


def test_compressed_tiff_is_read_frame_by_frame_through_zarr(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "c.tif", STACK, compression="zlib")
    with open_stack(tmp_path / "c.tif", axis=2) as stack:  # x as the stack axis
        assert isinstance(stack.frames._array, zarr.Array)
        assert stack.frames.shape == (16, 5, 12) and stack.shape == (5, 12, 16) and stack.axis == 2
        np.testing.assert_array_equal(stack.frames[7], STACK[:, :, 7])


def test_rgb_image_and_rgb_stack_keep_channels_last(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 255, (12, 16, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with open_stack(tmp_path / "rgb.tif") as stack:
        assert stack.frames.shape == (1, 12, 16, 3) and stack.shape == (12, 16) and stack.label_shape == (12, 16)
        np.testing.assert_array_equal(stack.frames[0], rgb)
    np.save(tmp_path / "v.npy", np.stack([rgb] * 4))
    with open_stack(tmp_path / "v.npy", axis=-3) as stack:
        assert stack.frames.shape == (4, 12, 16, 3) and stack.axis == 0
        assert isinstance(stack.frames._array, np.memmap)


def test_zarr_array_and_ome_zarr_image(tmp_path: Path) -> None:
    zarr.create_array(tmp_path / "plain.zarr", data=STACK)
    with open_stack(tmp_path / "plain.zarr", axis=1) as stack:
        np.testing.assert_array_equal(stack.frames[4], STACK[:, 4, :])
    # a tczyx OME-Zarr with size-1 t and c: those axes are dropped
    root = zarr.open_group(tmp_path / "img.ome.zarr", mode="w", zarr_format=3)
    root.create_array("0", data=STACK[None, None])
    root.attrs.update(ome(multiscales=multiscales("img", "tczyx", (1, 1, 2.0, 0.5, 0.5), None)))
    with open_stack(tmp_path / "img.ome.zarr") as stack:
        assert stack.frames.shape == (5, 12, 16) and stack.label_axes == "zyx"
        assert stack.label_scale == (2.0, 0.5, 0.5)
        np.testing.assert_array_equal(stack.frames[3], STACK[3])


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("five.npy", np.zeros((2, 2, 3, 4, 5)), r"expected \(Y, X\)"),
        ("many.npy", np.zeros((2, 4, 4, 6)), "6 channels"),
        ("text.npy", np.array([["a"]]), "must be numbers"),
        ("image.png", None, "unknown image type"),
    ],
)
def test_inputs_we_cannot_take_name_the_file(tmp_path: Path, name: str, data, message: str) -> None:
    path = tmp_path / name
    if data is None:
        path.write_bytes(b"\x89PNG")
    else:
        np.save(path, data)
    with pytest.raises(InputError, match=message) as info:
        open_stack(path)
    assert name in str(info.value)


def test_zarr_group_without_multiscales_must_name_its_array(tmp_path: Path) -> None:
    root = zarr.open_group(tmp_path / "g.zarr", mode="w")
    root.create_array("a", data=STACK)
    root.create_array("b", data=STACK)
    with pytest.raises(InputError, match="pass the array's own path"):
        open_stack(tmp_path / "g.zarr")
    with open_stack(tmp_path / "g.zarr" / "b") as stack:
        assert stack.frames.shape == STACK.shape


def test_stack_stem_strips_image_suffixes() -> None:
    assert [stack_stem(p) for p in ("a/cells.ome.tif", "b.TIF", "c.ome.zarr", "d.npy", "e.zarr", "f.v2.tiff")] == [
        "cells", "b", "c", "d", "e", "f.v2",
    ]  # fmt: skip
