"""Shared pieces of the GUI tests (tests/test_qt_*.py): the small model, clicks, notifications.

The GUI tests use ``make_napari_viewer`` under Xvfb (pytest-xvfb starts it); no offscreen Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from napari_sam2 import load_model

from .conftest import FIXTURES_DIR

SMALL = FIXTURES_DIR / "small_sam2.1"
CHECKPOINT = SMALL / "checkpoint.pt"
CONFIG = SMALL / "config.json"


@pytest.fixture(scope="session")
def small_model():
    """The random-weight small SAM 2.1 of the parity fixtures, loaded once."""
    return load_model(CHECKPOINT, config=CONFIG)


@pytest.fixture(scope="session")
def clip() -> np.ndarray:
    """(6, 120, 160, 3) uint8 RGB frames."""
    return np.load(SMALL / "video.npz")["frames"][:6]


@pytest.fixture
def notes():
    """Every napari notification shown during the test, as (severity, message)."""
    from napari.utils.notifications import notification_manager

    seen: list[tuple[str, str]] = []

    def record(event) -> None:
        seen.append((str(event.severity), str(event.message)))

    notification_manager.notification_ready.connect(record)
    yield seen
    notification_manager.notification_ready.disconnect(record)


def make_widget(viewer, model=None, *, synchronous: bool = True, checkpoint: Path = CHECKPOINT):
    """A docked SAM2Widget set to the small model (preloaded when ``model`` is given)."""
    from napari_sam2._qt.widget import SAM2Widget

    import torch

    widget = SAM2Widget(viewer, synchronous=synchronous)
    viewer.window.add_dock_widget(widget, name="SAM 2")
    widget.model.threads.value = torch.get_num_threads()  # keep the test process's setting
    widget.model.set_checkpoint(checkpoint, CONFIG)
    if model is not None:  # skip re-reading the checkpoint in every test
        widget.segmenter.model = model
        widget.segmenter.model_choice = widget.model.choice()
    return widget


def goto(viewer, widget, frame: int) -> None:
    """Move the viewer to ``frame`` of the video axis."""
    seg = widget.segmenter
    axis = viewer.dims.ndim - seg.spec.ndim + seg.spec.video_axis
    viewer.dims.set_current_step(axis, frame)


def click(widget, frame: int, row: float, col: float) -> None:
    """A click in add mode, as napari's own add-mode callback makes it (``layer.add``)."""
    seg = widget.segmenter
    coords = np.zeros(seg.spec.ndim)
    r, c = seg.spec.plane_axes
    coords[r], coords[c] = row, col
    if seg.spec.video_axis is not None:
        coords[seg.spec.video_axis] = frame
    seg.points.add(coords)


def box(widget, frame: int, r0: float, c0: float, r1: float, c1: float) -> None:
    """A rectangle drawn on ``frame`` (the Shapes layer's current object)."""
    seg = widget.segmenter
    corners = []
    for r, c in ((r0, c0), (r0, c1), (r1, c1), (r1, c0)):
        p = np.zeros(seg.spec.ndim)
        ra, ca = seg.spec.plane_axes
        p[ra], p[ca] = r, c
        if seg.spec.video_axis is not None:
            p[seg.spec.video_axis] = frame
        corners.append(p)
    seg.shapes.add_rectangles(np.array(corners))


def plane(widget, data: np.ndarray, frame: int) -> np.ndarray:
    return np.asarray(data[widget.segmenter.spec.plane_index(frame)])


@dataclass
class FakeMouse:
    """A vispy-like mouse event for napari's mouse callbacks."""

    type: str
    position: tuple[float, ...]
    modifiers: list[str] = field(default_factory=list)
    is_dragging: bool = False
    pos: np.ndarray = field(default_factory=lambda: np.zeros(2))
    view_direction: list[float] | None = None
    up_direction: list[float] | None = None
    dims_displayed: list[int] = field(default_factory=lambda: [1, 2])
    handled: bool = False


def mouse_click(layer, position, modifiers=()) -> None:
    """Press and release on a layer through napari's own callback machinery."""
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    press = ReadOnlyWrapper(FakeMouse("mouse_press", tuple(position), list(modifiers)), exceptions=("handled",))
    mouse_press_callbacks(layer, press)
    release = ReadOnlyWrapper(FakeMouse("mouse_release", tuple(position), list(modifiers)), exceptions=("handled",))
    mouse_release_callbacks(layer, release)
