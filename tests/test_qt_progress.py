"""The dock's own progress: a bar with "slice k of n", the objects, the time left and Cancel
beside it; napari's activity progress (whose animated spinner recomposes the whole window
through software OpenGL on every frame, issue 22 item 1) is never used."""

from __future__ import annotations

import re

import numpy as np
import pytest

from .qt_support import clip, click, goto, make_widget, notes, small_model  # noqa: F401


@pytest.fixture
def napari_progress():
    """Every napari ``progress`` created during the test (the activity dock's entries)."""
    from napari.utils import progress

    made: list = []

    def record(event) -> None:
        made.extend(event.added)

    progress._all_instances.events.changed.connect(record)
    yield made
    progress._all_instances.events.changed.disconnect(record)


def _spinner(viewer):
    return viewer.window._qt_window.statusBar()._activity_item._inProgressIndicator


def _watch(widget) -> list[tuple[int, int, str]]:
    """(value, maximum, text) of the dock's progress each time its bar moves."""
    seen: list[tuple[int, int, str]] = []
    widget.progress.changed.connect(
        lambda _v: seen.append((int(widget.progress.value), int(widget.progress.max), str(widget.progress_text.value)))
    )
    return seen


def test_propagation_shows_slice_k_of_n_objects_and_time_left_in_the_dock(
    make_napari_viewer, small_model, clip, notes, napari_progress
):
    viewer = make_napari_viewer(show=True)  # the status bar and its activity button, as a user has them
    viewer.add_image(clip, rgb=True, name="clip")
    widget = make_widget(viewer, small_model, synchronous=False)
    seg = widget.segmenter
    widget.start_button.changed.emit()
    widget.runner.wait()
    goto(viewer, widget, 2)
    widget.runner.wait()
    click(widget, 2, 60, 80)
    widget.new_object_button.changed.emit()
    click(widget, 2, 20, 30)
    widget.runner.wait()
    seen = _watch(widget)
    widget.direction.value = "both"
    widget.propagate_button.changed.emit()
    assert widget.runner.busy
    assert not _spinner(viewer).isVisible()  # napari's animated activity indicator stays off
    assert widget.progress.visible and widget.cancel_button.enabled
    widget.runner.wait()
    total = (6 - 2) + (2 + 1)  # forward from slice 2 to 5, then backward from 2 to 0
    assert all(seg.preview.data[t].any() for t in range(6))
    assert widget.progress.max == total and widget.progress.value == total
    running = [text for value, _, text in seen if 0 < value < total]
    assert running, seen
    assert re.search(rf"slice 1 of {total}\b", running[0]) and "2 objects" in running[0]
    assert re.search(r"\d+ s left|less than a second left", running[0])  # the first step gives an estimate
    final = str(widget.progress_text.value)
    assert f"{total} slices" in final and "2 objects" in final and "propagated" in final
    assert napari_progress == []  # not for loading, encoding or propagating
    assert not [m for s, m in notes if s == "error"]


def test_cancel_beside_the_bar_stops_propagation_and_says_so(
    make_napari_viewer, small_model, clip, notes, napari_progress
):
    viewer = make_napari_viewer()
    viewer.add_image(clip, rgb=True, name="clip")
    widget = make_widget(viewer, small_model)  # synchronous: Cancel lands between two slices
    seg = widget.segmenter
    widget.start()
    click(widget, 0, 60, 80)
    assert widget.cancel_button.native.parent() is widget.progress.native.parent()  # on one row
    assert not widget.cancel_button.enabled  # nothing to cancel now

    def cancel_at_first_slice(_value) -> None:
        if widget.runner.busy and widget.progress.value == 1:
            assert widget.cancel_button.enabled
            widget.cancel_button.changed.emit()

    widget.progress.changed.connect(cancel_at_first_slice)
    widget.direction.value = "forward"
    widget.propagate_button.changed.emit()
    assert [t for t in range(6) if seg.preview.data[t].any()] == [0]  # stopped after the first slice
    assert widget.progress.value == 1 and widget.progress.max == 6
    text = str(widget.progress_text.value)
    assert "cancelled" in text and "1 of 6" in text, text
    assert any("propagation cancelled" in m for _, m in notes)
    widget.progress.changed.disconnect(cancel_at_first_slice)
    widget.propagate_button.changed.emit()  # the session is still usable
    assert all(seg.preview.data[t].any() for t in range(6))
    assert widget.progress.value == widget.progress.max == 6
    assert napari_progress == []


def test_synchronous_commit_and_encoding_use_the_dock_progress_too(
    make_napari_viewer, small_model, clip, napari_progress
):
    viewer = make_napari_viewer()
    viewer.add_image(clip, rgb=True, name="clip")
    widget = make_widget(viewer, small_model)
    widget.start()
    click(widget, 0, 60, 80)
    assert "encod" in str(widget.progress_text.value) or "loading" in str(widget.progress_text.value)
    widget.commit_button.changed.emit()
    assert "commit" in str(widget.progress_text.value)
    assert widget.progress.value == widget.progress.max
    assert np.asarray(widget.segmenter.result.data).any()
    assert napari_progress == []
