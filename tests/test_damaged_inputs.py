"""Damaged and odd inputs (issue 24): each is reported as what it is, in one line naming the file.

A damaged file is never read as a smaller image, a prompt file that breaks the parser is
named, and images the model cannot take say why instead of giving NaN scores.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam2.engine.frames import WINDOW_SAMPLE_FRAMES, FrameSource, _spaced
from napari_sam2.engine.preprocess import to_model_input
from napari_sam2.errors import InputError
from napari_sam2.io import read_labels
from napari_sam2.io.prompts import read_points_csv, read_prompts_json
from napari_sam2.io.stacks import open_stack
from napari_sam2.model.config import SAM2Config

from .cli_helpers import CHECKPOINT, CONFIG, MODEL_ARGS, assert_one_line_error, run_cli

N, SIDE = 8, 64


def stack(n: int = N, dtype=np.uint16) -> np.ndarray:
    """(n, 64, 64) noise with a bright square that the model can find."""
    rng = np.random.default_rng(1)
    data = rng.integers(500, 1500, (n, SIDE, SIDE)).astype(dtype)
    data[:, 20:40, 20:40] = 3000
    return data


def prompts_json(path: Path, frame: int = 0) -> Path:
    doc = {"version": 1, "axis": 0, "objects": [{"id": 1, "points": [{"frame": frame, "x": 30, "y": 30}]}]}
    path.write_text(json.dumps(doc))
    return path


def truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def corrupt_page(path: Path, page: int) -> Path:
    """Overwrite 64 bytes in the middle of ``page``'s first strip (its IFD stays intact)."""
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[page].dataoffsets[0], tif.pages[page].databytecounts[0]
    data = bytearray(path.read_bytes())
    middle = offset + count // 2
    data[middle : middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(Exception):  # noqa: B017, PT011  (the premise: tifffile itself cannot decode it)
        tifffile.imread(path, key=page)
    return path


# --------------------------------------------------------------------------- 1. damaged TIFFs

WRITERS = {
    "shaped": {},
    "imagej": {"imagej": True},
    "ome": {"ome": True},
    "plain": {"metadata": None},
}


@pytest.mark.parametrize("fraction", [0.6, 0.97])
@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_truncated_tiff_is_damaged_not_a_smaller_image(tmp_path: Path, writer: str, compression, fraction) -> None:
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, stack(), compression=compression, **WRITERS[writer])
    truncate(path, fraction)
    with pytest.raises(InputError) as info:
        open_stack(path)
    message = str(info.value)
    assert str(path) in message and "damaged" in message, message
    assert "\n" not in message


def test_a_corrupt_strip_names_the_file_and_the_frame(tmp_path: Path) -> None:
    path = tmp_path / "cells.tif"
    data = stack()
    tifffile.imwrite(path, data, compression="zlib")
    corrupt_page(path, 5)
    with open_stack(path) as opened:
        assert opened.frames.shape == data.shape
        for t in (0, 4, 6, 7):
            np.testing.assert_array_equal(opened.frames[t], data[t])
        with pytest.raises(InputError) as info:
            opened.frames[5]
    message = str(info.value)
    assert message.startswith(f"input '{path}': frame 5 cannot be read: the file is damaged ("), message


def test_tifffile_says_nothing_while_damaged_files_are_read(tmp_path: Path, caplog, capfd) -> None:
    logger = logging.getLogger("tifffile")
    before = (logger.level, logger.propagate, list(logger.handlers))
    tifffile.imwrite(tmp_path / "t.tif", stack(), compression="zlib")
    truncated = truncate(tmp_path / "t.tif", 0.6)
    tifffile.imwrite(tmp_path / "c.tif", stack(), compression="zlib")
    corrupt = corrupt_page(tmp_path / "c.tif", 5)
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(InputError):
            open_stack(truncated)
        with open_stack(corrupt) as opened, pytest.raises(InputError):
            opened.frames[5]
    assert [r for r in caplog.records if r.name.startswith("tifffile")] == []
    assert capfd.readouterr().err == ""
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_an_intact_tiff_still_opens_in_full(tmp_path: Path) -> None:
    """The damage checks must not refuse good files of any writer."""
    data = stack()
    for writer, options in WRITERS.items():
        for compression in (None, "zlib"):
            path = tmp_path / f"{writer}-{compression}.tif"
            tifffile.imwrite(path, data, compression=compression, **options)
            with open_stack(path) as opened:
                assert opened.frames.shape == data.shape, (writer, compression)
                np.testing.assert_array_equal(opened.frames[N - 1], data[N - 1])


