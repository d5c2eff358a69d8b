"""The CLI keeps a TIFF's calibration and axes (ImageJ, OME-TIFF, resolution tags), knows the
kind of each stack on its own (per file in batch), and lets the prompt file say it (issue 22)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam2.io import read_labels, read_points_csv, write_prompts_json
from napari_sam2.io.stacks import open_stack

from .cli_helpers import MODEL_ARGS, assert_one_line_error, make_stack, run_cli, save_points_csv

UM = "micrometer"


def imagej(path: Path, axes: str, **metadata: float | str) -> Path:
    """An ImageJ hyperstack TIFF with 0.5 µm pixels (resolution 2 pixels per µm)."""
    tifffile.imwrite(path, make_stack(), imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": axes, "unit": "micron", **metadata})  # fmt: skip
    return path


@pytest.mark.parametrize(
    "writer, axes, scale, units",
    [
        ("imagej-t", ("t", "y", "x"), (30.0, 0.5, 0.5), ("second", UM, UM)),
        ("imagej-z", ("z", "y", "x"), (1.5, 0.5, 0.5), (UM, UM, UM)),
        ("ome-z", ("z", "y", "x"), (2.0, 0.25, 0.25), (UM, UM, UM)),
        ("ome-t", ("t", "y", "x"), (5.0, 0.25, 0.25), ("second", UM, UM)),
        ("cm-tags", ("z", "y", "x"), (1.0, 0.5, 0.5), (None, UM, UM)),
    ],
)
def test_a_tiffs_calibration_and_axes_reach_the_labels(tmp_path: Path, writer: str, axes, scale, units) -> None:
    pytest.importorskip("napari")
    path = tmp_path / "in.tif"
    if writer == "imagej-t":
        imagej(path, "TYX", finterval=30.0, spacing=1.5)
    elif writer == "imagej-z":
        imagej(path, "ZYX", spacing=1.5)
    elif writer.startswith("ome"):
        meta = {"axes": "ZYX", "PhysicalSizeZ": 2.0} if writer == "ome-z" else {"axes": "TYX", "TimeIncrement": 5.0}
        tifffile.imwrite(path, make_stack(), ome=True, metadata={"PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, **meta})
    else:  # a plain TIFF whose resolution tags say 20000 pixels per centimetre
        tifffile.imwrite(path, make_stack(), resolution=(20000, 20000), resolutionunit="CENTIMETER")
    out = tmp_path / "out.zarr"
    proc = run_cli("segment", str(path), "--prompts", str(save_points_csv(tmp_path / "p.csv")), *MODEL_ARGS,
                   "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    stored = read_labels(out)
    assert stored.axes == axes and stored.scale == pytest.approx(scale) and stored.units == units
    kind = axes[0] if axes[0] == "t" or writer != "cm-tags" else None
    assert stored.metadata["stack_kind"] == kind and stored.metadata["prompts"].get("stack_kind") == kind


def test_batch_knows_each_stacks_kind_from_its_own_file(tmp_path: Path) -> None:
    pytest.importorskip("napari")
    data, prompts = tmp_path / "data", tmp_path / "prompts"
    data.mkdir()
    prompts.mkdir()
    imagej(data / "movie.tif", "TYX", finterval=10.0)
    imagej(data / "volume.tif", "ZYX", spacing=1.5)
    for stem in ("movie", "volume"):
        save_points_csv(prompts / f"{stem}.csv")
    out = tmp_path / "out"
    proc = run_cli("batch", str(data / "movie.tif"), str(data / "volume.tif"), "--prompts-dir", str(prompts),
                   "-o", str(out), *MODEL_ARGS, "--scheduler", "local:1", "--torch-threads", "1")  # fmt: skip
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    movie, volume = read_labels(out / "movie.zarr"), read_labels(out / "volume.zarr")
    assert movie.axes[0] == "t" and movie.metadata["stack_kind"] == "t" and movie.scale[0] == 10.0
    assert volume.axes[0] == "z" and volume.metadata["stack_kind"] == "z" and volume.scale[0] == 1.5


def test_the_prompt_file_says_the_kind_and_a_contradiction_is_an_error(tmp_path: Path) -> None:
    pytest.importorskip("napari")
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, make_stack())  # says nothing of its axes
    prompts = read_points_csv(save_points_csv(tmp_path / "p.csv"), shape=make_stack().shape)
    as_json = tmp_path / "p.json"
    write_prompts_json(as_json, prompts, stack_kind="t")
    assert json.loads(as_json.read_text())["stack_kind"] == "t"
    out = tmp_path / "out.zarr"
    proc = run_cli("segment", str(path), "--prompts", str(as_json), *MODEL_ARGS, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert read_labels(out).axes[0] == "t" and read_labels(out).metadata["stack_kind"] == "t"
    proc = run_cli("segment", str(path), "--prompts", str(as_json), "--stack-kind", "z", *MODEL_ARGS,
                   "-o", str(tmp_path / "again.zarr"))  # fmt: skip
    assert_one_line_error(proc, "p.json", "time-lapse", "--stack-kind is 'z'")
    bad = tmp_path / "bad.json"
    bad.write_text(as_json.read_text().replace('"stack_kind": "t"', '"stack_kind": "x"'))
    proc = run_cli("segment", str(path), "--prompts", str(bad), *MODEL_ARGS, "-o", str(tmp_path / "b.zarr"))
    assert_one_line_error(proc, "bad.json", "stack_kind", "'x'")


def test_an_imagej_stack_without_axes_is_a_plain_stack(tmp_path: Path) -> None:
    """tifffile calls a 3-D ImageJ stack with no axes 'CYX'; it stays a stack, of no known kind."""
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, make_stack(), imagej=True)
    with open_stack(path) as stack:
        assert stack.label_shape == (6, 120, 160) and stack.axis_name is None and stack.label_scale is None
        np.testing.assert_array_equal(stack.frames[3], make_stack()[3])


def test_segment_and_batch_leave_a_core_free_and_say_so(tmp_path: Path) -> None:
    """Default torch threads: all cores but one (torch's own default, every core, ran 6x slower on a busy machine)."""
    pytest.importorskip("napari")
    from napari_sam2.runtime import cpu_cores, default_threads

    cores = cpu_cores()
    assert default_threads() == max(1, cores - 1) and default_threads(workers=cores * 2) == 1
    help_text = " ".join(run_cli("segment", "--help").stdout.split())
    assert f"all cores but one for segment (here: {max(1, cores - 1)})" in help_text
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, make_stack())
    out = tmp_path / "out.zarr"
    proc = run_cli("segment", str(path), "--prompts", str(save_points_csv(tmp_path / "p.csv")), *MODEL_ARGS,
                   "-o", str(out), env_extra={"OMP_NUM_THREADS": str(cores)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert read_labels(out).metadata["torch_threads"] == max(1, cores - 1)
    proc = run_cli("segment", str(path), "--prompts", str(tmp_path / "p.csv"), *MODEL_ARGS, "--torch-threads", "2",
                   "-o", str(tmp_path / "two.zarr"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert read_labels(tmp_path / "two.zarr").metadata["torch_threads"] == 2
