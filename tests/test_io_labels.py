"""OME-Zarr label stacks: round trips, atomic commit, and what other readers see."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_sam2.errors import InputError, OutputExistsError, SAM2Error
from napari_sam2.io import LabelWriter, read_labels, write_labels


def stack(shape: tuple[int, ...] = (5, 40, 60), seed: int = 0) -> np.ndarray:
    """A label stack with a few rectangles per frame (non-square frames)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    for frame in labels.reshape(-1, *shape[-2:]):
        for obj in range(1, 4):
            y, x = rng.integers(0, shape[-2] - 8), rng.integers(0, shape[-1] - 8)
            frame[y : y + 8, x : x + 6] = obj
    return labels


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_round_trip_keeps_data_scale_axes_units_and_metadata(tmp_path: Path) -> None:
    labels = stack()
    out = tmp_path / "out.zarr"
    meta = {"model": "sam2.1_hiera_tiny", "prompts": {"version": 1, "axis": 0, "objects": []}}
    write_labels(
        out, labels, scale=(2.0, 0.5, 0.25), axes="tyx", units=("second", "micrometer", "micrometer"), metadata=meta
    )
    stored = read_labels(out)
    data, scale, metadata = stored  # unpacks like a tuple
    assert data.dtype == np.uint16 and data.chunksize == (1, 40, 60)
    np.testing.assert_array_equal(data.compute(), labels)
    assert scale == (2.0, 0.5, 0.25)
    assert stored.axes == ("t", "y", "x") and stored.units == ("second", "micrometer", "micrometer")
    assert metadata["model"] == "sam2.1_hiera_tiny" and metadata["prompts"] == meta["prompts"]
    assert metadata["package_version"]
    assert listing(tmp_path) == ["out.zarr"]  # no temporary left behind


def test_2d_labels_round_trip(tmp_path: Path) -> None:
    labels = stack((40, 60))
    write_labels(tmp_path / "a.zarr", labels)
    data, scale, _ = read_labels(tmp_path / "a.zarr")
    np.testing.assert_array_equal(data.compute(), labels)
    assert scale == (1.0, 1.0) and read_labels(tmp_path / "a.zarr").axes == ("y", "x")


def test_frames_stream_in_any_order_and_unwritten_frames_are_zero(tmp_path: Path) -> None:
    labels = stack()
    with LabelWriter(tmp_path / "s.zarr", labels.shape, axes="zyx", scale=(3, 1, 1)) as writer:
        assert not (tmp_path / "s.zarr").exists()  # appears only at commit
        for t in (4, 1, 2):  # e.g. a backward then forward propagation that skipped frames 0 and 3
            writer.write_frame(t, labels[t])
    data = read_labels(tmp_path / "s.zarr").data.compute()
    np.testing.assert_array_equal(data[[1, 2, 4]], labels[[1, 2, 4]])
    assert not data[[0, 3]].any()
    chunks = list((tmp_path / "s.zarr" / "labels" / "sam2" / "0" / "c").iterdir())
    assert len(chunks) == 3  # only written frames take disk space


def test_label_dtype_follows_the_largest_label(tmp_path: Path) -> None:
    big = np.zeros((2, 8, 8), np.int64)
    big[1, 2:4, 2:4] = 70_000
    write_labels(tmp_path / "big.zarr", big)
    data = read_labels(tmp_path / "big.zarr").data
    assert data.dtype == np.uint32 and int(data.max()) == 70_000
    with pytest.raises(InputError, match=r"dtype=np\.uint32"), LabelWriter(tmp_path / "x.zarr", (2, 8, 8)) as w:
        w.write_frame(1, big[1])
    with pytest.raises(InputError, match="unsigned"):
        LabelWriter(tmp_path / "x.zarr", (2, 8, 8), dtype=np.int32)


def test_exception_inside_the_writer_leaves_no_output_and_no_partial(tmp_path: Path) -> None:
    labels = stack()
    with pytest.raises(RuntimeError, match="propagation failed"), LabelWriter(tmp_path / "o.zarr", labels.shape) as w:
        w.write_frame(0, labels[0])
        assert any(name.startswith("o.zarr.partial-") for name in listing(tmp_path))
        raise RuntimeError("propagation failed")
    assert listing(tmp_path) == []