def test_segment_names_a_truncated_tiff_as_damaged(tmp_path: Path) -> None:
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, stack(), compression="zlib")
    truncate(path, 0.6)
    out = tmp_path / "out.zarr"
    proc = run_cli("segment", str(path), "--prompts", str(prompts_json(tmp_path / "p.json", frame=2)),
                   "-o", str(out), *MODEL_ARGS)  # fmt: skip
    line = assert_one_line_error(proc, str(path), "damaged")
    assert "3-D" not in line and "shape" not in line  # not mistaken for a 2-D image
    assert not out.exists()


def test_segment_names_the_frame_that_fails_while_propagating(tmp_path: Path) -> None:
    n = 20
    bad = next(t for t in range(n) if t not in _spaced(n, WINDOW_SAMPLE_FRAMES))  # not read up front
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, stack(n), compression="zlib")
    corrupt_page(path, bad)
    out = tmp_path / "out.zarr"
    proc = run_cli("segment", str(path), "--prompts", str(prompts_json(tmp_path / "p.json")), "-o", str(out),
                   "--direction", "forward", *MODEL_ARGS)  # fmt: skip
    assert_one_line_error(proc, f"input '{path}': frame {bad} cannot be read: the file is damaged (")
    assert not out.exists()


def test_batch_reports_each_damaged_tiff_without_a_traceback(tmp_path: Path) -> None:
    inputs, prompts = tmp_path / "in", tmp_path / "prompts"
    inputs.mkdir()
    prompts.mkdir()
    n = 20
    bad = next(t for t in range(n) if t not in _spaced(n, WINDOW_SAMPLE_FRAMES))
    tifffile.imwrite(inputs / "short.tif", stack(), compression="zlib")
    truncate(inputs / "short.tif", 0.6)
    tifffile.imwrite(inputs / "raw.tif", stack())
    truncate(inputs / "raw.tif", 0.6)
    tifffile.imwrite(inputs / "bad.tif", stack(n), compression="zlib")
    corrupt_page(inputs / "bad.tif", bad)
    for name in ("short", "raw", "bad"):
        prompts_json(prompts / f"{name}.json")
    proc = run_cli("batch", *(str(inputs / f"{s}.tif") for s in ("short", "raw", "bad")),
                   "--prompts-dir", str(prompts), "-o", str(tmp_path / "out"), "--scheduler", "local:1",
                   "--direction", "forward", *MODEL_ARGS)  # fmt: skip
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "tifffile" not in proc.stderr, proc.stderr
    failed = {line.split()[1].rstrip(":"): line for line in proc.stdout.splitlines() if line.startswith("FAILED")}
    assert sorted(failed) == ["bad.tif", "raw.tif", "short.tif"], proc.stdout
    for name, line in failed.items():
        assert str(inputs / name) in line and "damaged" in line, line
    assert f"frame {bad} cannot be read" in failed["bad.tif"]


