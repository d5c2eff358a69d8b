"""Opening our label stores in napari: the npe2 reader, which reader napari picks, the round trip.

Issue 22 items 3 and 4: ``napari result.zarr`` used to preselect napari's builtin reader,
which fails on our stores (``No arrays found in zarr group``), and napari-ome-zarr opens the
store's all-zero placeholder image as an opaque black layer on top of everything. Our reader
gives the labels as one Labels layer (plus the stored image, if the store holds a real one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_sam2.io import Prompt, prompts_to_dict, read_labels, write_labels

npe2 = pytest.importorskip("npe2")

SCALE = (1.0, 0.5, 0.5)
UNITS = ("second", "micrometer", "micrometer")


def _labels() -> np.ndarray:
    labels = np.zeros((4, 12, 16), np.uint16)
    labels[1:3, 2:6, 3:9] = 1
    labels[2:, 7:11, 10:15] = 2
    return labels


def _sam2_metadata() -> dict:
    prompt = Prompt(1, 1, np.array([[5.0, 3.0]], np.float32), np.array([1], np.int32), None)
    return {"image": "cells", "model": "small", "video_axis": 0, "prompts": prompts_to_dict([prompt], axis=0)}


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A (t, y, x) label store as ``napari-sam2 segment`` writes it: placeholder image at the root."""
    return write_labels(
        tmp_path / "result.zarr", _labels(), scale=SCALE, axes="tyx", units=UNITS, metadata=_sam2_metadata()
    )


@pytest.fixture
def image_store(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A label store that holds its image (``image=``)."""
    image = np.arange(4 * 12 * 16, dtype=np.uint16).reshape(4, 12, 16)
    path = write_labels(
        tmp_path / "with_image.zarr", _labels(), scale=SCALE, axes="tyx", units=UNITS, image=image,
        metadata=_sam2_metadata(),
    )  # fmt: skip
    return path, image


@pytest.fixture
def foreign_zarr(tmp_path: Path) -> Path:
    """An OME-Zarr-looking image store that napari-sam2 did not write."""
    root = zarr.open_group(tmp_path / "other.zarr", mode="w", zarr_format=3)
    root.create_array("0", shape=(8, 8), dtype=np.uint8)
    root.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": [{"name": "y"}, {"name": "x"}],
                                                            "datasets": [{"path": "0"}]}]}  # fmt: skip
    return tmp_path / "other.zarr"


# --------------------------------------------------------------------------- read_labels (item 8)


def test_stored_labels_index_like_they_unpack(store: Path) -> None:
    stored = read_labels(store)
    data, scale, metadata = stored
    assert len(stored) == 3
    assert stored[0] is data and stored[1] == scale == SCALE and stored[2] is metadata
    assert stored[-1] is metadata and stored[:2] == (data, scale)
    np.testing.assert_array_equal(np.asarray(stored[0]), _labels())
    with pytest.raises(IndexError):
        stored[3]


# --------------------------------------------------------------------------- the manifest


def test_the_installed_plugin_is_offered_for_our_store(store: Path) -> None:
    # a store is a folder: npe2 offers it only to readers that accept directories.
    # A private plugin manager: initialising napari's global one here, before a viewer test,
    # makes a later _initialize_plugins() register our commands twice (test_io_labels.py)
    pm = npe2.PluginManager()
    pm.discover()
    assert "napari-sam2" in {r.plugin_name for r in pm.iter_compatible_readers([str(store)])}


# --------------------------------------------------------------------------- the reader, without a viewer


def test_reader_reads_only_our_stores_itself(foreign_zarr: Path, tmp_path: Path) -> None:
    """Files and missing paths are not ours; folders we did not write go to napari's other readers."""
    from napari_sam2._reader import napari_get_reader, read_label_store, read_with_another_reader

    assert napari_get_reader(str(tmp_path / "missing.zarr")) is None
    (tmp_path / "file.zarr").write_text("not a store")
    assert napari_get_reader(str(tmp_path / "file.zarr")) is None
    assert napari_get_reader(str(foreign_zarr)) is read_with_another_reader
    assert napari_get_reader([str(foreign_zarr)]) is read_with_another_reader
    assert napari_get_reader(str(tmp_path)) is read_with_another_reader  # an ordinary folder
    assert napari_get_reader(str(foreign_zarr)) is not read_label_store


def test_reader_gives_lazy_labels_with_the_store_metadata(store: Path) -> None:
    import dask.array as da

    from napari_sam2._reader import napari_get_reader

    reader = napari_get_reader(str(store))
    assert reader is not None
    (layer,) = reader(str(store))  # no image layer for the placeholder
    data, meta, kind = layer
    assert kind == "labels" and isinstance(data, da.Array)
    np.testing.assert_array_equal(data.compute(), _labels())
    assert meta["name"] == "result"
    assert tuple(meta["scale"]) == SCALE and tuple(meta["translate"]) == (0.0, 0.0, 0.0)
    assert tuple(meta["axis_labels"]) == ("t", "y", "x") and tuple(meta["units"]) == UNITS
    sam2 = meta["metadata"]["napari_sam2"]
    assert sam2["axes"] == "tyx" and sam2["video_axis"] == 0
    assert sam2["prompts"] == _sam2_metadata()["prompts"] and sam2["model"] == "small"
    assert reader([str(store)])[0][2] == "labels"  # napari may pass a list of one path


# --------------------------------------------------------------------------- in a real viewer


def _accept(dialog) -> int:
    """``QtReaderDialog.exec_`` as if the user pressed OK at once (the dialog is never shown)."""
    dialog.deleteLater()  # a dialog left alive fails napari's leaked-widget check at teardown
    return 1


def test_opening_a_store_gives_one_labels_layer(make_napari_viewer, store: Path) -> None:
    from napari.layers import Image, Labels

    viewer = make_napari_viewer()
    layers = viewer.open(str(store), plugin="napari-sam2")
    assert len(layers) == 1 and len(viewer.layers) == 1
    (labels,) = viewer.layers
    assert isinstance(labels, Labels) and not any(isinstance(lyr, Image) for lyr in viewer.layers)
    assert labels.name == "result" and labels.visible
    np.testing.assert_array_equal(np.asarray(labels.data), _labels())
    assert tuple(labels.scale) == SCALE
    assert tuple(labels.axis_labels) == ("t", "y", "x") and tuple(viewer.dims.axis_labels) == ("t", "y", "x")
    assert tuple(str(u) for u in labels.units) == UNITS
    assert labels.metadata["napari_sam2"]["prompts"] == _sam2_metadata()["prompts"]


def test_opening_beside_the_users_image_keeps_its_name(make_napari_viewer, store: Path) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 12, 16), np.uint16), name="result", scale=SCALE)
    viewer.open(str(store), plugin="napari-sam2")
    assert [lyr.name for lyr in viewer.layers] == ["result", "result [1]"]  # napari's own rule, nothing renamed
    assert viewer.layers[0].data.max() == 0  # the user's layer is untouched


