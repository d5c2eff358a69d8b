"""Bad input in the GUI: a notification that says what to do, never a traceback, nothing lost."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_sam2._qt.stack import StackSpec
from napari_sam2.errors import InputError

from .qt_support import clip, click, make_widget, notes, small_model  # noqa: F401


def _warnings(notes) -> list[str]:
    assert not [m for s, m in notes if s == "error"], notes  # no unexpected failures
    return [m for s, m in notes if s == "warning"]


@pytest.mark.parametrize(
    ("shape", "rgb", "message"),
    [
        ((10,), False, "at least 2-D"),
        ((2, 3, 16, 16), False, "pick one time point"),
        ((2, 2, 2, 16, 16), False, "5-D"),
        ((0, 16, 16), False, "empty"),
    ],
)
def test_layers_sam2_cannot_take_are_explained(shape, rgb, message):
    layer = SimpleNamespace(data=np.zeros(shape), rgb=rgb, multiscale=False, name="x", scale=np.ones(len(shape)))
    with pytest.raises(InputError, match=message):
        StackSpec.from_layer(layer)


def test_start_without_an_image_or_with_a_5d_image_warns(make_napari_viewer, notes):
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    widget.start()
    assert "open an image first" in _warnings(notes)[-1]
    viewer.add_image(np.zeros((2, 2, 3, 16, 16), dtype=np.uint8), name="five")
    widget.start()
    assert "5-D" in _warnings(notes)[-1] and "'five'" in _warnings(notes)[-1]
    assert not widget.segmenter.active
    assert [layer.name for layer in viewer.layers] == ["five"]  # nothing added


@pytest.mark.parametrize("synchronous", [True, False])
def test_corrupt_checkpoint_warns_and_keeps_the_session_and_prompts(
    make_napari_viewer, small_model, clip, notes, tmp_path, synchronous
):
    viewer = make_napari_viewer()
    viewer.add_image(clip, rgb=True, name="img")
    widget = make_widget(viewer, small_model, synchronous=synchronous)
    widget.start()
    widget.runner.wait()
    click(widget, 0, 60, 80)
    widget.runner.wait()
    preview = np.array(widget.segmenter.preview.data)
    assert preview.any()
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint at all")
    widget.model.set_checkpoint(bad)
    widget.start()
    widget.runner.wait()
    warning = _warnings(notes)[-1]
    assert "Could not start SAM 2" in warning and "broken.pt" in warning and "could not be read" in warning
    seg = widget.segmenter
    assert seg.active and len(seg.points.data) == 1  # the old session and the click are still there
    np.testing.assert_array_equal(seg.preview.data, preview)
    click(widget, 0, 20, 20)  # and it still works
    widget.runner.wait()
    assert len(seg.prompts[(0, 1)].points_xy) == 2


def test_prompt_layer_of_another_shape_is_left_alone(make_napari_viewer, small_model, clip, notes):
    viewer = make_napari_viewer()
    viewer.add_image(clip, rgb=True, name="img")
    mine = viewer.add_points(np.array([[5.0, 6.0], [7.0, 8.0]]), name="SAM2 prompts")  # 2-D: not for a 3-D stack
    widget = make_widget(viewer, small_model)
    widget.start()
    assert any("'SAM2 prompts' is 2-D" in m for m in _warnings(notes))
    assert viewer.layers["SAM2 prompts"] is mine and len(mine.data) == 2  # untouched
    assert widget.segmenter.points is not mine and widget.segmenter.points.name == "SAM2 prompts [img]"


def test_prompts_the_model_cannot_use_are_skipped_with_a_warning_and_kept(
    make_napari_viewer, small_model, clip, notes
):
    viewer = make_napari_viewer()
    viewer.add_image(clip, rgb=True, name="img")
    widget = make_widget(viewer, small_model)
    seg = widget.segmenter
    widget.propagate_button.changed.emit()  # before Start: disabled in the GUI; the action explains
    widget.start()
    widget.commit_button.changed.emit()
    assert "nothing to commit" in _warnings(notes)[-1]
    widget.propagate_button.changed.emit()
    assert "click on an object first" in _warnings(notes)[-1]
    click(widget, 0, 500, 20)  # far outside the 120 x 160 frame
    assert "outside the image" in _warnings(notes)[-1]
    seg.shapes.add_polygons(np.array([[0, 5, 5], [0, 20, 5], [0, 20, 30]]))
    assert "only rectangles are box prompts" in _warnings(notes)[-1]
    assert len(seg.points.data) == 1 and len(seg.shapes.data) == 1  # kept for the user to fix
    assert not seg.preview.data.any() and seg.session.obj_ids == []
    click(widget, 0, 60, 80)
    assert seg.preview.data[0].any()