def test_a_truncated_npy_or_corrupt_zarr_chunk_is_damaged(tmp_path: Path) -> None:
    data = stack()
    npy = tmp_path / "cells.npy"
    np.save(npy, data)
    truncate(npy, 0.6)
    with pytest.raises(InputError, match="damaged") as info:
        open_stack(npy)
    assert str(npy) in str(info.value)

    store = tmp_path / "cells.zarr"
    zarr.create_array(store, data=data, chunks=(1, SIDE, SIDE), zarr_format=3)
    chunk = store / "c" / "3" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[: len(chunk.read_bytes()) // 2])
    with open_stack(store) as opened:
        np.testing.assert_array_equal(opened.frames[2], data[2])
        with pytest.raises(InputError) as info:
            opened.frames[3]
    assert str(info.value).startswith(f"input '{store}': frame 3 cannot be read: the file is damaged ("), info.value


# --------------------------------------------------------------------------- 2. segment-image on bad files


def _png(path: Path) -> Path:
    import imageio.v3 as iio

    iio.imwrite(path, (stack(1)[0] // 16).astype(np.uint8))
    return path


@pytest.mark.parametrize("kind", ["text", "empty", "truncated-png", "truncated-tiff"])
def test_segment_image_names_a_file_that_is_no_image(tmp_path: Path, kind: str) -> None:
    if kind == "text":
        path = tmp_path / "notes.png"
        path.write_text("these are my notes, not an image\n")
        needle = "not an image"
    elif kind == "empty":
        path = tmp_path / "empty.png"
        path.write_bytes(b"")
        needle = "is empty"
    elif kind == "truncated-png":
        path = truncate(_png(tmp_path / "cells.png"), 0.5)
        needle = "damaged"
    else:
        path = tmp_path / "cells.tif"
        tifffile.imwrite(path, stack(), compression="zlib")
        truncate(path, 0.6)  # tifffile alone reads this as its first page
        needle = "damaged"
    proc = run_cli("segment-image", str(path), "--point", "30", "30", "-o", str(tmp_path / "m.tif"), *MODEL_ARGS)
    assert_one_line_error(proc, str(path), needle, code=1)
    assert not (tmp_path / "m.tif").exists()


# --------------------------------------------------------------------------- 3. JSON nested too deeply

DEEP = {"lists": "[" * 100_000 + "]" * 100_000, "dicts": '{"a":' * 100_000 + "1" + "}" * 100_000}


@pytest.mark.parametrize("shape", list(DEEP))
def test_deeply_nested_prompt_json_is_one_line_naming_the_file(tmp_path: Path, shape: str) -> None:
    path = tmp_path / "prompts.json"
    path.write_text(DEEP[shape])
    with pytest.raises(InputError) as info:
        read_prompts_json(path)
    assert str(info.value) == f"{path}: not valid JSON (nested too deeply)"


def test_segment_with_deeply_nested_prompts_is_one_line(tmp_path: Path) -> None:
    image = tmp_path / "cells.tif"
    tifffile.imwrite(image, stack())
    path = tmp_path / "prompts.json"
    path.write_text(DEEP["lists"])
    proc = run_cli("segment", str(image), "--prompts", str(path), "-o", str(tmp_path / "o.zarr"), *MODEL_ARGS)
    assert_one_line_error(proc, f"{path}: not valid JSON (nested too deeply)")


def test_a_deeply_nested_config_json_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        SAM2Config.from_json(DEEP["dicts"])
    config = tmp_path / "config.json"
    config.write_text(DEEP["lists"])
    image = _png(tmp_path / "cells.png")
    proc = run_cli("segment-image", str(image), "--point", "30", "30", "-o", str(tmp_path / "m.tif"),
                   "--checkpoint", str(CHECKPOINT), "--config", str(config))  # fmt: skip
    assert_one_line_error(proc, str(config), "nested too deeply", code=1)


def test_a_huge_integer_in_prompt_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "prompts.json"
    path.write_text('{"version": 1, "objects": [{"id": 1, "points": [{"frame": 0, "x": 1' + "0" * 400 + ', "y": 3}]}]}')
    with pytest.raises(InputError) as info:
        read_prompts_json(path)
    assert str(info.value).startswith(f"{path}: objects[0].points[0].x: expected a finite number")


def test_a_duplicated_key_in_prompt_json_is_an_error_not_the_last_value(tmp_path: Path) -> None:
    path = tmp_path / "prompts.json"
    path.write_text('{"version": 1, "objects": [{"id": 1, "points": [{"frame": 0, "x": 3, "x": 50, "y": 3}]}]}')
    with pytest.raises(InputError) as info:
        read_prompts_json(path)
    assert str(info.value) == f"{path}: field 'x' appears twice in one object"


def test_a_duplicated_column_in_a_points_csv_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    path.write_text("index,axis-0,axis-1,axis-2,object,object\n0,0.0,10.0,10.0,1,2\n")
    with pytest.raises(InputError) as info:
        read_points_csv(path)
    assert str(info.value) == f"{path}: the header names column 'object' twice"


# --------------------------------------------------------------------------- 4. float ranges and prompts


@pytest.fixture(scope="module")
def predictor():
    from napari_sam2 import ImagePredictor, load_model

    return ImagePredictor(load_model(str(CHECKPOINT), "cpu", config=str(CONFIG)))


def test_a_float64_image_beyond_float32_range_segments_like_its_scaled_copy(predictor) -> None:
    base = stack(1)[0].astype(np.float64)
    # (base - 1750) * 8e304 spans -1e308 .. 1e308: even hi - lo overflows float64
    for huge in (base * 1e300, (base - 1750) * 8e304, base * -1e300):
        assert np.isfinite(huge).all()
        expected = to_model_input(base if huge[25, 25] >= huge[0, 0] else -base, 64)
        got = to_model_input(huge, 64)
        assert np.isfinite(got.numpy()).all()
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
    predictor.set_image(base)
    ref_masks, ref_scores, _ = predictor.predict(point_coords=[[30, 30]], point_labels=[1])
    predictor.set_image(base * 1e300)
    masks, scores, _ = predictor.predict(point_coords=[[30, 30]], point_labels=[1])
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores, ref_scores, atol=1e-4)
    assert (masks != ref_masks).mean() < 1e-3


def test_a_frame_source_of_huge_floats_gives_finite_model_inputs() -> None:
    frames = stack().astype(np.float64) * 1e300
    source = FrameSource(frames)
    assert np.isfinite(source.window).all()
    x = source.model_input(3, 64)
    assert np.isfinite(x.numpy()).all()
    expected = FrameSource(stack().astype(np.float64)).model_input(3, 64)
    np.testing.assert_allclose(x.numpy(), expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_pixels_name_the_file_and_frame(tmp_path: Path, value: float) -> None:
    data = stack().astype(np.float32)
    data[3, 5, 7] = value
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, data)
    with open_stack(path) as opened:
        opened.frames[2]
        with pytest.raises(InputError) as info:
            opened.frames[3]
    assert str(info.value) == f"input '{path}': frame 3 contains NaN or infinite values"


def test_segment_on_a_stack_with_infinite_pixels_names_the_file(tmp_path: Path) -> None:
    data = stack().astype(np.float64)
    data[4, 1, 1] = np.inf
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, data)
    proc = run_cli("segment", str(path), "--prompts", str(prompts_json(tmp_path / "p.json")),
                   "-o", str(tmp_path / "o.zarr"), *MODEL_ARGS)  # fmt: skip
    assert_one_line_error(proc, f"input '{path}': frame 4 contains NaN or infinite values")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"point_coords": [["a", "b"]], "point_labels": [1]}, "point_coords must be numbers"),
        ({"point_coords": [[1, 2], [3]], "point_labels": [1, 1]}, "point_coords must be numbers in shape (N, 2)"),
        ({"point_coords": [[[1, 2]]], "point_labels": [1]}, "point_coords must have shape (N, 2)"),
        ({"point_coords": [[np.nan, 2]], "point_labels": [1]}, "point_coords contains NaN or infinite values"),
        ({"point_coords": [[np.inf, 2]], "point_labels": [1]}, "point_coords contains NaN or infinite values"),
        ({"point_coords": [[1e300, 2]], "point_labels": [1]}, "is outside the image"),
        ({"point_coords": [[1, 2]], "point_labels": ["yes"]}, "point_labels must be 1 (object) or 0 (background)"),
        ({"point_coords": [[1, 2]], "point_labels": [[1, 0]]}, "got 1 points but point_labels has shape (1, 2)"),
        ({"point_coords": [[1, 2]], "point_labels": [np.nan]}, "point_labels must be 1 (object) or 0 (background)"),
        ({"box": ["a", 1, 2, 3]}, "box must be numbers in shape (4,)"),
        ({"box": [1, 2, [3, 4]]}, "box must be numbers in shape (4,)"),
        ({"box": [1, 2, 3]}, "box must be 4 numbers"),
        ({"box": [1, 2, np.nan, 4]}, "box contains NaN or infinite values"),
        ({"box": [1, 2, 1e300, 4]}, "reaches outside the image"),
        ({"mask_input": [["a"]]}, "mask_input must be numbers in shape (1, "),
    ],
)
def test_bad_prompt_values_raise_input_error(predictor, kwargs: dict, message: str) -> None:
    predictor.set_image(stack(1)[0])
    with pytest.raises(InputError) as info:
        predictor.predict(**kwargs)
    assert message in str(info.value), info.value


