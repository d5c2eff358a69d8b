"""Prompt editing in the widget: negative clicks, mask candidates, object ids, the commit
overlap rule and its undo, replaying saved prompts, other video axes and 2-D images."""

from __future__ import annotations

import numpy as np

from napari_sam2._qt import prompt_layers as pl
from napari_sam2.synthetic import nuclei_stack
from napari_sam2.io import read_labels

from .qt_support import clip, click, goto, make_widget, mouse_click, notes, plane, small_model  # noqa: F401


def _started(make_napari_viewer, small_model, data, **image_kwargs):
    viewer = make_napari_viewer()
    viewer.add_image(data, name="img", **image_kwargs)
    widget = make_widget(viewer, small_model)
    widget.start()
    assert widget.segmenter.active
    return viewer, widget


def test_shift_click_and_n_key_place_negative_clicks(make_napari_viewer, small_model, clip):
    viewer, widget = _started(make_napari_viewer, small_model, clip, rgb=True)
    seg = widget.segmenter
    goto(viewer, widget, 1)
    assert seg.points.mode == "add"
    mouse_click(seg.points, (1, 60, 80))  # through napari's own add-mode callback
    mouse_click(seg.points, (1, 20, 20), modifiers=["Shift"])
    assert list(seg.points.features["positive"]) == [True, False]
    keys = viewer.window._qt_viewer._key_map_handler  # the canvas's key handling
    keys.press_key("N")  # N on the prompt layer toggles the negative mode
    keys.release_key("N")
    assert seg.negative_mode and widget.negative.value is True
    mouse_click(seg.points, (1, 30, 30))
    mouse_click(seg.points, (1, 31, 90), modifiers=["Shift"])  # Shift inverts the mode
    assert list(seg.points.features["positive"]) == [True, False, False, True]
    assert list(seg.points.symbol) == [pl.POSITIVE_SYMBOL, pl.NEGATIVE_SYMBOL, pl.NEGATIVE_SYMBOL, pl.POSITIVE_SYMBOL]
    assert seg.prompts[(1, 1)].labels.tolist() == [1, 0, 0, 1]


def test_mask_candidates_cycle_through_three_and_back(make_napari_viewer, small_model, clip, notes):
    viewer, widget = _started(make_napari_viewer, small_model, clip, rgb=True)
    seg = widget.segmenter
    goto(viewer, widget, 0)
    click(widget, 0, 60, 80)
    first = plane(widget, seg.preview.data, 0).copy()
    shown = [first]
    keys = viewer.window._qt_viewer._key_map_handler
    for i in range(3):
        if i == 0:
            keys.press_key("C")  # C on the prompt layer = the button
            keys.release_key("C")
        else:
            widget.cycle_button.changed.emit()
        shown.append(plane(widget, seg.preview.data, 0).copy())
    assert widget.candidate.value.startswith("mask 1/3")
    assert np.array_equal(shown[3], first)  # back to SAM 2's own choice
    assert not np.array_equal(shown[1], first) and not np.array_equal(shown[2], first)
    assert not np.array_equal(shown[1], shown[2])
    widget.cycle_button.changed.emit()  # candidate 2 is kept for propagation and recorded
    assert seg.metadata()["mask_choices"] == [{"frame": 0, "object": 1, "candidate": 1}]
    np.testing.assert_array_equal(plane(widget, seg.preview.data, 0), shown[1])
    # a second click makes the prompt unambiguous: no candidates any more
    click(widget, 0, 62, 84)
    widget.cycle_button.changed.emit()
    assert any("single click" in message for _, message in notes)


