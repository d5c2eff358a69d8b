"""``napari-sam2 auto``: the real command line in a subprocess on tiny synthetic stacks, its
labels read back, and bad inputs as one-line errors that leave nothing behind."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam2.auto_pipeline import AutoJob, auto_stack, run_auto_stack
from napari_sam2.io import read_labels
from napari_sam2.pipeline import ModelSpec
from napari_sam2.synthetic import fluorescence_timelapse

from .cli_helpers import assert_one_line_error, leftovers, run_cli

# small and fast: the shipped model, an 8 x 8 grid, one thread, the official float32
FAST = ["--model", "napari-sam2-cells", "--points-per-side", "8", "--torch-threads", "1", "--compute-dtype", "float32"]


@pytest.fixture(autouse=True, scope="module")
def _threads_back():
    """The in-process runs set torch to --torch-threads 1; the other tests get conftest's count back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("auto")
    stack = fluorescence_timelapse(n_frames=5, shape=(64, 64), n_cells=3, seed=1)
    np.save(d / "cells.npy", stack.image)
    tifffile.imwrite(d / "image.tif", stack.image[2])
    np.save(d / "flat.npy", np.full((3, 48, 48), 500, dtype=np.uint16))
    return {"stack": d / "cells.npy", "image": d / "image.tif", "flat": d / "flat.npy", "dir": d}


def test_auto_writes_the_labels_the_engine_gives_with_what_it_did_in_the_metadata(files, tmp_path) -> None:
    out = tmp_path / "out.zarr"
    proc = run_cli("auto", str(files["stack"]), "-o", str(out), "--every", "2", "--stack-kind", "t", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}:" in proc.stdout and "object" in proc.stdout and "float32" in proc.stdout
    data, _, meta = read_labels(out)
    labels = np.asarray(data)
    assert labels.shape == (5, 64, 64) and labels.dtype == np.uint16
    # the same job in this process gives the same labels
    job = AutoJob(input=str(files["stack"]), output=str(tmp_path / "here.zarr"), model=ModelSpec("napari-sam2-cells"),
                  every=2, stack_kind="t", points_per_side=8, compute_dtype="float32", torch_threads=1)  # fmt: skip
    result = auto_stack(job, configure=True)
    assert np.array_equal(labels, np.asarray(read_labels(tmp_path / "here.zarr")[0]))
    assert result.objects == meta["objects"] > 0
    assert meta["command"] == "auto" and meta["model"] == "napari-sam2-cells" and meta["compute_dtype"] == "float32"
    assert meta["auto"]["mode"] == "grid" and meta["auto"]["points_per_side"] == 8 and meta["auto"]["every"] == 2
    assert meta["stack_kind"] == "t" and meta["summary"] == result.summary
    # per object: the frame it was found on and its box there, which holds its label
    found = meta["found"]
    assert [f["obj_id"] for f in found] == list(range(1, result.objects + 1))
    assert set(np.unique(labels)) - {0} <= {f["obj_id"] for f in found}
    for f in found:
        x0, y0, x1, y1 = f["bbox_xyxy"]
        frame = labels[f["frame"]]
        ys, xs = np.nonzero(frame == f["obj_id"])
        if len(xs):
            assert x0 <= xs.min() and xs.max() <= x1 and y0 <= ys.min() and ys.max() <= y1
    assert leftovers(tmp_path) == []


def _main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """The command line in this process (the model loads once for all these tests): code, stdout, stderr."""
    from napari_sam2.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-sam2: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_a_2d_image_gives_2d_labels(files, tmp_path, capsys) -> None:
    out = tmp_path / "image.zarr"
    code, stdout, err = _main(capsys, "auto", str(files["image"]), "-o", str(out), *FAST)
    assert code == 0, err
    data, _, meta = read_labels(out)
    assert data.shape == (64, 64) and meta["objects"] == len(set(np.unique(np.asarray(data))) - {0}) > 0
    assert meta["found"] and all(f["frame"] == 0 for f in meta["found"])


def test_a_constant_stack_gives_empty_labels_and_says_so(files, tmp_path, capsys) -> None:
    out = tmp_path / "flat.zarr"
    code, stdout, err = _main(capsys, "auto", str(files["flat"]), "-o", str(out), *FAST)
    assert code == 0, err
    assert "no objects found" in stdout
    data, _, meta = read_labels(out)
    assert data.shape == (3, 48, 48) and not np.asarray(data).any() and meta["objects"] == 0


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--points-per-side", "0"], "points_per_side must be an integer >= 1"),
        (["--every", "0"], "every must be an integer >= 1"),
        (["--pred-iou-thresh", "1.5"], "pred_iou_thresh must be in [0, 1]"),
        (["--frame", "9"], "--frame 9 is out of range"),
    ],
)
def test_bad_settings_are_one_line_errors_that_leave_nothing(files, tmp_path, capsys, extra, needle) -> None:
    out = tmp_path / "bad.zarr"
    code, _, err = _main(capsys, "auto", str(files["stack"]), "-o", str(out), *FAST, *extra)
    assert code == 2
    _one_line(err, needle)
    assert not out.exists() and leftovers(tmp_path) == []


