"""``napari-sam2 batch`` on a real 2-process LocalCluster, and the pieces behind it."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from napari_sam2 import batch, pipeline
from napari_sam2.batch import find_prompt_files, plan_jobs
from napari_sam2.pipeline import ModelSpec, SegmentJob
from napari_sam2.errors import InputError
from napari_sam2.io import read_labels

from .cli_helpers import (
    CHECKPOINT,
    CONFIG,
    MODEL_ARGS,
    assert_one_line_error,
    leftovers,
    make_stack,
    run_cli,
    save_points_csv,
)

pytest.importorskip("distributed")

GOOD = ["a.tif", "b.npy", "c.tif", "d.tif"]


def _mtimes(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run 1: four good stacks and a broken TIFF on 2 workers. Run 2: the TIFF fixed, the same command."""
    pytest.importorskip("napari")
    d = tmp_path_factory.mktemp("batch")
    inputs, prompts, out = d / "in", d / "prompts", d / "out"
    inputs.mkdir()
    prompts.mkdir()
    for i, name in enumerate(GOOD):
        stack = make_stack(seed=i)
        np.save(inputs / name, stack) if name.endswith(".npy") else tifffile.imwrite(inputs / name, stack)
    (inputs / "e.tif").write_bytes(b"II*\x00" + bytes(100))  # broken
    save_points_csv(prompts / "a.csv")
    for name in ["b", "c", "d", "e"]:
        shutil.copy(prompts / "a.csv", prompts / f"{name}.csv")
    command = ["batch", *sorted(str(p) for p in inputs.iterdir()), "--prompts-dir", str(prompts), *MODEL_ARGS,
               "-o", str(out), "--scheduler", "local:2", "--torch-threads", "1"]  # fmt: skip
    first = run_cli(*command, "--report", str(d / "report1.json"))
    before, listed = _mtimes(out), sorted(p.name for p in out.iterdir())
    tifffile.imwrite(inputs / "e.tif", make_stack(seed=9))
    second = run_cli(*command, "--report", str(d / "report2.json"))
    return {
        "dir": d, "out": out, "first": first, "listed": listed, "second": second, "before": before, "after": _mtimes(out),
        "report1": json.loads((d / "report1.json").read_text()), "report2": json.loads((d / "report2.json").read_text()),
    }  # fmt: skip


def test_batch_reports_each_stack_and_exits_1_when_one_failed(runs) -> None:
    proc = runs["first"]
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert sorted(line.split()[1] for line in lines if line.startswith("done")) == GOOD
    (failed,) = [line for line in lines if line.startswith("FAILED")]
    assert "e.tif" in failed and "cannot read the TIFF" in failed
    assert lines[-1].startswith("napari-sam2 batch: 4 done, 0 skipped (finished earlier), 1 failed")
    assert runs["listed"] == ["a.zarr", "b.zarr", "c.zarr", "d.zarr"]  # no partial store of e


def test_the_model_is_loaded_once_per_worker_process(runs) -> None:
    done = [s["result"] for s in runs["report1"]["stacks"] if s["status"] == "done"]
    pids = [r["pid"] for r in done]
    assert len(done) == 4 and len(set(pids)) <= 2
    assert max(pids.count(pid) for pid in pids) >= 2  # some worker did several stacks...
    assert all(r["model_loads"] == 1 for r in done)  # ...and loaded the weights once


