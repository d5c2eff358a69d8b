"""The plugin's whole workflow on a real viewer: click, preview, objects, propagate, correct,
commit, save OME-Zarr, read it back (io.read_labels and napari-ome-zarr)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sam2._writer import prompts_path
from napari_sam2.io import read_labels, read_prompts_json

from .qt_support import box, click, clip, goto, make_widget, notes, plane, small_model  # noqa: F401

SCALE = (2.0, 0.5, 0.25)


def test_click_propagate_correct_commit_and_save_round_trip(make_napari_viewer, small_model, clip, notes, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(clip, rgb=True, name="clip", scale=SCALE)
    widget = make_widget(viewer, small_model)
    assert widget.video_axis.value == 0
    widget.start()
    seg = widget.segmenter
    assert seg.active and seg.spec.n_frames == 6
    assert seg.session.stack_kind == widget.axis_kind.value == "t"  # the session knows the kind of stack
    names = [layer.name for layer in viewer.layers]
    assert names == ["clip", "SAM2 prompts [clip]", "SAM2 boxes [clip]", "SAM2 preview [clip]", "SAM2 result [clip]"]
    for layer in viewer.layers[1:]:
        assert tuple(layer.scale) == SCALE  # prompts and labels live in the image's coordinates

    # 1. a click on slice 2 shows object 1 there at once, nowhere else
    goto(viewer, widget, 2)
    click(widget, 2, 60, 80)
    assert list(seg.points.features["object"]) == [1] and list(seg.points.features["positive"]) == [True]
    assert (plane(widget, seg.preview.data, 2) == 1).any()
    assert not seg.preview.data[[0, 1, 3, 4, 5]].any()

    # 2. "New object" -> id 2; a box prompt for it on the same slice
    widget.new_object_button.changed.emit()
    assert seg.current_object == 2 and widget.object_id.value == 2
    box(widget, 2, 5, 5, 40, 50)
    assert list(seg.shapes.features["object"]) == [2]
    assert set(np.unique(plane(widget, seg.preview.data, 2))) <= {0, 1, 2}
    assert (plane(widget, seg.preview.data, 2) == 2).any()

    # 3. propagate both ways: every slice gets a result
    encoded_before = seg.session.features.encoded_count
    widget.direction.value = "both"
    widget.propagate_button.changed.emit()
    assert seg.session.features.encoded_count == 6  # each slice encoded once
    assert all(seg.preview.data[t].any() for t in range(6))
    assert seg.coverage == {1: set(range(6)), 2: set(range(6))}
    assert encoded_before >= 1

    # 4. a negative click on slice 4 is a correction there; propagating again re-uses features
    before = plane(widget, seg.preview.data, 4).copy()
    goto(viewer, widget, 4)
    widget.object_id.value = 1
    widget.negative.value = True
    rows, cols = np.nonzero(before == 1)
    click(widget, 4, rows[len(rows) // 2], cols[len(cols) // 2])
    assert list(seg.points.features["positive"]) == [True, False]
    assert seg.session.features.encoded_count == 6
    after = plane(widget, seg.preview.data, 4).copy()
    assert not np.array_equal(before, after)
    corrected = seg.session.result(4).masks[seg.session.obj_ids.index(1)].copy()
    logits = {t: seg.session.result(t).logits.copy() for t in range(6)}
    assert seg.session.correction_runs("both") == [(4, False, 2)]
    widget.propagate_button.changed.emit()
    assert seg.session.features.encoded_count == 6
    # the correction survives propagating again, which carries it on from slice 4, away
    # from the first prompted slice (2): slices 0-3 keep their masks, slice 5 is re-tracked
    np.testing.assert_array_equal(seg.session.result(4).masks[seg.session.obj_ids.index(1)], corrected)
    for t in range(4):
        np.testing.assert_array_equal(seg.session.result(t).logits, logits[t])
    assert not np.array_equal(seg.session.result(5).logits, logits[5])
    assert seg.session.pending_corrections == []

    # 5. commit writes exactly the preview into the empty result layer
    widget.commit_button.changed.emit()
    np.testing.assert_array_equal(seg.result.data, seg.preview.data)
    assert widget.undo_button.enabled

    # 6. save: OME-Zarr labels with scale and t axis, prompts beside them
    out = tmp_path / "result.zarr"
    written = widget.save(out)
    assert written == [str(out), str(prompts_path(out))]
    stored = read_labels(out)
    np.testing.assert_array_equal(np.asarray(stored.data), seg.result.data)
    assert stored.scale == SCALE and stored.axes == ("t", "y", "x")
    meta = stored.metadata
    assert meta["image"] == "clip" and meta["video_axis"] == 0
    prompts = read_prompts_json(prompts_path(out), axis=0, shape=seg.spec.shape)
    assert sorted((p.frame, p.obj_id) for p in prompts) == [(2, 1), (2, 2), (4, 1)]
    assert json.loads(prompts_path(out).read_text()) == meta["prompts"]
    assert not [n for n in notes if n[0] in ("error", "warning")]


def test_saved_store_opens_in_napari_ome_zarr_with_its_scale(make_napari_viewer, tmp_path):
    pytest.importorskip("napari_ome_zarr")
    from napari_sam2._writer import save_labels

    labels = np.zeros((3, 20, 30), dtype=np.uint32)
    labels[1, 5:10, 5:15] = 3
    out = tmp_path / "z.zarr"
    save_labels(out, labels, scale=(1.5, 0.5, 0.5), sam2={"axes": "zyx", "video_axis": 0})
    viewer = make_napari_viewer()
    layers = viewer.open(str(out), plugin="napari-ome-zarr")
    label_layers = [layer for layer in layers if layer._type_string == "labels"]
    assert len(label_layers) == 1
    data = label_layers[0].data
    data = data[0] if isinstance(data, list) or getattr(label_layers[0], "multiscale", False) else data
    np.testing.assert_array_equal(np.asarray(data), labels)
    assert tuple(label_layers[0].scale)[-3:] == (1.5, 0.5, 0.5)


def test_file_save_of_a_labels_layer_goes_through_our_writer(make_napari_viewer, tmp_path):
    import napari

    viewer = make_napari_viewer()
    data = np.zeros((4, 16, 16), dtype=np.uint8)
    data[2, 3:6, 3:9] = 5
    layer = viewer.add_labels(data, scale=(3.0, 1.0, 1.0), name="mine")
    out = tmp_path / "mine.zarr"
    written = napari.save_layers(str(out), [layer], plugin="napari-sam2")
    assert written == [str(out)]
    stored = read_labels(out)
    np.testing.assert_array_equal(np.asarray(stored.data), data)
    assert stored.scale == (3.0, 1.0, 1.0) and stored.axes == ("z", "y", "x")