def test_a_store_with_its_image_opens_labels_over_the_image(make_napari_viewer, image_store) -> None:
    from napari.layers import Image, Labels

    path, image = image_store
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-sam2")
    bottom, top = viewer.layers
    assert isinstance(bottom, Image) and isinstance(top, Labels)
    np.testing.assert_array_equal(np.asarray(bottom.data), image)
    np.testing.assert_array_equal(np.asarray(top.data), _labels())
    assert tuple(bottom.scale) == tuple(top.scale) == SCALE
    assert tuple(bottom.axis_labels) == ("t", "y", "x")
    assert bottom.name == "cells" and top.name == "with_image"  # the image's name from the metadata
    assert bottom.metadata["axes"] == "tyx"  # the widget reads t/z from it


def test_open_without_naming_a_plugin_picks_ours(make_napari_viewer, store: Path, monkeypatch) -> None:
    """What ``napari result.zarr``, File > Open and drag-and-drop do, with the dialog accepted as shown.

    Several readers accept a directory, so napari raises MultipleReaderError and shows its
    "Choose reader" dialog with the first reader (by display name) preselected; accepting
    that choice must open the store with our reader.
    """
    from napari.errors import MultipleReaderError
    from napari.layers import Labels
    from napari._qt.dialogs import qt_reader_dialog

    viewer = make_napari_viewer()
    with pytest.raises(MultipleReaderError) as err:
        viewer.open(str(store), plugin=None)
    assert "napari-sam2" in err.value.available_plugins

    shown: list[str | None] = []

    def accept(dialog) -> int:  # the user presses OK on the dialog as it opens
        shown.append(dialog._get_plugin_choice())
        return _accept(dialog)

    monkeypatch.setattr(qt_reader_dialog.QtReaderDialog, "exec_", accept)
    viewer.window._qt_viewer._qt_open([str(store)], stack=False)  # napari's CLI calls exactly this
    assert shown == ["SAM 2"]
    (labels,) = viewer.layers
    assert isinstance(labels, Labels) and labels.name == "result"
    np.testing.assert_array_equal(np.asarray(labels.data), _labels())


# --------------------------------------------------------------------------- the round trip


def test_open_then_save_with_our_writer_round_trips(make_napari_viewer, store: Path, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    (labels,) = viewer.open(str(store), plugin="napari-sam2")
    again = tmp_path / "again.zarr"
    written = viewer.layers.save(str(again), selected=False, plugin="napari-sam2")
    assert str(again) in written
    before, after = read_labels(store), read_labels(again)
    np.testing.assert_array_equal(after.data.compute(), before.data.compute())
    assert after.scale == before.scale and after.axes == before.axes and after.units == before.units
    strip = lambda md: {k: v for k, v in md.items() if k != "package_version"}  # noqa: E731
    assert strip(after.metadata) == strip(before.metadata)
    (reopened,) = viewer.open(str(again), plugin="napari-sam2")
    np.testing.assert_array_equal(np.asarray(reopened.data), np.asarray(labels.data))


def test_for_someone_elses_folder_the_preselected_reader_opens_it_as_napari_would(
    make_napari_viewer, tmp_path: Path, monkeypatch
) -> None:
    """napari preselects 'SAM 2' (the first name) for any folder; a folder we did not write is
    then read by napari's builtins, as before our reader existed, instead of failing."""
    import tifffile

    from napari._qt.dialogs import qt_reader_dialog

    folder = tmp_path / "tiffs"
    folder.mkdir()
    for i in range(2):
        tifffile.imwrite(folder / f"{i}.tif", np.full((8, 8), i, np.uint8))
    shown: list[str | None] = []

    def accept(dialog) -> int:
        shown.append(dialog._get_plugin_choice())
        return _accept(dialog)

    monkeypatch.setattr(qt_reader_dialog.QtReaderDialog, "exec_", accept)
    viewer = make_napari_viewer()
    viewer.window._qt_viewer._qt_open([str(folder)], stack=False)
    assert shown == ["SAM 2"] and len(viewer.layers) == 1
    ours = np.asarray(viewer.layers[0].data)
    viewer.window._qt_viewer._qt_open([str(folder)], stack=False, plugin="napari")  # napari's own choice
    assert len(viewer.layers) == 2 and np.array_equal(np.asarray(viewer.layers[1].data), ours)
    assert ours.shape == (2, 8, 8) and ours[1].max() == 1