def test_commit_keeps_other_labels_replaces_its_own_and_undo_restores(make_napari_viewer, small_model, clip, notes):
    viewer, widget = _started(make_napari_viewer, small_model, clip, rgb=True)
    seg = widget.segmenter
    painted = np.zeros(seg.spec.shape, dtype=np.uint32)
    painted[0, :, :40] = 7  # a label the user made before: a band on slice 0
    seg.result.data = painted.copy()
    # new ids start above the labels already in the result layer
    assert seg.new_object() == 8
    click(widget, 0, 60, 30)
    click(widget, 0, 60, 80)
    mask = plane(widget, seg.preview.data, 0) == 8
    assert mask[:, :40].any() and mask[:, 40:].any()
    widget.commit_button.changed.emit()
    committed = plane(widget, seg.result.data, 0)
    assert (committed[:, :40] == 7).all()  # never overwritten
    np.testing.assert_array_equal(committed[:, 40:] == 8, mask[:, 40:])
    assert any("left to them" in message for _, message in notes)
    assert not seg.result.data[1:].any()  # slices without a result are untouched

    # move the object: re-committing replaces its old pixels
    seg.points.data = seg.points.data[:1]  # drop the click at column 80, add one elsewhere
    click(widget, 0, 20, 140)
    new_mask = plane(widget, seg.preview.data, 0) == 8
    widget.commit_button.changed.emit()
    recommitted = plane(widget, seg.result.data, 0)
    np.testing.assert_array_equal(recommitted[:, 40:] == 8, new_mask[:, 40:])
    assert (recommitted[:, :40] == 7).all()

    # "Undo commit" restores what the last commit overwrote; it is itself a step of napari's
    # history, so Ctrl+Z (layer.undo) first undoes the undo, then the commits one by one
    widget.undo_button.changed.emit()
    np.testing.assert_array_equal(plane(widget, seg.result.data, 0), committed)
    assert not widget.undo_button.enabled
    seg.result.undo()
    np.testing.assert_array_equal(plane(widget, seg.result.data, 0), recommitted)
    seg.result.undo()
    np.testing.assert_array_equal(plane(widget, seg.result.data, 0), committed)
    seg.result.undo()
    np.testing.assert_array_equal(seg.result.data, painted)


def test_saved_prompts_replay_to_the_same_masks(make_napari_viewer, small_model, clip, tmp_path):
    viewer, widget = _started(make_napari_viewer, small_model, clip, rgb=True)
    seg = widget.segmenter
    click(widget, 1, 60, 80)
    click(widget, 1, 20, 20)
    seg.new_object()
    click(widget, 3, 90, 120)
    widget.commit_button.changed.emit()
    expected = np.array(seg.preview.data)
    out = tmp_path / "first.zarr"
    widget.save(out)

    # a new session on the same image: drop the prompt layers, restart, load the saved prompts
    for name in ("SAM2 prompts [img]", "SAM2 boxes [img]"):
        viewer.layers.remove(name)
    widget.start()
    assert not seg.preview.data.any()
    assert widget.load_prompts(tmp_path / "first.prompts.json") == 3
    np.testing.assert_array_equal(seg.preview.data, expected)
    assert list(seg.points.features["object"]) == [1, 1, 2]


def test_video_axis_one_of_a_z_stack_keeps_scale_and_writes_z_first(make_napari_viewer, small_model, tmp_path):
    stack = nuclei_stack(n_slices=6, shape=(48, 64), n_nuclei=3, seed=1)
    data = np.ascontiguousarray(np.moveaxis(stack.image, 0, 1))  # (Y=48, Z=6, X=64): z in the middle
    scale = (0.5, 1.5, 0.5)
    viewer = make_napari_viewer()
    viewer.add_image(data, name="resliced", scale=scale)
    widget = make_widget(viewer, small_model)
    widget.video_axis.value = 1
    widget.axis_kind.value = "z"
    widget.start()
    seg = widget.segmenter
    assert seg.spec.n_frames == 6 and seg.spec.hw == (48, 64)
    assert seg.session.stack_kind == "z"  # tracks with the model's z-stack calibration (none here)
    assert viewer.dims.not_displayed == (1,)  # the viewer now slices along z
    goto(viewer, widget, 2)
    click(widget, 2, 24, 32)
    assert seg.points.data[0].tolist() == [24, 2, 32]
    assert plane(widget, seg.preview.data, 2).any()
    widget.direction.value = "forward"
    widget.propagate_button.changed.emit()
    assert all(plane(widget, seg.preview.data, z).any() for z in range(2, 6))
    widget.commit_button.changed.emit()
    out = tmp_path / "z.zarr"
    widget.save(out)
    stored = read_labels(out)
    assert stored.axes == ("z", "y", "x") and stored.scale == (1.5, 0.5, 0.5)
    np.testing.assert_array_equal(np.asarray(stored.data), np.moveaxis(seg.result.data, 1, 0))


def test_2d_uint16_image_click_commit_save(make_napari_viewer, small_model, tmp_path):
    image = nuclei_stack(n_slices=3, shape=(64, 80), n_nuclei=4, seed=2).image[1]
    viewer, widget = _started(make_napari_viewer, small_model, image, scale=(0.3, 0.3))
    seg = widget.segmenter
    assert seg.spec.n_frames == 1 and not widget.propagate_button.enabled
    click(widget, 0, 30, 40)
    assert seg.preview.data.any()
    widget.commit_button.changed.emit()
    out = tmp_path / "two_d.zarr"
    widget.save(out)
    stored = read_labels(out)
    assert stored.axes == ("y", "x") and stored.scale == (0.3, 0.3)
    np.testing.assert_array_equal(np.asarray(stored.data), seg.result.data)
