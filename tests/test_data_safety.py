"""Data safety: --overwrite replaces only what napari-sam2 wrote, never an input, and a kill at
any moment of a commit leaves the earlier result recoverable (issue 24).

The CLI cases run the real command in a subprocess; each one checks that the user's file is
still there, byte for byte.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam2.errors import InputError, OutputExistsError
from napari_sam2.io import read_labels, write_labels
from napari_sam2.io.labels import LabelWriter, is_label_store, recover

from .cli_helpers import MODEL_ARGS, assert_one_line_error, leftovers, make_stack, save_points_csv
from .cli_helpers import run_cli as _run_cli


def run_cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
    """The real ``napari-sam2`` console script, as a user types it."""
    return _run_cli(*args, entry_point=True, **kwargs)


def digest(path: Path) -> str:
    """sha256 of a file, or of every file below a folder (names and bytes)."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
        return h.hexdigest()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("napari")
    d = tmp_path_factory.mktemp("safety")
    stack = make_stack()
    tifffile.imwrite(d / "stack.tif", stack)
    image = d / "image.ome.zarr"  # an OME-Zarr image (with a stored image, not a placeholder)
    write_labels(image, np.zeros(stack.shape, np.uint16), image=stack, axes="tyx")
    return {"dir": d, "tif": d / "stack.tif", "points": save_points_csv(d / "points.csv"), "zarr": image}


def segment(files: dict[str, Path], *args: str, input: Path | None = None) -> subprocess.CompletedProcess:
    source = files["tif"] if input is None else input
    return run_cli("segment", str(source), "--prompts", str(files["points"]), *MODEL_ARGS, *args)


# --------------------------------------------------------------------------- segment


@pytest.mark.parametrize("which", ["tif", "points", "zarr"])
def test_overwrite_never_replaces_an_input_of_the_run(files, which: str) -> None:
    target = files[which]
    before = digest(target)
    source = files["zarr"] if which == "zarr" else files["tif"]
    proc = segment(files, "-o", str(target), "--overwrite", input=source)
    assert_one_line_error(proc, "would replace the input", target.name)
    assert digest(target) == before
    assert leftovers(files["dir"]) == []


def test_overwrite_refuses_a_folder_or_file_that_is_not_our_label_store(files, tmp_path: Path) -> None:
    results = tmp_path / "myresults"
    results.mkdir()
    (results / "table.csv").write_text("cell,area\n1,20\n")
    plain = tmp_path / "file.zarr"
    plain.write_text("not a store")
    other = tmp_path / "other.zarr"  # an OME-Zarr store another tool wrote (no napari_sam2 metadata)
    import zarr

    zarr.open_group(other, mode="w").attrs["ome"] = {"version": "0.5", "multiscales": []}
    link = tmp_path / "link.zarr"
    link.symlink_to(results)
    for target, kind in ((results, "a folder"), (plain, "a file"), (other, "a folder"), (link, "a link")):
        before = digest(target)
        proc = segment(files, "-o", str(target), "--overwrite")
        assert_one_line_error(proc, str(target), f"is {kind}", "replaces only a label store that napari-sam2 wrote")
        assert digest(target) == before and target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.zarr", "link.zarr", "myresults", "other.zarr"]