def test_abort_removes_a_chunk_that_lands_after_the_first_delete(tmp_path: Path, monkeypatch) -> None:
    # Ctrl-C inside write_frame leaves zarr's I/O thread to finish its chunk, and that write
    # recreates the store's folders after abort has deleted them (a run of the CLI's Ctrl-C
    # test left such a store): a chunk written right after abort's first delete must not
    # survive it. The late write is made to land there exactly, not after a sleep, so the
    # test means the same on a loaded machine.
    import napari_sam2.io.labels as labels_module

    labels = stack()
    w = LabelWriter(tmp_path / "o.zarr", labels.shape)
    w.write_frame(0, labels[0])
    chunk = w.partial_path / "labels" / "late" / "c" / "0"
    real_rmtree = labels_module.shutil.rmtree
    deletes = []

    def rmtree_then_a_late_chunk(path, *args, **kwargs) -> None:
        real_rmtree(path, *args, **kwargs)
        deletes.append(path)
        if len(deletes) == 1:  # zarr's I/O thread finishes its chunk just after the first delete
            chunk.parent.mkdir(parents=True, exist_ok=True)
            chunk.write_bytes(b"chunk")

    monkeypatch.setattr(labels_module.shutil, "rmtree", rmtree_then_a_late_chunk)
    w.abort()
    assert len(deletes) >= 2 and listing(tmp_path) == []