def test_rerun_skips_finished_stacks_and_does_the_fixed_one(runs) -> None:
    proc = runs["second"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    skipped = [line for line in lines if line.startswith("skipped")]
    assert len(skipped) == 4 and all("finished earlier" in line for line in skipped)
    assert [line.split()[1] for line in lines if line.startswith("done")] == ["e.tif"]
    assert lines[-1].startswith("napari-sam2 batch: 1 done, 4 skipped (finished earlier), 0 failed")
    assert {k: v for k, v in runs["after"].items() if not k.startswith("e.zarr")} == runs["before"]
    assert read_labels(runs["out"] / "e.zarr").data.shape == (6, 120, 160)
    assert leftovers(runs["out"]) == []


def test_batch_gives_exactly_the_labels_of_a_single_segment_run(runs, tmp_path: Path) -> None:
    # with the same torch thread count (thread counts change float sums, so a boundary pixel may flip)
    d = runs["dir"]
    single = tmp_path / "a.zarr"
    proc = run_cli("segment", str(d / "in" / "a.tif"), "--prompts", str(d / "prompts" / "a.csv"), *MODEL_ARGS,
                   "-o", str(single), "--torch-threads", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    from_batch, from_segment = read_labels(runs["out"] / "a.zarr"), read_labels(single)
    np.testing.assert_array_equal(np.asarray(from_batch.data), np.asarray(from_segment.data))
    assert from_batch.metadata["prompts"] == from_segment.metadata["prompts"]
    assert np.asarray(from_batch.data).any()


def test_a_model_that_does_not_load_stops_the_batch_with_one_line(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", make_stack())
    (tmp_path / "s.json").write_text('{"version": 1, "objects": [{"id": 1, "points": [{"frame": 0, "x": 50, "y": 60}]}]}')
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(CHECKPOINT.read_bytes()[:4000])
    proc = run_cli("batch", str(tmp_path / "s.npy"), "--prompts-dir", str(tmp_path), "--checkpoint", str(corrupt),
                   "-o", str(tmp_path / "out"), "--scheduler", "local:1")  # fmt: skip
    # the summary goes to stdout; the one error line to stderr
    assert_one_line_error(proc, "corrupt.pt", "corrupt")
    assert not (tmp_path / "out" / "s.zarr").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_one_line_naming_the_address(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", make_stack(n_frames=2))
    (tmp_path / "s.json").write_text('{"version": 1, "objects": [{"id": 1, "points": [{"frame": 0, "x": 5, "y": 6}]}]}')
    address = f"tcp://127.0.0.1:{_free_port()}"
    proc = run_cli("batch", str(tmp_path / "s.npy"), "--prompts-dir", str(tmp_path), *MODEL_ARGS,
                   "-o", str(tmp_path / "out"), "--scheduler", address, "--connect-timeout", "1")  # fmt: skip
    assert_one_line_error(proc, address, "cannot reach the dask scheduler")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_without_distributed_batch_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['distributed'] = None\n"  # as if it were not installed
        "from napari_sam2.cli import main\n"
        f"sys.exit(main(['batch', {str(tmp_path / 's.npy')!r}, '--prompts-dir', {str(tmp_path)!r}, '-o', 'x']))"
    )
    np.save(tmp_path / "s.npy", make_stack(n_frames=1))
    (tmp_path / "s.json").write_text('{"version": 1, "objects": [{"id": 1, "points": [{"frame": 0, "x": 5, "y": 6}]}]}')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert_one_line_error(proc, "pip install 'napari-sam2[batch]'")


# ---------------------------------------------------------------------------- in-process pieces


def test_cached_model_loads_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "_MODELS", {})
    spec = ModelSpec(str(CHECKPOINT), str(CONFIG))
    loads = pipeline.model_loads()
    first = pipeline.cached_model(spec)
    assert pipeline.cached_model(spec) is first and pipeline.cached_model(replace(spec)) is first
    assert pipeline.model_loads() == loads + 1


def test_prompt_files_are_found_by_stem(tmp_path: Path) -> None:
    (tmp_path / "cells.csv").write_text("index,axis-0,axis-1,axis-2\n")
    (tmp_path / "cells.boxes.csv").write_text("index,shape-type,vertex-index,axis-0,axis-1,axis-2\n")
    assert find_prompt_files("data/cells.ome.tif", tmp_path) == (tmp_path / "cells.csv", tmp_path / "cells.boxes.csv")
    (tmp_path / "cells.json").write_text("{}")
    with pytest.raises(InputError, match="two prompt files"):
        find_prompt_files("cells.tif", tmp_path)
    with pytest.raises(InputError, match="no prompts for other.npy"):
        find_prompt_files("other.npy", tmp_path)


def test_two_inputs_with_one_stem_are_refused(tmp_path: Path) -> None:
    template = SegmentJob(input="", prompts="", output="", model=ModelSpec("m.pt"))
    with pytest.raises(InputError, match=r"would both write x\.zarr"):
        plan_jobs(["a/x.tif", "b/x.npy"], tmp_path, tmp_path / "out", template)


@pytest.mark.parametrize("direction", ["both", "forward", "backward"])
def test_progress_counts_every_frame_written_from_frame_0(tmp_path: Path, direction: str) -> None:
    # prompts on frame 0: 'both' is forward only, and 'backward' still writes frame 0
    frame = 0
    np.save(tmp_path / "s.npy", make_stack(n_frames=4)[:, :64, :64])
    prompts = tmp_path / "s.json"
    prompts.write_text(json.dumps({"version": 1, "objects": [{"id": 1, "points": [{"frame": frame, "x": 40, "y": 40}]}]}))
    model = ModelSpec(str(CHECKPOINT), str(CONFIG))
    job = SegmentJob(str(tmp_path / "s.npy"), str(prompts), str(tmp_path / "o.zarr"), model, direction=direction)
    steps = pipeline.segment_steps(job)
    progress = []
    while True:
        try:
            progress.append(next(steps))
        except StopIteration as stop:
            result = stop.value
            break
    reached = {"forward": 4, "backward": 1, "both": 4}[direction]
    assert result.frames_reached == reached and result.frames == 4
    assert [p.done for p in progress] == list(range(progress[0].total + 1))
    labels = np.asarray(read_labels(tmp_path / "o.zarr").data)
    assert labels[frame].any()


def test_a_second_batch_on_the_same_client_runs_its_own_tasks(tmp_path: Path) -> None:
    # dask returns a held result for a reused task key: each run must submit fresh keys
    distributed = pytest.importorskip("distributed")
    template = SegmentJob(input=str(tmp_path / "missing.npy"), prompts="p.json", output="", model=ModelSpec("m.pt"))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        first = list(batch.run_batch(client, [replace(template, output=str(tmp_path / "one.zarr"))]))
        second = list(batch.run_batch(client, [replace(template, output=str(tmp_path / "two.zarr"))]))
    assert [o.output for o in first + second] == [str(tmp_path / "one.zarr"), str(tmp_path / "two.zarr")]
    assert all(o.status == "failed" and "does not exist" in o.error for o in first + second)