def test_overwrite_replaces_our_earlier_store(files, tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    write_labels(out, np.full((6, 120, 160), 7, np.uint16))
    proc = segment(files, "-o", str(out), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    labels = np.asarray(read_labels(out).data)
    assert labels.max() == 2 and (labels == 7).sum() == 0  # the new labels, objects 1 and 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]  # no .old or .partial left


def test_our_own_label_store_is_refused_as_an_input(files, tmp_path: Path) -> None:
    store = tmp_path / "result.zarr"
    write_labels(store, np.ones((6, 120, 160), np.uint16))  # no image=: the root is a zero placeholder
    proc = segment(files, "-o", str(tmp_path / "again.zarr"), input=store)
    assert_one_line_error(proc, "result.zarr", "label store", "placeholder")
    assert not (tmp_path / "again.zarr").exists()


# --------------------------------------------------------------------------- batch


def test_batch_in_place_fails_the_stack_and_keeps_the_image(files, tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    write_labels(d / "x.zarr", np.zeros((6, 120, 160), np.uint16), image=make_stack(), axes="tyx")
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    save_points_csv(prompts / "x.csv")
    before = digest(d / "x.zarr")
    for extra in ([], ["--overwrite"]):
        proc = run_cli("batch", str(d / "x.zarr"), "--prompts-dir", str(prompts), "-o", str(d), *MODEL_ARGS,
                       "--scheduler", "local:1", *extra)  # fmt: skip
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert "FAILED   x.zarr: the output" in proc.stdout and "would replace the input" in proc.stdout
        assert "skipped" not in proc.stdout.splitlines()[0]
        assert "0 done, 0 skipped (finished earlier), 1 failed" in proc.stdout
        assert digest(d / "x.zarr") == before


def test_batch_fails_a_stack_whose_output_is_someone_elses(files, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "stack.zarr").mkdir(parents=True)
    (out / "stack.zarr" / "notes.txt").write_text("mine")
    proc = run_cli("batch", str(files["tif"]), "--prompts-dir", str(tmp_path / "none"), "-o", str(out), *MODEL_ARGS,
                   "--scheduler", "local:1")  # fmt: skip
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "FAILED   stack.tif:" in proc.stdout and "not a label store that napari-sam2 wrote" in proc.stdout
    assert (out / "stack.zarr" / "notes.txt").read_text() == "mine"


def test_batch_report_never_replaces_an_input(files, tmp_path: Path) -> None:
    before = digest(files["points"])
    proc = run_cli("batch", str(files["tif"]), "--prompts-dir", str(files["dir"]), "-o", str(tmp_path / "o"),
                   *MODEL_ARGS, "--scheduler", "local:1", "--report", str(files["points"]))  # fmt: skip
    assert_one_line_error(proc, "--report", "points.csv")
    assert digest(files["points"]) == before
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- segment-image


def test_segment_image_asks_before_replacing_and_never_replaces_its_input(tmp_path: Path) -> None:
    image = tmp_path / "img.tif"
    tifffile.imwrite(image, make_stack(1)[0])
    point = ["--point", "60", "50", *MODEL_ARGS]
    before = digest(image)
    proc = run_cli("segment-image", str(image), *point, "-o", str(image), "--overwrite")
    assert_one_line_error(proc, "would replace the input", code=1)
    assert digest(image) == before
    other = tmp_path / "theirs.tif"
    tifffile.imwrite(other, np.ones((4, 4), np.uint8))
    for extra in ([], ["--overwrite"]):
        proc = run_cli("segment-image", str(image), *point, "-o", str(other), *extra)
        assert_one_line_error(proc, "theirs.tif", "not a mask that segment-image wrote", code=1)
    assert np.array_equal(tifffile.imread(other), np.ones((4, 4), np.uint8))
    mask = tmp_path / "mask.tif"
    proc = run_cli("segment-image", str(image), *point, "-o", str(mask))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith(", model small_sam2.1"), proc.stdout
    umask = os.umask(0o022)
    os.umask(umask)
    assert mask.stat().st_mode & 0o777 == 0o666 & ~umask  # as readable as a file written directly
    first = tifffile.imread(mask)
    assert first.shape == (120, 160) and set(np.unique(first)) <= {0, 255}
    proc = run_cli("segment-image", str(image), *point, "-o", str(mask))
    assert_one_line_error(proc, "mask.tif", "already exists", "--overwrite", code=1)
    proc = run_cli("segment-image", str(image), "--point", "120", "36", *MODEL_ARGS, "-o", str(mask), "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert not np.array_equal(tifffile.imread(mask), first)  # replaced: another object
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tif", "mask.tif", "theirs.tif"]  # no temp file


# --------------------------------------------------------------------------- kills and races

KILL_BETWEEN_RENAMES = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from napari_sam2.io import write_labels

    real = os.rename
    def rename(src, dst):
        real(src, dst)
        if ".old-" in str(dst):  # the old store is moved away, the new one not yet in place
            os._exit(9)
    os.rename = rename
    write_labels(sys.argv[1], np.full((6, 120, 160), 5, np.uint16), overwrite=True)
    """
)


def test_a_kill_between_the_renames_of_an_overwrite_is_rolled_back_by_the_next_run(files, tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    write_labels(out, np.full((6, 120, 160), 3, np.uint16))
    killed = subprocess.run([sys.executable, "-c", KILL_BETWEEN_RENAMES, str(out)], capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert not out.exists() and [n.split("-")[0] for n in names] == ["out.zarr.old", "out.zarr.partial"], names
    proc = segment(files, "-o", str(out))  # without --overwrite: the old result is back, and kept
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("napari-sam2: note: restored ") and "interrupted" in lines[0], lines
    assert any("removed out.zarr.partial-" in line for line in lines), lines
    assert lines[-1].startswith("napari-sam2: error: ") and "already exists" in lines[-1]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]
    assert (np.asarray(read_labels(out).data) == 3).all()


def test_recover_leaves_a_live_writers_store_and_other_peoples_files(tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    live = LabelWriter(out, (2, 8, 8))  # this process is alive: its partial is not garbage
    (tmp_path / "o.zarr.old-notours").mkdir()  # named like ours, but not a store of ours
    assert recover(out) == []
    assert live.partial_path.exists() and (tmp_path / "o.zarr.old-notours").exists()
    live.commit()
    assert is_label_store(out) and not is_label_store(tmp_path / "o.zarr.old-notours")


def test_an_interrupted_batch_removes_only_dead_writers_partials(tmp_path: Path) -> None:
    from napari_sam2.batch import remove_partials
    from napari_sam2.pipeline import ModelSpec, SegmentJob

    out = tmp_path / "x.zarr"
    live = LabelWriter(out, (2, 8, 8))  # another run, still writing the same output
    dead = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os
        from napari_sam2.io.labels import LabelWriter
        LabelWriter({str(out)!r}, (2, 8, 8))
        os._exit(9)  # killed: its partial stays
    """)], capture_output=True, text=True)  # fmt: skip
    assert dead.returncode == 9, dead.stderr
    assert len(leftovers(tmp_path)) == 2
    remove_partials([SegmentJob(input="in.tif", prompts="p.csv", output=str(out), model=ModelSpec("m"))])
    assert leftovers(tmp_path) == [live.partial_path.name]
    live.abort()


def _commit_at_once(args: tuple) -> str:
    barrier, path, value, overwrite = args
    try:
        writer = LabelWriter(path, (2, 16, 16), overwrite=overwrite)
        writer.write_frame(0, np.full((16, 16), value, np.uint16))
        writer.write_frame(1, np.full((16, 16), value, np.uint16))
        barrier.wait(timeout=120)
        writer.commit()
    except OutputExistsError:
        return "exists"
    except Exception as exc:  # noqa: BLE001 - what the test must not see
        return f"{type(exc).__name__}: {exc}"
    return f"ok {value}"


def test_six_writers_of_one_output_end_in_one_result_and_clean_errors(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(6) as pool:
        for round_, overwrite in enumerate([False] * 4 + [True] * 2):
            out = tmp_path / f"r{round_}.zarr"
            barrier = manager.Barrier(6)
            outcomes = pool.map(_commit_at_once, [(barrier, out, v, overwrite) for v in range(1, 7)])
            winners = [o for o in outcomes if o.startswith("ok")]
            if overwrite:
                assert len(winners) == 6, outcomes  # each replaced the one before, in turn
            else:
                assert len(winners) == 1 and outcomes.count("exists") == 5, outcomes
            stored = np.asarray(read_labels(out).data)
            assert len(np.unique(stored)) == 1 and f"ok {stored[0, 0, 0]}" in winners
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"r{i}.zarr" for i in range(6))


def test_an_output_that_appears_just_before_the_rename_is_a_clean_exists_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "o.zarr"
    writer = LabelWriter(out, (2, 8, 8))
    real = os.rename

    def rename(src: str, dst: str) -> None:  # another writer, on a file system without locks, wins the race
        if Path(dst) == out and not out.exists():
            out.mkdir()
            (out / "theirs").write_text("x")
        real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OutputExistsError, match="already exists"):
        writer.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.zarr"] and (out / "theirs").read_text() == "x"


