"""The dock in a real window (issue 22 item 8): its width does not jump when a label's text
appears or changes, and closing the viewer after a model load and an encode prints nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .qt_support import CHECKPOINT, CONFIG, clip, click, goto, make_widget, small_model  # noqa: F401


def _dock_width(viewer) -> int:
    from qtpy.QtWidgets import QApplication, QDockWidget

    for _ in range(3):
        QApplication.processEvents()
    docks = [d for d in viewer.window._qt_window.findChildren(QDockWidget) if d.windowTitle() == "SAM 2"]
    assert len(docks) == 1
    return docks[0].width()


def test_dock_width_stays_when_the_candidate_and_progress_labels_fill(make_napari_viewer, small_model, clip):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(clip, rgb=True, name="a long image name for the status line")
    widget = make_widget(viewer, small_model)
    widget.start()
    goto(viewer, widget, 1)
    width = _dock_width(viewer)
    click(widget, 1, 60, 80)
    widget.cycle_button.changed.emit()
    assert widget.candidate.value.startswith("mask 2/3 (predicted IoU")
    assert _dock_width(viewer) == width
    widget.cycle_button.changed.emit()
    assert _dock_width(viewer) == width
    widget.propagate_button.changed.emit()  # the progress line says the most it ever says
    assert "propagated" in str(widget.progress_text.value)
    assert _dock_width(viewer) == width
    widget.candidate.value = "x" * 300  # whatever the text, the dock keeps its width
    widget.status.value = "y" * 300
    assert _dock_width(viewer) == width


_CLOSE_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import napari
    from qtpy.QtWidgets import QApplication
    from napari_sam2._qt.widget import SAM2Widget

    clip = np.load(sys.argv[1])["frames"][:6]
    viewer = napari.Viewer(show=True)
    viewer.add_image(clip, rgb=True, name="clip")
    widget = SAM2Widget(viewer)                     # the real worker path
    viewer.window.add_dock_widget(widget, name="SAM 2")
    widget.model.set_checkpoint(sys.argv[2], sys.argv[3])
    widget.start()                                  # model load, then the slice on screen is encoded
    widget.runner.wait(120)
    viewer.dims.set_current_step(0, 3)              # encode another slice
    widget.runner.wait(120)
    assert widget.segmenter.active and 3 in widget.segmenter.session.features
    {before_close}
    print("--- closing ---", file=sys.stderr, flush=True)
    viewer.close()
    for _ in range(20):
        QApplication.processEvents()
    widget.runner.wait(30)                          # a job cancelled by the close has ended
    for _ in range(20):
        QApplication.processEvents()
    print("--- closed ---", file=sys.stderr, flush=True)
    """
)


def _close_viewer_in_a_process(before_close: str = "") -> tuple[int, str]:
    script = _CLOSE_SCRIPT.format(before_close=before_close)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    proc = subprocess.run(
        [sys.executable, "-c", script, str(CHECKPOINT.parent / "video.npz"), str(CHECKPOINT), str(CONFIG)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    after = proc.stderr.split("--- closing ---", 1)[-1]
    return proc.returncode, after


def test_closing_the_viewer_after_load_and_encode_prints_no_warning():
    rc, after = _close_viewer_in_a_process()
    assert rc == 0, after
    assert after.strip() == "--- closed ---", after  # no warning, traceback or Qt message


def test_closing_the_viewer_during_a_job_prints_no_warning():
    # a propagation still running in its worker when the window goes away
    rc, after = _close_viewer_in_a_process(
        "widget.segmenter.points.add([3, 60, 80])\n"
        "widget.runner.wait(120)\n"
        "widget.segmenter.propagate('both')\n"
        "assert widget.runner.busy"
    )
    assert rc == 0, after
    assert after.strip() == "--- closed ---", after
