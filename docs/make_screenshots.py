"""Make the screenshots of docs/plugin.md with a real napari window, headless under Xvfb.

    xvfb-run -a -s "-screen 0 1280x1024x24" /work/venv/bin/python docs/make_screenshots.py

Runs the plugin's workflow on the sample time-lapse (File > Open Sample > SAM 2) with the
model shipped in the package (napari-sam2-cells, works offline): one click on a cell, a box
around another, propagation both ways, commit. Writes PNGs to docs/images/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "images"


def shot(viewer, name: str, *, canvas_only: bool = False) -> np.ndarray:
    from qtpy.QtWidgets import QApplication

    for _ in range(3):
        QApplication.processEvents()
    viewer.screenshot(canvas_only=canvas_only)  # throwaway: lets docked widgets lay out
    QApplication.processEvents()
    image = viewer.screenshot(path=None if name == "" else str(OUT / name), canvas_only=canvas_only)
    if name:
        print(f"wrote {OUT / name} {image.shape}")
    return image


def main() -> None:
    torch.set_flush_denormal(True)
    import napari

    from napari_sam2._qt.widget import SAM2Widget

    OUT.mkdir(exist_ok=True)
    viewer = napari.Viewer(title="napari-sam2", show=True)
    viewer.window._qt_window.resize(1280, 860)
    viewer.open_sample("napari-sam2", "timelapse")
    image, truth = viewer.layers
    widget = SAM2Widget(viewer, synchronous=True)
    viewer.window.add_dock_widget(widget, name="SAM 2", area="right")
    widget.model.model.value = "napari-sam2-cells"
    widget.start()
    seg = widget.segmenter
    axis = viewer.dims.ndim - 3
    viewer.dims.set_current_step(axis, 4)

    # two cells: a click on one, a box around another (the two largest on this frame of the
    # synthetic ground truth; the click at the cell's deepest pixel, as a person clicks)
    from scipy import ndimage

    labels = np.asarray(truth.data)
    ids, areas = np.unique(labels[4][labels[4] > 0], return_counts=True)
    first, second = ids[np.argsort(areas)[::-1][:2]]
    depth = ndimage.distance_transform_edt(labels[4] == first)
    r1, c1 = np.unravel_index(np.argmax(depth), depth.shape)
    seg.points.add([4, r1 + 0.5, c1 + 0.5])
    widget.new_object()
    rows, cols = np.nonzero(labels[4] == second)
    seg.shapes.add_rectangles(
        np.array([[4, rows.min() - 2, cols.min() - 2], [4, rows.min() - 2, cols.max() + 2],
                  [4, rows.max() + 2, cols.max() + 2], [4, rows.max() + 2, cols.min() - 2]], dtype=float)
    )  # fmt: skip
    viewer.layers.selection.active = seg.points
    viewer.reset_view()  # fit the image to the canvas left beside the dock widget
    shot(viewer, "plugin_click.png")

    # propagate both ways, commit; show the result layer over the image
    widget.direction.value = "both"
    widget.propagate_button.changed.emit()
    widget.commit_button.changed.emit()
    seg.preview.visible = False
    viewer.dims.set_current_step(axis, 10)
    shot(viewer, "plugin_committed.png")

    # an image strip of the propagation: canvas-only shots of several time points
    seg.preview.visible = True
    seg.result.visible = False
    seg.points.visible = seg.shapes.visible = False
    viewer.window._qt_window.resize(900, 700)
    viewer.reset_view()
    box = _image_box(viewer, image)
    tiles = []
    for t in (0, 7, 14, 21, 29):
        viewer.dims.set_current_step(axis, t)
        tile = shot(viewer, "", canvas_only=True)
        tiles.append(tile[box])
    h = min(t.shape[0] for t in tiles)
    gap = np.full((h, 6, tiles[0].shape[2]), 160, dtype=tiles[0].dtype)
    gap[..., 3:] = 255
    strip = np.concatenate([x for t in tiles for x in (t[:h], gap)][:-1], axis=1)
    _save(strip, OUT / "propagation_strip.png")
    viewer.close()


def _image_box(viewer, image) -> tuple[slice, slice]:
    """Where the image lies on the canvas: shoot a white stand-in of the same extent alone."""
    shown = [(layer, layer.visible) for layer in viewer.layers]
    for layer, _ in shown:
        layer.visible = False
    white = viewer.add_image(np.ones(image.data.shape[1:], dtype=np.uint8), scale=image.scale[1:],
                             contrast_limits=(0, 1), name="extent")  # fmt: skip
    tile = shot(viewer, "", canvas_only=True)
    viewer.layers.remove(white)
    for layer, visible in shown:
        layer.visible = visible
    rows, cols = np.nonzero(tile[..., :3].min(axis=-1) > 200)
    return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)


def _save(array: np.ndarray, path: Path) -> None:
    from imageio.v3 import imwrite

    imwrite(path, array)
    print(f"wrote {path} {array.shape}")


if __name__ == "__main__":
    sys.exit(main())