# --------------------------------------------------------------------------- the napari writer


def test_napari_writer_replaces_only_our_store_and_our_prompts_file(tmp_path: Path) -> None:
    from napari_sam2._writer import prompts_path, save_labels

    sam2 = {"prompts": {"version": 1, "axis": 0, "objects": [{"id": 1, "points": [
        {"frame": 0, "x": 3, "y": 4, "positive": True}], "boxes": []}]}}  # fmt: skip
    out = tmp_path / "saved.zarr"
    save_labels(out, np.ones((2, 8, 8), np.uint16), sam2=sam2)
    save_labels(out, np.full((2, 8, 8), 2, np.uint16), sam2=sam2)  # our own earlier save: replaced
    assert (np.asarray(read_labels(out).data) == 2).all()
    mine = tmp_path / "mine.zarr"
    mine.mkdir()
    (mine / "a.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="not a label store that napari-sam2 wrote"):
        save_labels(mine, np.ones((2, 8, 8), np.uint16))
    assert [p.name for p in mine.iterdir()] == ["a.txt"]
    sidecar = prompts_path(tmp_path / "new.zarr")
    sidecar.write_text("my notes, not prompts")
    with pytest.raises(OutputExistsError, match="not a napari-sam2 prompts file"):
        save_labels(tmp_path / "new.zarr", np.ones((2, 8, 8), np.uint16), sam2=sam2)
    assert sidecar.read_text() == "my notes, not prompts" and not (tmp_path / "new.zarr").exists()


def test_output_inside_an_input_folder_is_refused() -> None:
    from napari_sam2.io.labels import check_output_spares

    here = Path(__file__).parent
    with pytest.raises(InputError, match="lies inside the input"):
        check_output_spares(here / "fixtures" / "x.zarr", [here / "fixtures"])
    with pytest.raises(InputError, match="would replace the input"):
        check_output_spares(here, [here / "fixtures" / "small_sam2.1" / "config.json"])
    check_output_spares(here / "elsewhere.zarr", [here / "fixtures" / "small_sam2.1" / "config.json"])