def test_existing_output_is_refused_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    write_labels(out, stack())
    with pytest.raises(OutputExistsError, match=str(out)) as err:
        LabelWriter(out, (5, 40, 60))
    assert isinstance(err.value, FileExistsError) and isinstance(err.value, SAM2Error)
    # created by someone else while we were writing: refused at commit, our partial removed
    late = tmp_path / "late.zarr"
    writer = LabelWriter(late, (5, 40, 60))
    late.mkdir()
    (late / "theirs.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        writer.commit()
    assert listing(tmp_path) == ["late.zarr", "o.zarr"] and listing(late) == ["theirs.txt"]


def test_overwrite_replaces_only_at_commit_and_an_unfinished_writer_keeps_the_old(tmp_path: Path) -> None:
    out = tmp_path / "o.zarr"
    old, new = stack(seed=1), stack(seed=2)
    write_labels(out, old)
    abandoned = LabelWriter(out, old.shape, overwrite=True)  # e.g. the process is killed mid-way
    abandoned.write_frame(0, new[0])
    np.testing.assert_array_equal(read_labels(out).data.compute(), old)
    abandoned.abort()
    np.testing.assert_array_equal(read_labels(out).data.compute(), old)
    write_labels(out, new, overwrite=True)
    np.testing.assert_array_equal(read_labels(out).data.compute(), new)
    assert listing(tmp_path) == ["o.zarr"]  # the old store is gone, no partial or .old left


def test_writer_rejects_bad_frames_and_use_after_commit(tmp_path: Path) -> None:
    writer = LabelWriter(tmp_path / "w.zarr", (3, 10, 20), axes="tyx")
    with pytest.raises(InputError, match=r"shape \(20, 10\), expected \(10, 20\)"):
        writer.write_frame(0, np.zeros((20, 10), np.uint16))
    with pytest.raises(InputError, match="frame 3 is outside"):
        writer.write_frame(3, np.zeros((10, 20), np.uint16))
    with pytest.raises(InputError, match="integers"):
        writer.write_frame(0, np.zeros((10, 20), np.float32))
    writer.commit()
    with pytest.raises(SAM2Error, match="already committed"):
        writer.write_frame(0, np.zeros((10, 20), np.uint16))
    with pytest.raises(InputError, match="'tyx'"):
        LabelWriter(tmp_path / "v.zarr", (3, 10, 20), axes="cyx")
    with pytest.raises(InputError, match="plain JSON"):
        LabelWriter(tmp_path / "v.zarr", (3, 10, 20), metadata={"a": np.zeros(2)})
    with pytest.raises(InputError, match="no zarr group"):
        read_labels(tmp_path / "missing.zarr")


def test_store_validates_as_ngff_0_5_image_with_labels(tmp_path: Path) -> None:
    models = pytest.importorskip("ome_zarr_models.v05")
    write_labels(tmp_path / "o.zarr", stack(), scale=(3, 1, 1), units=("micrometer", None, None))
    root = zarr.open_group(tmp_path / "o.zarr", mode="r")
    image = models.Image.from_zarr(root)  # validates the root image and labels/sam2 with it
    assert [a.name for a in image.attributes.ome.multiscales[0].axes] == ["z", "y", "x"]
    models.Labels.from_zarr(root["labels"])
    assert list((tmp_path / "o.zarr" / "0").iterdir()) == [tmp_path / "o.zarr" / "0" / "zarr.json"]  # 0 bytes


def test_ome_zarr_py_reads_the_labels(tmp_path: Path) -> None:
    pytest.importorskip("ome_zarr")
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    labels = stack()
    write_labels(tmp_path / "o.zarr", labels, scale=(3, 0.5, 0.5))
    nodes = list(Reader(parse_url(str(tmp_path / "o.zarr")))())
    (label,) = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    np.testing.assert_array_equal(np.asarray(label.data[0]), labels)
    assert label.metadata["coordinateTransformations"][0][0]["scale"] == [3.0, 0.5, 0.5]


@pytest.mark.filterwarnings("ignore:Call to deprecated class Scaler:DeprecationWarning")
def test_ome_zarr_py_written_labels_are_read(tmp_path: Path) -> None:
    pytest.importorskip("ome_zarr")
    from ome_zarr.writer import write_image
    from ome_zarr.writer import write_labels as ome_write_labels

    labels = stack()
    root = zarr.open_group(tmp_path / "theirs.zarr", mode="w")
    write_image(np.zeros(labels.shape, np.uint8), root, axes="zyx", scale_factors=[])
    scale = {"z": 4.0, "y": 1.0, "x": 1.0}
    ome_write_labels(labels, root, name="cells", axes="zyx", scale=scale, scale_factors=[2], scaler=None)
    data, scale, metadata = read_labels(tmp_path / "theirs.zarr", name="cells")
    np.testing.assert_array_equal(data.compute(), labels)
    assert scale == (4.0, 1.0, 1.0) and metadata == {}


def open_with_napari_ome_zarr(path: Path) -> list:
    pytest.importorskip("napari_ome_zarr")
    from napari.components import ViewerModel
    from napari.plugins import _initialize_plugins

    _initialize_plugins()
    return ViewerModel().open(str(path), plugin="napari-ome-zarr")


def test_napari_ome_zarr_opens_a_labels_layer_without_touching_parents(tmp_path: Path) -> None:
    from napari.layers import Image, Labels

    nested = tmp_path / "project" / "results"
    labels = stack()
    write_labels(nested / "o.zarr", labels, scale=(3.0, 0.5, 0.5), axes="zyx")
    layers = open_with_napari_ome_zarr(nested / "o.zarr")
    (label_layer,) = [layer for layer in layers if isinstance(layer, Labels)]
    np.testing.assert_array_equal(np.asarray(label_layer.data), labels)
    np.testing.assert_array_equal(label_layer.scale, [3.0, 0.5, 0.5])
    assert [type(layer) for layer in layers] == [Image, Labels]
    # napari-ome-zarr opens a bare root label image by writing zarr.json two levels up; ours it does not
    assert listing(tmp_path) == ["project"] and listing(tmp_path / "project") == ["results"]
    assert listing(nested) == ["o.zarr"]


def test_image_copy_with_channels_is_stored_in_ngff_axis_order(tmp_path: Path) -> None:
    labels = stack((3, 20, 30))
    image = np.random.default_rng(0).integers(0, 4000, (3, 20, 30, 2)).astype(np.uint16)  # (T, Y, X, C)
    write_labels(tmp_path / "o.zarr", labels, axes="tyx", scale=(1, 0.5, 0.5), image=image)
    root = zarr.open_group(tmp_path / "o.zarr", mode="r")
    np.testing.assert_array_equal(root["0"][:], np.moveaxis(image, -1, 1))  # (T, C, Y, X)
    axes = [a["name"] for a in root.attrs["ome"]["multiscales"][0]["axes"]]
    assert axes == ["t", "c", "y", "x"] and root["0"].metadata.dimension_names == ("t", "c", "y", "x")
    np.testing.assert_array_equal(read_labels(tmp_path / "o.zarr").data.compute(), labels)
    zstack = stack((4, 20, 30))
    zimage = np.random.default_rng(1).random((4, 20, 30, 3)).astype(np.float32)  # (Z, Y, X, C)
    write_labels(tmp_path / "z.zarr", zstack, axes="zyx", image=zimage)
    np.testing.assert_array_equal(
        zarr.open_array(tmp_path / "z.zarr" / "0", mode="r")[:], np.moveaxis(zimage, -1, 0)
    )  # (C, Z, Y, X)
    with pytest.raises(InputError, match="does not match the labels"):
        LabelWriter(tmp_path / "bad.zarr", (3, 20, 30), image=np.zeros((3, 20, 31)))


def test_io_imports_no_torch_qt_or_napari() -> None:
    code = (
        "import sys, napari_sam2.io; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'napari', 'qtpy', 'PyQt6', 'PyQt5'}); "
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
