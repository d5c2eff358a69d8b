"""Load prompts… into a session that already has prompts (issue 22 item 6).

The rule (docs/plugin.md, Saving): loading a prompt file *replaces* the prompt layers'
clicks and boxes with the file's, so the session replays the file; the dialog asks first
when the layers hold prompts the file does not have (Replace / Add / Cancel). "Add" never
adds a click or box that is already there. Restart + Load prompts, the workflow the docs
suggest, therefore never duplicates a point.
"""

from __future__ import annotations

import numpy as np
import pytest

from .qt_support import box, clip, click, goto, make_widget, notes, small_model  # noqa: F401


def _session_with_saved_prompts(make_napari_viewer, small_model, clip, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(clip, rgb=True, name="clip")
    widget = make_widget(viewer, small_model)
    widget.start()
    seg = widget.segmenter
    goto(viewer, widget, 2)
    click(widget, 2, 60, 80)
    click(widget, 2, 20, 20)
    widget.new_object_button.changed.emit()
    box(widget, 2, 5, 5, 40, 50)
    widget.commit_button.changed.emit()
    expected = np.array(seg.preview.data)
    out = tmp_path / "saved.zarr"
    widget.save(out)
    return viewer, widget, expected, tmp_path / "saved.prompts.json"


def test_restart_then_load_prompts_does_not_duplicate_points(make_napari_viewer, small_model, clip, notes, tmp_path):
    viewer, widget, expected, prompts = _session_with_saved_prompts(make_napari_viewer, small_model, clip, tmp_path)
    seg = widget.segmenter
    widget.start()  # Restart: the prompt layers are adopted with their prompts
    assert widget.start_button.text == "Restart"
    assert len(seg.points.data) == 2 and len(seg.shapes.data) == 1
    widget.load_prompts(prompts)  # what docs/plugin.md suggests after a Restart
    assert len(seg.points.data) == 2 and len(seg.shapes.data) == 1  # not 4 and 2
    assert list(seg.points.features["object"]) == [1, 1] and list(seg.shapes.features["object"]) == [2]
    assert [len(p.points_xy) for k, p in sorted(seg.prompts.items()) if p.points_xy is not None] == [2]
    np.testing.assert_array_equal(seg.preview.data, expected)
    assert not [m for s, m in notes if s in ("error", "warning")]


def test_loading_replaces_other_prompts_and_add_skips_the_ones_already_there(
    make_napari_viewer, small_model, clip, notes, tmp_path
):
    viewer, widget, expected, prompts = _session_with_saved_prompts(make_napari_viewer, small_model, clip, tmp_path)
    seg = widget.segmenter
    widget.object_id.value = 3
    goto(viewer, widget, 4)
    click(widget, 4, 90, 120)  # a prompt that is not in the file
    assert (seg.preview.data[4] == 3).any()
    assert widget.load_prompts(prompts) == 3  # replace (the default): exactly the file's prompts
    assert len(seg.points.data) == 2 and len(seg.shapes.data) == 1
    assert sorted(seg.prompts) == [(2, 1), (2, 2)]
    np.testing.assert_array_equal(seg.preview.data, expected)  # object 3 is gone with its click
    assert any("replaced" in m for _, m in notes)

    click(widget, 4, 90, 120)
    assert widget.load_prompts(prompts, mode="add") == 0  # every prompt of the file is there already
    assert len(seg.points.data) == 3 and len(seg.shapes.data) == 1
    assert sorted(seg.prompts) == [(2, 1), (2, 2), (4, 3)]
    with pytest.raises(ValueError, match="mode"):
        widget.load_prompts(prompts, mode="merge")


@pytest.mark.parametrize(("answer", "points"), [("replace", 2), ("add", 3), ("cancel", 2)])
def test_load_dialog_asks_before_dropping_prompts(
    make_napari_viewer, small_model, clip, tmp_path, monkeypatch, answer, points
):
    from qtpy.QtWidgets import QFileDialog

    viewer, widget, _expected, prompts = _session_with_saved_prompts(make_napari_viewer, small_model, clip, tmp_path)
    seg = widget.segmenter
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(prompts), "")))
    asked: list[str] = []

    def ask(question: str) -> str:
        asked.append(question)
        return answer

    monkeypatch.setattr(type(widget), "_ask_replace", lambda _self, question: ask(question))
    widget._load_dialog()  # the layers hold exactly the file's prompts: nothing to ask
    assert asked == [] and len(seg.points.data) == 2
    with seg.points.events.data.blocker():
        seg.points.data = seg.points.data[:1]  # one click of the file removed...
        seg.points.features = seg.points.features.iloc[:1].reset_index(drop=True)
    seg.shapes.data = []  # ...and the box
    seg.new_object()
    click(widget, 4, 90, 120)  # ...and one that is not in the file
    widget._load_dialog()
    assert len(asked) == 1 and "1 click" in asked[0] and "not in" in asked[0]
    assert len(seg.points.data) == points