def test_missing_input_and_modules_are_one_line_errors(files, tmp_path, capsys) -> None:
    out = tmp_path / "bad.zarr"
    # in a subprocess once: the real exit code and stderr
    assert_one_line_error(run_cli("auto", str(tmp_path / "nope.tif"), "-o", str(out), *FAST), "nope.tif", code=2)
    if importlib.util.find_spec("napari_sam2.engine.seeded") is None:
        code, _, err = _main(capsys, "auto", str(files["stack"]), "-o", str(out), "--mode", "seeded", *FAST)
        assert code == 2
        _one_line(err, "--mode seeded is not available")
    if importlib.util.find_spec("napari_sam2.engine.tiles") is None:
        code, _, err = _main(capsys, "auto", str(files["stack"]), "-o", str(out), "--tile", "32", "--halo", "8", *FAST)
        assert code == 2
        _one_line(err, "--tile/--halo are not available")
    assert not out.exists() and leftovers(tmp_path) == []


def test_an_existing_output_is_refused_without_overwrite(files, tmp_path, capsys) -> None:
    out = tmp_path / "taken.zarr"
    out.mkdir()
    (out / "mine.txt").write_text("not labels")
    code, _, err = _main(capsys, "auto", str(files["flat"]), "-o", str(out), *FAST)
    assert code == 2
    _one_line(err, str(out))
    assert (out / "mine.txt").read_text() == "not labels" and leftovers(tmp_path) == []
    # the input itself is never an output, --overwrite or not
    code, _, err = _main(capsys, "auto", str(files["flat"]), "-o", str(files["flat"]), "--overwrite", *FAST)
    assert code == 2
    _one_line(err)
    assert files["flat"].is_file()
    # our own labels are replaced with --overwrite
    done = tmp_path / "done.zarr"
    assert _main(capsys, "auto", str(files["flat"]), "-o", str(done), *FAST)[0] == 0
    code, _, err = _main(capsys, "auto", str(files["flat"]), "-o", str(done), *FAST)
    assert code == 2
    _one_line(err, "exists")
    assert _main(capsys, "auto", str(files["flat"]), "-o", str(done), "--overwrite", *FAST)[0] == 0


def test_seeded_mode_and_tiles_run_where_their_modules_exist(files, tmp_path, capsys) -> None:
    """The hooks: --mode seeded takes engine.seeded's generator, --tile/--halo engine.tiles' stitching."""
    pytest.importorskip("napari_sam2.engine.seeded")
    pytest.importorskip("napari_sam2.engine.tiles")
    for name, extra in [("seeded", ["--mode", "seeded"]), ("tiled", ["--tile", "32", "--halo", "16"])]:
        out = tmp_path / f"{name}.zarr"
        code, _, err = _main(capsys, "auto", str(files["image"]), "-o", str(out), *FAST, *extra)
        assert code == 0, err
        data, _, meta = read_labels(out)
        assert data.shape == (64, 64) and meta["objects"] == len(set(np.unique(np.asarray(data))) - {0})
        assert meta["auto"]["mode"] == ("seeded" if name == "seeded" else "grid")
    code, _, err = _main(capsys, "auto", str(files["image"]), "-o", str(tmp_path / "x.zarr"), *FAST, "--tile", "32")
    assert code == 2
    _one_line(err, "--tile and --halo go together")


def test_the_batch_task_reports_instead_of_raising(files, tmp_path) -> None:
    spec = ModelSpec("napari-sam2-cells")
    bad = run_auto_stack(AutoJob(input=str(tmp_path / "nope.npy"), output=str(tmp_path / "a.zarr"), model=spec))
    assert bad.status == "failed" and "nope.npy" in bad.error and not bad.model_error
    good = run_auto_stack(AutoJob(input=str(files["flat"]), output=str(tmp_path / "b.zarr"), model=spec,
                                  points_per_side=4, torch_threads=1))  # fmt: skip
    assert good.status == "done" and good.result.objects == 0 and good.result.frames == 3
    assert (tmp_path / "b.zarr").is_dir() and leftovers(tmp_path) == []


def test_batch_auto_writes_what_auto_writes_for_each_stack(files, tmp_path) -> None:
    """``batch --auto``: one dask task per stack, each the labels ``auto`` gives it alone."""
    pytest.importorskip("distributed")
    d = tmp_path / "in"
    d.mkdir()
    np.save(d / "cells.npy", np.load(files["stack"]))
    np.save(d / "flat.npy", np.load(files["flat"]))
    proc = run_cli("batch", str(d / "cells.npy"), str(d / "flat.npy"), "--auto", "--every", "2", "--stack-kind", "t",
                   *FAST, "-o", str(tmp_path / "out"), "--scheduler", "local:1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "2 done, 0 skipped" in proc.stdout and "float32" in proc.stdout
    job = AutoJob(input=str(files["stack"]), output=str(tmp_path / "alone.zarr"), model=ModelSpec("napari-sam2-cells"),
                  every=2, stack_kind="t", points_per_side=8, compute_dtype="float32", torch_threads=1)  # fmt: skip
    auto_stack(job, configure=True)
    batched = np.asarray(read_labels(tmp_path / "out" / "cells.zarr")[0])
    assert batched.any() and np.array_equal(batched, np.asarray(read_labels(tmp_path / "alone.zarr")[0]))
    assert not np.asarray(read_labels(tmp_path / "out" / "flat.zarr")[0]).any()
    assert leftovers(tmp_path) == []


def test_batch_takes_prompt_files_or_auto_not_both_nor_neither(files, tmp_path, capsys) -> None:
    for extra in ([], ["--auto", "--prompts-dir", str(tmp_path)]):
        code, _, err = _main(capsys, "batch", str(files["stack"]), "-o", str(tmp_path / "out"), *FAST, *extra)
        assert code == 2
        _one_line(err, "batch needs --prompts-dir DIR", "or --auto")
    assert not (tmp_path / "out").exists()