# --------------------------------------------------------------------------- 5. NGFF 0.4 / zarr v2


def test_ngff_04_input_gives_labels_with_its_scale_and_units(tmp_path: Path) -> None:
    from ome_zarr.format import FormatV04
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_image

    path = tmp_path / "cells.ome.zarr"
    root = zarr.group(store=parse_url(str(path), mode="w", fmt=FormatV04()).store)
    write_image(stack(), root, axes="zyx", fmt=FormatV04(), scale_factors=(2,), scale={"z": 2.0, "y": 0.5, "x": 0.25},
                axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"})  # fmt: skip
    assert json.loads((path / ".zattrs").read_text())["multiscales"][0]["version"] == "0.4"  # really 0.4, zarr v2
    out = tmp_path / "labels.zarr"
    proc = run_cli("segment", str(path), "--prompts", str(prompts_json(tmp_path / "p.json", frame=2)), "-o", str(out),
                   *MODEL_ARGS)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    labels = read_labels(out)
    assert labels.scale == (2.0, 0.5, 0.25)
    assert labels.units == ("micrometer", "micrometer", "micrometer")
    assert labels.data.shape == (N, SIDE, SIDE) and int(labels.data.max()) == 1


def test_ngff_04_by_hand_multiscales_level_transform_and_5d(tmp_path: Path) -> None:
    """NGFF 0.4 as the spec writes it: a multiscales-level scale multiplies the dataset's."""
    path = tmp_path / "hand.zarr"
    root = zarr.open_group(path, mode="w", zarr_format=2)
    root.create_array("0", data=stack()[None, None], chunks=(1, 1, 1, SIDE, SIDE))
    kinds = ["time", "channel", "space", "space", "space"]
    axes = [{"name": a, "type": t} for a, t in zip("tczyx", kinds, strict=True)]
    axes[-1]["unit"] = axes[-2]["unit"] = "micrometer"
    root.attrs["multiscales"] = [{
        "version": "0.4", "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 3.0, 0.5, 0.5]}]}],
        "coordinateTransformations": [{"type": "scale", "scale": [10.0, 1, 1, 2.0, 2.0]}],
    }]  # fmt: skip
    with open_stack(path) as opened:
        assert opened.frames.shape == (N, SIDE, SIDE)
        assert opened.label_scale == (3.0, 1.0, 1.0)
        assert opened.label_units == (None, "micrometer", "micrometer")


def test_ngff_axes_that_disagree_with_the_array_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "odd.zarr"
    root = zarr.open_group(path, mode="w", zarr_format=2)
    root.create_array("0", data=stack())
    axes = [{"name": "y"}, {"name": "x"}]
    root.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [{"path": "0"}]}]
    with pytest.raises(InputError) as info:
        open_stack(path)
    expected = f"{path}: the multiscales metadata names 2 axes (y, x) but the array is 3-D {stack().shape}"
    assert str(info.value) == expected


# --------------------------------------------------------------------------- odd TIFF layouts


def test_a_planar_rgb_tiff_is_one_rgb_image_not_three_frames(tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 255, (3, 40, 50), dtype=np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", planarconfig="separate")
    with open_stack(path) as opened:
        assert opened.shape == (40, 50)
        assert opened.frames.shape == (1, 40, 50, 3)
        np.testing.assert_array_equal(opened.frames[0], np.moveaxis(rgb, 0, -1))


def test_an_imagej_hyperstack_keeps_its_channel_axis(tmp_path: Path) -> None:
    data = np.stack([stack(), stack()[:, ::-1]], axis=1)  # (Z, C, Y, X)
    path = tmp_path / "zc.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    with open_stack(path) as opened:
        assert opened.shape == (N, SIDE, SIDE)
        assert opened.frames.shape == (N, SIDE, SIDE, 2)
        np.testing.assert_array_equal(opened.frames[3], np.moveaxis(data[3], 0, -1))
