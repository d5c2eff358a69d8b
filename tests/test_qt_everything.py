"""Segment all in the dock: found objects are ordinary objects of the session (visible,
correctable with clicks, removable through their markers, committed and saved), a constant
slice says it has none, and cancelling the through-stack job leaves a consistent session."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2._qt.everything import EverythingSettings, found_masks, marked_keys
from napari_sam2.synthetic import cell_timelapse, cells_image

from .qt_support import click, notes, plane  # noqa: F401

#: few grid clicks keep the tests fast; thresholds low enough that the small model finds cells
SETTINGS = dict(points_per_side=8, pred_iou_thresh=0.5, stability_score_thresh=0.8, min_area=10)


@pytest.fixture(scope="module")
def cells_model():
    """The shipped model, loaded once for this module."""
    from napari_sam2 import load_model

    return load_model("napari-sam2-cells")


def _widget(viewer, model, *, synchronous: bool = True):
    """A docked SAM2Widget set to the shipped model (preloaded), started."""
    import torch

    from napari_sam2._qt.widget import SAM2Widget

    widget = SAM2Widget(viewer, synchronous=synchronous)
    viewer.window.add_dock_widget(widget, name="SAM 2")
    widget.model.threads.value = torch.get_num_threads()
    widget.model.model.value = "napari-sam2-cells"
    widget.model.precision.value = "float32"
    widget.segmenter.model = model
    widget.segmenter.model_choice = widget.model.choice()
    group = widget.everything
    group.points_per_side.value = SETTINGS["points_per_side"]
    group.iou.value = SETTINGS["pred_iou_thresh"]
    group.stability.value = SETTINGS["stability_score_thresh"]
    group.min_area.value = SETTINGS["min_area"]
    widget.start()
    widget.runner.wait()
    assert widget.segmenter.active
    return widget


def _engine_objects(model, image, first_id, prompts):
    """What the engine alone makes of ``image`` after ``prompts``: the found ids and the label image."""
    from napari_sam2.engine.automatic import AutomaticMaskGenerator
    from napari_sam2.engine.editor import Editor
    from napari_sam2.engine.everything import add_found
    from napari_sam2.engine.session import VideoSession

    s = SETTINGS
    gen = AutomaticMaskGenerator(
        model, points_per_side=s["points_per_side"], pred_iou_thresh=s["pred_iou_thresh"],
        stability_score_thresh=s["stability_score_thresh"],
    )  # fmt: skip
    session = VideoSession(model, image[None], compute_dtype="float32")
    editor = Editor(session)
    editor.apply(prompts)
    ids = add_found(editor, 0, gen.generate(image), min_area=s["min_area"], first_id=first_id)
    labels = session.label_image(0) if session.obj_ids else np.zeros(image.shape, np.uint32)
    session.close()
    return list(ids), labels


def _consistent(seg) -> None:
    """The found masks are the editor's mask prompts, each has one marker, and the preview
    shows the session on every slice an object covers."""
    assert seg.found == found_masks(seg.prompts)
    assert set(seg.found) <= set(seg.prompts)
    assert {o for _, o in seg.found} <= set(seg.session.obj_ids)
    if seg.found:
        assert marked_keys(seg.everything.markers, seg.spec) == set(seg.found)
    for frame in sorted(set().union(*seg.coverage.values()) if seg.coverage else []):
        np.testing.assert_array_equal(plane_of(seg, frame), seg.session.label_image(frame))


def plane_of(seg, frame):
    return np.asarray(seg.preview.data[seg.spec.plane_index(frame)])


def _segmented(make_napari_viewer, cells_model):
    """A 2-D field of cells, Segment all run on it; returns (sample, widget)."""
    sample = cells_image((128, 128), n_cells=6, seed=3)
    viewer = make_napari_viewer()
    viewer.add_image(sample.image, name="cells")
    widget = _widget(viewer, cells_model)
    widget.everything.slice_button.changed.emit()
    return sample, widget


def _select_marker(seg, obj: int) -> None:
    markers = seg.everything.markers
    markers.selected_data = {i for i, o in enumerate(markers.features["object"]) if o == obj}


def test_segment_all_finds_objects_that_are_corrected_removed_committed_and_saved(
    make_napari_viewer, cells_model, notes
):
    sample = cells_image((128, 128), n_cells=6, seed=3)
    viewer = make_napari_viewer()
    viewer.add_image(sample.image, name="cells")
    widget = _widget(viewer, cells_model)
    seg = widget.segmenter
    click(widget, 0, *np.argwhere(sample.labels == 1).mean(axis=0))  # a clicked object first: id 1
    assert seg.session.obj_ids == [1]

    # 1. the objects are the engine's own, numbered after the clicked one, each with a marker
    widget.everything.slice_button.changed.emit()
    ids = sorted({o for _, o in seg.found})
    clicked = {(0, 1): seg.prompts[(0, 1)]}
    want_ids, want_labels = _engine_objects(cells_model, sample.image, 2, clicked)
    assert ids == sorted(want_ids) and len(ids) >= 1 and min(ids) == 2
    assert seg.session.obj_ids == [1, *ids]
    preview = plane(widget, seg.preview.data, 0)
    for obj in ids:  # each found object shows where the engine alone puts it
        np.testing.assert_array_equal(preview == obj, want_labels == obj)
    assert any(f"found {len(ids)} object" in m and "slice 0" in m for _, m in notes)
    _consistent(seg)
    assert seg.prompts[(0, 1)].mask is None  # the click stays a click

    # 2. selecting a marker makes its object current; a click for it joins its mask in one prompt
    target = max(ids, key=lambda o: int((preview == o).sum()))
    _select_marker(seg, target)
    assert seg.current_object == target and widget.object_id.value == target
    click(widget, 0, *np.argwhere(preview == target).mean(axis=0).round())
    prompt = seg.prompts[(0, target)]
    assert prompt.mask is not None and prompt.labels.tolist() == [1]  # the mask and the click
    assert seg.found[(0, target)].points_xy is None  # the found mask itself is unchanged
    _consistent(seg)

    # 3. deleting another object's marker removes that object (mask, preview, session)
    gone = next(o for o in ids if o != target) if len(ids) > 1 else None
    if gone is not None:
        _select_marker(seg, gone)
        seg.everything.markers.remove_selected()
        assert (0, gone) not in seg.found and gone not in seg.session.obj_ids
        assert not (plane(widget, seg.preview.data, 0) == gone).any()
        _consistent(seg)

    # 4. Commit writes every object into the result layer; Undo takes it back
    widget.commit_button.changed.emit()
    np.testing.assert_array_equal(seg.result.data, seg.preview.data)
    committed = set(np.unique(seg.result.data).tolist()) - {0}
    assert {1, target} <= committed <= set(seg.session.obj_ids)
    widget.undo_button.changed.emit()
    assert not seg.result.data.any()

    # 5. the saved prompts hold the click and each found mask as its bounding box
    saved = seg.metadata()["prompts"]["objects"]
    by_id = {o["id"]: o for o in saved}
    assert set(by_id) == set(seg.session.obj_ids)
    for obj in seg.session.obj_ids:
        assert len(by_id[obj]["points"]) == (1 if obj in (1, target) else 0)
        if obj == 1:
            assert by_id[1]["boxes"] == []
            continue
        (b,) = by_id[obj]["boxes"]
        rows, cols = np.nonzero(seg.found[(0, obj)].mask)
        assert (b["x0"], b["y0"], b["x1"], b["y1"]) == (
            cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5
        )
    assert not [n for n in notes if n[0] in ("error", "warning")]


def test_a_negative_click_refines_a_found_object(make_napari_viewer, cells_model):
    _sample, widget = _segmented(make_napari_viewer, cells_model)
    seg = widget.segmenter
    before_all = plane(widget, seg.preview.data, 0).copy()
    target = max({o for _, o in seg.found}, key=lambda o: int((before_all == o).sum()))
    before = before_all == target
    _select_marker(seg, target)
    widget.negative.value = True
    click(widget, 0, *np.argwhere(before).mean(axis=0).round())
    assert seg.prompts[(0, target)].labels.tolist() == [0] and seg.prompts[(0, target)].mask is not None
    after = plane(widget, seg.preview.data, 0) == target
    assert after.sum() < before.sum()  # the background click takes part of the mask away
    _consistent(seg)


def test_a_constant_slice_says_it_has_no_objects(make_napari_viewer, cells_model, notes):
    viewer = make_napari_viewer()
    viewer.add_image(np.full((64, 80), 7, dtype=np.uint16), name="flat")
    widget = _widget(viewer, cells_model)
    seg = widget.segmenter
    widget.everything.slice_button.changed.emit()
    assert seg.found == {} and seg.session.obj_ids == []
    assert ("info", "no objects found on slice 0 (an empty or constant image)") in notes
    assert not seg.preview.data.any()
    assert not widget.everything.stack_button.enabled  # one slice: nothing to go through


def test_cancelling_segment_all_through_the_stack_keeps_a_consistent_session(
    make_napari_viewer, cells_model, notes
):
    stack = cell_timelapse(6, (96, 96), 4, seed=2)
    viewer = make_napari_viewer()
    viewer.add_image(stack.image, name="cells", scale=stack.scale)
    widget = _widget(viewer, cells_model)
    seg = widget.segmenter
    widget.everything.every.value = 2
    steps = []

    def cancel_midway(task) -> None:  # the Cancel button, pressed while the job runs
        if task.name.endswith("through the stack") and not task.finished:
            steps.append(task.done)
            if task.done >= 2:
                widget.cancel_button.changed.emit()

    widget.runner.listeners.append(cancel_midway)
    widget.everything.stack_button.changed.emit()
    widget.runner.listeners.remove(cancel_midway)
    assert max(steps) >= 2
    assert any("cancelled" in m and "kept" in m for _, m in notes)
    assert seg.found, "objects were found on the first slice before the cancel"
    _consistent(seg)

    # the session goes on as usual: a found object takes a click, Propagate and Commit run
    obj = min(o for _, o in seg.found)
    frame = min(f for f, o in seg.found if o == obj)
    widget.object_id.value = obj
    mask = seg.found[(frame, obj)].mask
    click(widget, frame, *np.argwhere(mask)[len(np.argwhere(mask)) // 2])
    assert seg.prompts[(frame, obj)].points_xy is not None and seg.prompts[(frame, obj)].mask is not None
    widget.propagate_button.changed.emit()
    _consistent(seg)
    widget.commit_button.changed.emit()
    np.testing.assert_array_equal(seg.result.data, seg.preview.data)
    assert not [n for n in notes if n[0] == "error"]


def test_settings_fold_away_and_reach_the_generator(qtbot):
    from napari_sam2._qt.everything import EverythingGroup

    group = EverythingGroup()
    qtbot.addWidget(group.native)
    assert group.settings.native.isHidden()
    group.show_settings.value = True
    assert not group.settings.native.isHidden()
    group.points_per_side.value = 12
    group.every.value = 3
    assert group.value() == EverythingSettings(points_per_side=12, every=3)


def test_the_seeded_finder_when_installed_gives_ordinary_objects(make_napari_viewer, cells_model, notes):
    from napari_sam2._qt.everything import SEEDED, available_modes

    if SEEDED not in available_modes():
        pytest.skip("engine.seeded is not installed")
    viewer = make_napari_viewer()
    sample = cells_image((128, 128), n_cells=6, seed=3)
    viewer.add_image(sample.image, name="cells")
    widget = _widget(viewer, cells_model)
    widget.everything.mode.value = SEEDED
    assert not widget.everything.points_per_side.enabled  # the grid's own settings
    widget.everything.slice_button.changed.emit()
    seg = widget.segmenter
    ids = sorted({o for _, o in seg.found})
    assert ids and seg.session.obj_ids == ids
    assert any(f"found {len(ids)} object" in m for _, m in notes)
    _consistent(seg)


def test_segment_all_runs_in_a_worker_and_leaves_the_ui_free(make_napari_viewer, cells_model, notes):
    viewer = make_napari_viewer()
    sample = cells_image((128, 128), n_cells=6, seed=3)
    viewer.add_image(sample.image, name="cells")
    widget = _widget(viewer, cells_model, synchronous=False)
    widget.runner.wait()  # the slice on screen is encoded ahead
    widget.everything.slice_button.changed.emit()
    assert widget.runner.busy and not widget.everything.slice_button.enabled and widget.cancel_button.enabled
    widget.runner.wait()
    seg = widget.segmenter
    assert seg.found and widget.everything.slice_button.enabled
    assert widget.progress_text.value.startswith("segmented slice 0")
    _consistent(seg)
