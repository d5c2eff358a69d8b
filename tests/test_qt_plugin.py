"""The npe2 contributions (dock widget, sample data) and the threaded worker path."""

from __future__ import annotations

import threading

import numpy as np

from napari_sam2._qt.widget import SAM2Widget
from napari_sam2.synthetic import fluorescence_timelapse, nuclei_stack

from .qt_support import click, make_widget, notes, small_model  # noqa: F401


def test_dock_widget_and_sample_data_come_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-sam2", "SAM 2")
    assert isinstance(widget, SAM2Widget)
    viewer.open_sample("napari-sam2", "zstack")
    image, truth = viewer.layers
    assert image.data.shape == (32, 256, 256) and image.data.dtype == np.uint16
    assert tuple(image.scale) == (1.5, 0.5, 0.5) and tuple(truth.scale) == (1.5, 0.5, 0.5)
    assert not truth.visible and truth.data.max() == 14
    assert widget.image.value is image and widget.axis_kind.value == "z"  # from the sample's metadata
    assert tuple(viewer.dims.axis_labels) == ("z", "y", "x")  # the slider says z, not -3
    assert tuple(str(u) for u in image.units) == ("micrometer",) * 3
    viewer.layers.clear()
    viewer.open_sample("napari-sam2", "timelapse")
    assert viewer.layers[-2].data.shape == (30, 256, 256)
    assert tuple(viewer.dims.axis_labels) == ("t", "y", "x")
    assert str(viewer.layers[-2].units[0]) == "second"


def test_synthetic_generators_are_seeded_and_labelled():
    a, b = fluorescence_timelapse(n_frames=4, seed=3), fluorescence_timelapse(n_frames=4, seed=3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, fluorescence_timelapse(n_frames=4, seed=4).image)
    assert set(np.unique(a.labels[0])) == set(range(7))  # 6 cells + background on the first frame
    inside, outside = a.image[a.labels > 0].mean(), a.image[a.labels == 0].mean()
    assert inside > 3 * outside  # fluorescence: bright objects on a dark background
    z = nuclei_stack(n_slices=12, seed=1)
    assert z.axes == "zyx" and z.scale == (1.5, 0.5, 0.5) and z.labels.max() == 8


def test_worker_path_loads_encodes_propagates_and_cancels(make_napari_viewer, qtbot, notes, monkeypatch):
    """The real thread_worker path, model loaded from the checkpoint file in a worker."""
    stack = fluorescence_timelapse(n_frames=5, shape=(64, 80), n_cells=3, seed=5)
    viewer = make_napari_viewer()
    viewer.add_image(stack.image, name="cells", scale=stack.scale)
    widget = make_widget(viewer, synchronous=False)
    seg = widget.segmenter
    widget.start_button.changed.emit()
    assert widget.runner.busy and not widget.start_button.enabled  # the UI thread is free meanwhile
    widget.runner.wait()
    assert seg.active and seg.model is not None
    rows, cols = np.nonzero(stack.labels[2] == 1)
    viewer.dims.set_current_step(0, 2)
    widget.runner.wait()  # the slice on screen is encoded ahead of the first click
    assert 2 in seg.session.features
    click(widget, 2, rows.mean(), cols.mean())
    assert seg.preview.data[2].any()  # encoded already: the preview is immediate
    # The worker is held after its first slice until Cancel has been pressed: on a loaded
    # machine it could otherwise finish all five slices before the press (nothing to cancel)
    first_slice_done, cancel_pressed = threading.Event(), threading.Event()
    real_propagate = seg.session.propagate

    def propagate_held_after_one_slice(*args, **kwargs):
        for result in real_propagate(*args, **kwargs):
            yield result
            if not cancel_pressed.is_set():
                first_slice_done.set()
                assert cancel_pressed.wait(120)

    monkeypatch.setattr(seg.session, "propagate", propagate_held_after_one_slice)
    widget.direction.value = "both"
    widget.propagate_button.changed.emit()
    assert first_slice_done.wait(120)
    assert widget.cancel_button.enabled
    widget.cancel_button.changed.emit()
    cancel_pressed.set()
    widget.runner.wait()
    assert any("propagation cancelled" in m for _, m in notes)
    assert not seg.preview.data[0].any()  # "both" runs forward from slice 2 first: 0 was never reached
    widget.propagate_button.changed.emit()
    widget.runner.wait()
    assert all(seg.preview.data[t].any() for t in range(5))
    assert not [m for s, m in notes if s == "error"]


