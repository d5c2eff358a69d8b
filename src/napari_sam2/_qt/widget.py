"""The SAM 2 dock widget: thin controls over :class:`~napari_sam2._qt.segmenter.Segmenter`.

Sections, top to bottom, follow the workflow: image and video axis -> model and device ->
Start -> object / negative clicks / mask candidates -> Segment all (this slice / through the
stack, settings folded away; ``everything.py``) -> Propagate -> the job's progress bar with
Cancel beside it -> Commit / Undo -> Save / Load prompts. Every button calls one Segmenter
method; the widget only reads state back to enable buttons and show the status line.

The progress bar is the dock's own, not napari's activity dock: napari's animated spinner
recomposes the whole window on every frame, which through software OpenGL made propagation
several times slower (``tasks.py``). The bar is redrawn at most ``PROGRESS_HZ`` times a second
for the same reason, and the text labels never widen the dock (``_fixed_width``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import time

from magicgui.widgets import CheckBox, ComboBox, Container, Label, ProgressBar, PushButton, SpinBox

from ..engine.runs import DIRECTIONS
from ..errors import SAM2Error
from ..io.labels import METADATA_KEY
from ..runtime import configure_torch
from .everything import EverythingGroup
from .model_picker import ModelPicker
from .prompt_files import ADD, REPLACE
from .segmenter import Segmenter
from .stack import AXIS_KINDS
from .tasks import Task, TaskRunner, notify, report_error

_KIND_LABELS = {"t": "t (time-lapse)", "z": "z (z-stack)"}
#: at most this many redraws of the progress bar per second (each redraw recomposes the window)
PROGRESS_HZ = 2.0
#: the load dialog's answers
CANCEL = "cancel"


def _row(*widgets: Any) -> Container:
    return Container(widgets=list(widgets), layout="horizontal", labels=False)


def _fixed_width(label: Label) -> Label:
    """A label whose text never changes the dock's width: it takes the width it is given
    (long text is cut; the whole text is in the tooltip)."""
    from qtpy.QtWidgets import QSizePolicy

    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.native.setMinimumWidth(0)
    label.changed.connect(lambda value: setattr(label, "tooltip", str(value)))
    return label


class SAM2Widget(Container):
    """Segment and track objects with SAM 2 (napari dock widget).

    Arguments:
        napari_viewer: the viewer (napari passes it).
        synchronous: run model loading, encoding and propagation in the calling thread
            (tests and scripts); the default runs them in napari thread workers.
    """

    def __init__(self, napari_viewer: Any, *, synchronous: bool = False) -> None:
        # napari hands plugins a PublicOnlyProxy; layer identity checks need the viewer itself
        napari_viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.viewer = napari_viewer
        self.runner = TaskRunner(synchronous=synchronous)
        self.segmenter = Segmenter(napari_viewer, self.runner)

        self.image = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.video_axis = ComboBox(label="video axis", choices=self._axis_choices)
        self.axis_kind = ComboBox(label="axis is", choices=[(_KIND_LABELS[k], k) for k in AXIS_KINDS])
        self.model = ModelPicker()
        self.start_button = PushButton(text="Start")
        self.start_button.tooltip = "Load the model, encode the slice on screen, add the prompt layers"

        self.object_id = SpinBox(label="object", min=1, max=2**31 - 1, value=1)
        self.new_object_button = PushButton(text="New object")
        self.negative = CheckBox(text="negative clicks (N, or Shift+click)")
        self.cycle_button = PushButton(text="Next mask candidate (C)")
        self.cycle_button.tooltip = "For a single click: show SAM 2's other proposed masks (3 in all)"
        self.candidate = _fixed_width(Label(value=""))
        self.everything = EverythingGroup()

        self.direction = ComboBox(label="direction", choices=list(DIRECTIONS), value="both")
        self.follow = CheckBox(text="show each slice as it is done")
        self.propagate_button = PushButton(text="Propagate")
        self.cancel_button = PushButton(text="Cancel")
        self.cancel_button.tooltip = "Stop the running job after the step in progress (slices done so far are kept)"
        self.progress = ProgressBar(value=0, min=0, max=1, label="")
        self.progress_text = _fixed_width(Label(value=""))
        self._progress_drawn = 0.0
        self.commit_button = PushButton(text="Commit")
        self.commit_button.tooltip = (
            "Write the objects into the result layer; pixels of other labels are never overwritten"
        )
        self.undo_button = PushButton(text="Undo commit")
        self.save_button = PushButton(text="Save labels…")
        self.load_button = PushButton(text="Load prompts…")
        self.status = _fixed_width(Label(value="Pick an image and a model, then Start."))

        super().__init__(
            widgets=[
                self.image, self.video_axis, self.axis_kind, self.model, self.start_button,
                _row(self.object_id, self.new_object_button), self.negative,
                _row(self.cycle_button, self.candidate), self.everything,
                self.direction, self.follow, self.propagate_button,
                _row(self.progress, self.cancel_button), self.progress_text,
                _row(self.commit_button, self.undo_button), _row(self.save_button, self.load_button),
                self.status,
            ]
        )  # fmt: skip
        self.image.changed.connect(self._on_image)
        self.start_button.changed.connect(self.start)
        self.object_id.changed.connect(lambda v: self.segmenter.set_object(int(v)))
        self.new_object_button.changed.connect(self.new_object)
        self.negative.changed.connect(lambda v: self.segmenter.toggle_negative(bool(v)))
        self.cycle_button.changed.connect(self.segmenter.cycle_candidate)
        self.everything.slice_button.changed.connect(lambda: self.segmenter.segment_all(self.everything.value()))
        self.everything.stack_button.changed.connect(
            lambda: self.segmenter.segment_all_stack(self.everything.value())
        )
        self.propagate_button.changed.connect(lambda: self.segmenter.propagate(self.direction.value))
        self.cancel_button.changed.connect(self.segmenter.cancel)
        self.follow.changed.connect(lambda v: setattr(self.segmenter, "follow", bool(v)))
        self.model.threads.changed.connect(self._apply_threads)
        self.commit_button.changed.connect(self.segmenter.commit)
        self.undo_button.changed.connect(self.segmenter.undo_commit)
        self.save_button.changed.connect(self._save_dialog)
        self.load_button.changed.connect(self._load_dialog)
        self.segmenter.changed_callbacks.append(self._refresh)
        self.runner.listeners.append(self._show_progress)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        # the viewer closing deletes the dock: stop the job and never touch the dead widgets
        runner, teardown = self.runner, self._teardown
        self.native.destroyed.connect(lambda *_: (runner.close(), teardown()))
        self._layers_changed()
        self._refresh()

    def _teardown(self) -> None:
        self.runner.close()
        self.segmenter.changed_callbacks.clear()
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.disconnect(self._layers_changed)
        self.segmenter.close()

    # ------------------------------------------------------------------ progress
    def _show_progress(self, task: Task) -> None:
        """Draw the job's progress in the dock (at most PROGRESS_HZ times a second while it runs)."""
        now = time.monotonic()
        first_or_last = task.done <= 1 or task.finished or task.done >= task.total
        if not first_or_last and now - self._progress_drawn < 1.0 / PROGRESS_HZ:
            return
        self._progress_drawn = now
        total = max(1, task.total)  # never 0: an indeterminate QProgressBar animates like the spinner
        value = min(task.done, total) if task.total or not task.finished else total
        bar = self.progress.native
        # QProgressBar.setValue repaints at once, and in a window with an OpenGL canvas each
        # paint recomposes the whole window (~30 ms through software OpenGL): with updates off
        # the bar and the text are painted together, later, in one go by the event loop
        bar.setUpdatesEnabled(False)
        try:
            self.progress_text.value = task.describe()
            if self.progress.max != total:
                self.progress.max = total
            self.progress.value = value
            self.cancel_button.enabled = not task.finished
        finally:
            bar.setUpdatesEnabled(True)  # schedules one update()

    # ------------------------------------------------------------------ choices
    def _image_layers(self, _widget: Any = None) -> list[Any]:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _axis_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        layer = self.image.value if hasattr(self, "image") else None
        if layer is None:
            return [("-", None)]
        shape = layer.data[0].shape if layer.multiscale else layer.data.shape
        spatial = shape[:-1] if layer.rgb else shape
        if len(spatial) != 3:
            return [("none (2-D image)" if len(spatial) == 2 else "-", None)]
        return [(f"axis {a} ({spatial[a]} slices)", a) for a in range(3)]

    def _layers_changed(self, event: Any = None) -> None:
        self.image.reset_choices()
        images = self._image_layers()
        if self.image.value is None and images:
            active = self.viewer.layers.selection.active
            self.image.value = active if active in images else images[-1]
        if event is not None and getattr(event, "type", "") == "removed":
            if event.value is self.segmenter.image_layer:
                self.segmenter.close()
                if len(self.viewer.layers):  # not when every layer goes, as when the viewer closes
                    notify("warning", f"the image {event.value.name!r} was removed; the SAM 2 session is closed")
        self._on_image()

    def _on_image(self, *_: Any) -> None:
        self.video_axis.reset_choices()
        layer = self.image.value
        if layer is not None:
            axes = str(layer.metadata.get("axes", "")) if isinstance(layer.metadata, dict) else ""
            if axes[:1] in AXIS_KINDS:
                self.axis_kind.value = axes[0]
            not_shown = [d - (self.viewer.dims.ndim - layer.ndim) for d in self.viewer.dims.not_displayed]
            valid = [v for _, v in self._axis_choices()]
            if not_shown and not_shown[-1] in valid:
                self.video_axis.value = not_shown[-1]
        self._refresh()

    # ------------------------------------------------------------------ actions
    def _apply_threads(self, *_: Any) -> None:
        self.runner.threads = int(self.model.threads.value)
        configure_torch(self.runner.threads)

    def start(self) -> None:
        self._apply_threads()
        self.segmenter.start(self.image.value, self.video_axis.value, self.axis_kind.value, self.model.choice())

    def new_object(self) -> None:
        new = self.segmenter.new_object()
        with self.object_id.changed.blocked():
            self.object_id.value = new

    def save(self, path: str | Path) -> list[str]:
        """Save the result layer as OME-Zarr labels (+ prompts JSON); returns the paths."""
        from .._writer import save_labels

        seg = self.segmenter
        if seg.result is None:
            notify("warning", "nothing to save yet: Start, click objects and Commit them first")
            return []
        try:
            meta = seg.metadata() if seg.active else seg.result.metadata.get(METADATA_KEY)
            written = save_labels(
                path, seg.result.data, scale=seg.result.scale, units=getattr(seg.result, "units", None), sam2=meta
            )
        except SAM2Error as exc:
            report_error("Saving the labels", exc)
            return []
        notify("info", f"saved {', '.join(written)}")
        return written

    def load_prompts(self, path: str | Path, mode: str = REPLACE) -> int:
        """Load a prompt JSON: ``replace`` the prompt layers' clicks and boxes (default) or
        ``add`` to them (never twice the same); see ``Segmenter.load_prompts``."""
        try:
            return self.segmenter.load_prompts(str(path), mode)
        except SAM2Error as exc:
            report_error("Loading prompts", exc)
            return 0

    def _ask_replace(self, question: str) -> str:
        """Replace / Add / Cancel, for prompts the layers hold that a file does not have."""
        from qtpy.QtWidgets import QMessageBox

        box = QMessageBox(self.native)
        box.setWindowTitle("Load SAM 2 prompts")
        box.setIcon(QMessageBox.Icon.Question)
        box.setText(question)
        replace = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
        add = box.addButton("Add to them", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(add)
        box.exec()
        clicked = box.clickedButton()
        return REPLACE if clicked is replace else ADD if clicked is add else CANCEL

    def _save_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, "Save SAM 2 labels", "labels.zarr", "OME-Zarr (*.zarr)")
        if path:
            self.save(path)

    def _load_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.native, "Load SAM 2 prompts", "", "Prompts (*.json)")
        if not path:
            return
        try:
            clicks, boxes = self.segmenter.prompts_not_in(path)
        except SAM2Error as exc:
            report_error("Loading prompts", exc)
            return
        mode = REPLACE
        found = len(self.segmenter.found)
        if clicks or boxes or found:  # replacing would drop prompts the user made or found: ask
            what = " and ".join(
                f"{n} {unit}" for n, unit in ((clicks, "click" if clicks == 1 else "clicks"), (boxes, "box" if boxes == 1 else "boxes")) if n
            )
            held = f"The prompt layers hold {what} not in {Path(path).name}." if what else ""
            if found:
                held += f"{' ' if held else ''}The session holds {found} mask(s) found by Segment all."
            mode = self._ask_replace(
                f"{held}\n\n"
                "Replace: the session then follows exactly the file's prompts (those are removed).\n"
                "Add to them: the file's prompts are added; the ones already there are not added twice."
            )
            if mode == CANCEL:
                return
        self.load_prompts(path, mode)

    # ------------------------------------------------------------------ state -> controls
    def _refresh(self) -> None:
        seg = self.segmenter
        busy = self.runner.busy
        active = seg.active
        stack = active and seg.spec.n_frames > 1
        self.start_button.text = "Restart" if active else "Start"
        self.start_button.enabled = not busy
        for w in (self.new_object_button, self.cycle_button, self.commit_button):
            w.enabled = active and not busy
        self.propagate_button.enabled = stack and not busy
        self.everything.slice_button.enabled = active and not busy
        self.everything.stack_button.enabled = stack and not busy
        self.everything.every.enabled = stack
        self.direction.enabled = stack
        self.cancel_button.enabled = busy
        self.undo_button.enabled = seg.last_commit is not None and not busy
        self.save_button.enabled = seg.result is not None
        self.load_button.enabled = active
        if self.object_id.value != seg.current_object:
            with self.object_id.changed.blocked():
                self.object_id.value = seg.current_object
        if self.negative.value != seg.negative_mode:
            with self.negative.changed.blocked():
                self.negative.value = seg.negative_mode
        self.candidate.value = seg.candidate_info() if active else ""
        if busy and self.runner.running is not None:
            self.status.value = self.runner.running.name.removeprefix("SAM 2: ") + "…"
        elif active:
            n = len(seg.session.obj_ids)
            found = len({o for _, o in seg.found})
            extra = f" ({found} found by Segment all)" if found else ""
            self.status.value = (
                f"slice {seg.current_frame()} of {seg.spec.n_frames}; {n} object(s) in the session{extra}"
            )
            self.model.show_precision(seg.session.precision.reason)
        else:
            self.status.value = "Pick an image and a model, then Start."

    def close_session(self) -> None:
        self.segmenter.close()
        self._refresh()
