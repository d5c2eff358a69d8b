"""``napari-sam2 segment`` and ``models``: the real command line in a subprocess, on tiny stacks."""

from __future__ import annotations

import glob
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_sam2 import load_model
from napari_sam2.runtime import choose_precision
from napari_sam2.io import (
    Prompt,
    merge_prompts,
    prompts_to_dict,
    read_labels,
    read_points_csv,
    read_shapes_csv,
    write_labels,
    write_prompts_json,
)

from .cli_helpers import (
    CHECKPOINT,
    CONFIG,
    MODEL_ARGS,
    T,
    assert_one_line_error,
    leftovers,
    make_stack,
    reference_labels,
    run_cli,
    save_points_csv,
    save_shapes_csv,
)


@pytest.fixture(scope="module")
def model():
    return load_model(CHECKPOINT, config=CONFIG)


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return make_stack()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, stack: np.ndarray) -> dict[str, Path]:
    """The stack as an uncompressed TIFF, plus a napari Points CSV of two objects on frame 2."""
    pytest.importorskip("napari")
    d = tmp_path_factory.mktemp("segment")
    tifffile.imwrite(d / "stack.tif", stack)
    return {"dir": d, "tif": d / "stack.tif", "points": save_points_csv(d / "points.csv")}


def test_segment_tiff_with_napari_points_matches_a_direct_session(files, stack, model, tmp_path: Path) -> None:
    out = tmp_path / "labels.zarr"
    proc = run_cli("segment", str(files["tif"]), "--prompts", str(files["points"]), *MODEL_ARGS, "-o", str(out),
                   entry_point=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    assert proc.stdout.startswith(f"napari-sam2: wrote {out}: 6 of 6 frames reached, 2 objects, ")
    auto = choose_precision("auto", "cpu")  # the default: by this machine's hardware
    assert proc.stdout.endswith(f" s, {auto.dtype} ({auto.reason})\n") and proc.stdout.count("\n") == 1
    data, scale, metadata = read_labels(out)
    assert (metadata["compute_dtype"], metadata["precision_reason"]) == auto[:2]
    assert data.shape == (T, 120, 160) and data.dtype == np.uint16 and scale == (1.0, 1.0, 1.0)
    prompts = read_points_csv(files["points"], shape=stack.shape)
    assert metadata["prompts"] == prompts_to_dict(prompts)
    assert metadata["model"] == "small_sam2.1" and metadata["checkpoint"] == str(CHECKPOINT)
    assert (metadata["input"], metadata["axis"], metadata["direction"]) == (str(files["tif"]), 0, "both")
    labels = np.asarray(data)
    np.testing.assert_array_equal(labels, reference_labels(model, stack, prompts, compute_dtype=auto.dtype))
    assert set(np.unique(labels[2])) == {0, 1, 2}  # both objects on the prompted frame
    assert leftovers(tmp_path) == []


def test_segment_npy_on_axis_1_with_json_points_and_napari_boxes(files, stack, model, tmp_path: Path) -> None:
    # the same stack stored (Y, T, X): --axis 1; prompts from JSON, a box from a napari Shapes CSV
    np.save(tmp_path / "yty.npy", np.moveaxis(stack, 0, 1))
    shape = (120, T, 160)
    points = [Prompt(frame=3, obj_id=1, points_xy=np.array([[62.0, 60.0]]), labels=np.array([1]), box=None)]
    write_prompts_json(tmp_path / "points.json", points, axis=1)
    # napari saves no shape features: the first rectangle is object 1, joined to object 1's click
    rect = np.array([[40, 3, 40], [40, 3, 85], [80, 3, 85], [80, 3, 40]], dtype=float)  # (y, t, x) on frame 3
    boxes = save_shapes_csv(tmp_path / "boxes.csv", [rect])
    out = tmp_path / "out.zarr"
    proc = run_cli("segment", str(tmp_path / "yty.npy"), "--prompts", str(tmp_path / "points.json"),
                   "--boxes", str(boxes), "--axis", "1", "--direction", "forward", *MODEL_ARGS, "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "3 of 6 frames reached, 1 object," in proc.stdout
    data, _, metadata = read_labels(out)
    assert data.shape == (T, 120, 160) and metadata["axis"] == 1
    prompts = merge_prompts(points, read_shapes_csv(boxes, axis=1, shape=shape))
    assert len(prompts) == 1 and prompts[0].box is not None and prompts[0].points_xy is not None
    labels = np.asarray(data)
    np.testing.assert_array_equal(labels, reference_labels(model, stack, prompts, "forward", metadata["compute_dtype"]))
    assert not labels[:3].any()  # never reached going forward from frame 3


def test_segment_ome_zarr_backward_overwrites_an_old_result(files, stack, model, tmp_path: Path) -> None:
    image = tmp_path / "image.ome.zarr"  # an OME-Zarr image: our own writer's root image is one
    write_labels(image, np.zeros(stack.shape, np.uint16), image=stack, axes="tyx", scale=(1.0, 0.5, 0.5))
    out = tmp_path / "out.zarr"
    write_labels(out, np.ones(stack.shape, np.uint16))  # an earlier result of ours
    proc = run_cli("segment", str(image), "--prompts", str(files["points"]), "--direction", "backward",
                   "--overwrite", *MODEL_ARGS, "-o", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    stored = read_labels(out)
    assert stored.axes == ("t", "y", "x") and stored.scale == (1.0, 0.5, 0.5)
    labels = np.asarray(stored.data)
    prompts = read_points_csv(files["points"], shape=stack.shape)
    dtype = stored.metadata["compute_dtype"]
    np.testing.assert_array_equal(labels, reference_labels(model, stack, prompts, "backward", dtype))
    assert not labels[3:].any() and not (out / "old.txt").exists()


# ---------------------------------------------------------------------------- errors


def _corrupt_checkpoint(d: Path) -> Path:
    path = d / "corrupt.pt"
    path.write_bytes(CHECKPOINT.read_bytes()[:4000])
    return path


def _foreign_checkpoint(d: Path) -> Path:
    path = d / "resnet.pt"
    torch.save({"model": {"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.bias": torch.zeros(10)}}, path)
    return path


def _bad_case(case: str, files: dict[str, Path], d: Path) -> tuple[list[str], list[str]]:
    """Arguments for one broken run, and what its error line must mention."""
    tif, points = str(files["tif"]), str(files["points"])
    if case == "missing input":
        return [str(d / "nothere.tif"), "--prompts", points, *MODEL_ARGS], ["nothere.tif", "does not exist"]
    if case == "unreadable tiff":
        (d / "broken.tif").write_bytes(b"II*\x00" + bytes(200))
        return [str(d / "broken.tif"), "--prompts", points, *MODEL_ARGS], ["broken.tif", "cannot read the TIFF"]
    if case == "prompts outside the stack":
        outside = save_points_csv(d / "late.csv", [[2, 60, 62], [9, 60, 62]], [1, 1], [True, True])
        return [tif, "--prompts", str(outside), *MODEL_ARGS], ["late.csv", "line 3", "outside the stack"]
    if case == "corrupt checkpoint":
        bad = _corrupt_checkpoint(d)
        return [tif, "--prompts", points, "--checkpoint", str(bad)], ["corrupt.pt", "corrupt"]
    if case == "non-SAM2 checkpoint":
        bad = _foreign_checkpoint(d)
        return [tif, "--prompts", points, "--checkpoint", str(bad)], ["resnet.pt", "not a SAM 2 checkpoint"]
    if case == "unknown model":
        return [tif, "--prompts", points, "--model", "sam3_giant"], ["sam3_giant", "known names"]
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["missing input", "unreadable tiff", "prompts outside the stack", "corrupt checkpoint", "non-SAM2 checkpoint",
     "unknown model"],
)  # fmt: skip
def test_errors_are_one_line_exit_2_and_leave_no_output(case: str, files, tmp_path: Path) -> None:
    args, needles = _bad_case(case, files, tmp_path)
    out = tmp_path / "out.zarr"
    proc = run_cli("segment", *args, "-o", str(out))
    assert_one_line_error(proc, *needles)
    assert not out.exists() and leftovers(tmp_path) == []


def test_existing_output_is_kept_without_overwrite(files, tmp_path: Path) -> None:
    out = tmp_path / "done.zarr"
    write_labels(out, np.full((T, 120, 160), 9, np.uint16))  # an earlier result of ours
    proc = run_cli("segment", str(files["tif"]), "--prompts", str(files["points"]), *MODEL_ARGS, "-o", str(out))
    assert_one_line_error(proc, "done.zarr", "already exists", "--overwrite")
    assert (np.asarray(read_labels(out).data) == 9).all()


def test_debug_shows_the_traceback(files, tmp_path: Path) -> None:
    proc = run_cli("segment", str(tmp_path / "no.tif"), "--prompts", str(files["points"]), "--debug",
                   "-o", str(tmp_path / "o.zarr"))  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("napari-sam2: error:")


def _start_long_segment(tmp_path: Path, **popen: object) -> tuple[subprocess.Popen, Path]:
    """``segment`` of a 150-frame stack, returned once its partial store exists (its writer is open)."""
    np.save(tmp_path / "long.npy", make_stack(n_frames=150))
    prompts = tmp_path / "p.json"
    write_prompts_json(prompts, [Prompt(frame=0, obj_id=1, points_xy=np.array([[62.0, 60.0]]), labels=np.array([1]), box=None)])
    out = tmp_path / "long.zarr"
    command = [sys.executable, "-m", "napari_sam2", "segment", str(tmp_path / "long.npy"), "--prompts", str(prompts),
               *MODEL_ARGS, "-o", str(out)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.monotonic() + 120  # not a timing assertion: a bound on waiting for the store to appear
    while not glob.glob(f"{out}.partial-*") and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()  # still writing its 150 frames
    return proc, out


def test_ctrl_c_exits_130_and_removes_the_partial_output(tmp_path: Path) -> None:
    # as from a terminal: SIGINT at its default. A shell starts a background job with SIGINT
    # ignored, and a Python started so keeps ignoring it: with the tests run as one (e.g.
    # `.ci/run &`) the command went on to the end after Ctrl-C, exit 0
    proc, out = _start_long_segment(tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc.send_signal(signal.SIGINT)  # wherever it is now, the partial store must go
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (stdout, stderr)
    assert stderr.strip() == "napari-sam2: interrupted; no partial output was kept"
    assert not out.exists() and leftovers(tmp_path) == []


def test_sigterm_exits_143_and_removes_the_partial_output(tmp_path: Path) -> None:
    """kill, a cluster's time limit or timeout(1) send SIGTERM: cleaned up as for Ctrl-C."""
    proc, out = _start_long_segment(tmp_path)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, (stdout, stderr)
    assert stderr.strip() == "napari-sam2: terminated; no partial output was kept"
    assert not out.exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------------------- models


def test_models_lists_the_registry_and_what_is_cached(tmp_path: Path) -> None:
    # a Hugging Face cache holding sam2.1_hiera_small only (the layout huggingface_hub writes)
    repo = tmp_path / "hub" / "models--facebook--sam2.1-hiera-small"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "sam2.1_hiera_small.pt").write_bytes(b"weights")
    proc = run_cli("models", env_extra={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 10 and lines[0].split()[0] == "name"
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["sam2.1_hiera_small"][1:3] == ["facebook/sam2.1-hiera-small", "sam2.1_hiera_small.pt"]
    assert rows["sam2.1_hiera_small"][3].endswith("snapshots/abc123/sam2.1_hiera_small.pt")
    assert rows["sam2.1_hiera_tiny"][3] == "no" and rows["sam2_hiera_large"][3] == "no"
    bundled = proc.stdout.splitlines()[1]
    assert bundled.startswith("napari-sam2-cells") and "(bundled with napari-sam2)" in bundled


def test_help_names_the_real_default_model() -> None:
    from napari_sam2.cli._common import DEFAULT_MODEL_HELP
    from napari_sam2.weights import DEFAULT_MODEL

    assert DEFAULT_MODEL_HELP == DEFAULT_MODEL
    proc = run_cli("segment", "--help")
    assert proc.returncode == 0 and "--direction" in proc.stdout and DEFAULT_MODEL in proc.stdout


def test_stack_kind_tracks_with_the_models_presence_calibration(files, stack, tmp_path: Path) -> None:
    """``--stack-kind t`` takes the config's ``presence_bias_t``: a bias that rules every object
    absent leaves only the prompted frame, and the labels say what was used; no kind (a TIFF
    names no axes) tracks uncalibrated, as a direct session does."""
    config = json.loads(CONFIG.read_text())
    config.update(presence_bias_t=-50.0, presence_bias_z=0.0)
    calibrated = tmp_path / "calibrated.json"
    calibrated.write_text(json.dumps(config))
    args = ["segment", str(files["tif"]), "--prompts", str(files["points"]), "--checkpoint", str(CHECKPOINT),
            "--config", str(calibrated)]  # fmt: skip
    out_t, out_z, out_none = tmp_path / "t.zarr", tmp_path / "z.zarr", tmp_path / "none.zarr"
    for kind, out in (("t", out_t), ("z", out_z)):
        proc = run_cli(*args, "--stack-kind", kind, "-o", str(out))
        assert proc.returncode == 0, proc.stderr
    assert run_cli(*args, "-o", str(out_none)).returncode == 0
    assert read_labels(out_t).axes == ("t", "y", "x")  # the labels name the axis as the user did
    assert read_labels(out_z).axes == read_labels(out_none).axes == ("z", "y", "x")
    t, _, meta_t = read_labels(out_t)
    z, _, meta_z = read_labels(out_z)
    none, _, meta_none = read_labels(out_none)
    assert (meta_t["stack_kind"], meta_t["presence_bias"]) == ("t", -50.0)
    assert (meta_z["stack_kind"], meta_z["presence_bias"]) == ("z", 0.0)
    assert (meta_none["stack_kind"], meta_none["presence_bias"]) == (None, 0.0)
    t, z, none = np.asarray(t), np.asarray(z), np.asarray(none)
    assert set(np.unique(t[2])) == {0, 1, 2}  # the clicked frame keeps its masks
    assert not t[[0, 1, 3, 4, 5]].any()  # every tracked frame ruled absent
    assert z[[0, 1, 3, 4, 5]].any()  # (so the bias, not the model, emptied them)
    np.testing.assert_array_equal(z, none)
