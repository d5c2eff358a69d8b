"""Segment everything in the dock: the "Segment all" controls, their jobs and the found objects.

What the user sees (``docs/plugin.md``, Segment all):

* **Segment all (this slice)** finds every object on the slice on screen; **Segment all
  (through the stack)** finds the objects of the slice on screen, tracks them through the
  stack and adds the objects that appear on later slices (every k-th slice is searched).
  Both are jobs of the dock's :class:`~napari_sam2._qt.tasks.TaskRunner` (progress bar and
  Cancel); the settings sit in a group that opens with "Segment-all settings".
* A found object is an ordinary object of the session: its own id and colour, in the
  preview, committed by Commit, undone by Undo commit. It *is* one mask prompt
  ``Prompt(frame, obj, mask=...)`` per slice it was found on, kept by the segmenter beside the
  layers' clicks and boxes (:attr:`Segmenter.found`) and merged with them before the editor
  sees them: a click for a found object on the slice it was found on is one prompt with the
  mask *and* the clicks (``prompt.merge_prompts``). The engine's Editor reads such a prompt as
  the mask alone for now (``engine.prompts.model_inputs``), so those clicks are kept and saved
  but change the mask only once the Editor refines a mask with its clicks (the strict xfail in
  ``tests/test_qt_everything.py``); clicks on other slices correct the object as usual.
* Each found mask has a marker in the Points layer "SAM2 found [image]": a point inside the
  object (the mask's pixel nearest its centroid), coloured like it and labelled with its id.
  Selecting a marker makes its object the current one (the next clicks correct it); deleting a
  marker (select it, press Delete) removes that found mask, and the object with it unless it
  has clicks or boxes of its own.
* Saved prompts: a mask has no JSON form, so a found object's mask is saved as its bounding
  box (:func:`replayable`); loading the file gives a box prompt, which replays to a close mask,
  not the same one. The exact masks are what Commit writes into the labels.

No segmentation logic here: finding, overlap resolution and tracking are the engine's
(``engine.automatic``, ``engine.everything``); this module holds widgets, jobs that drive the
engine's generators, and the layer glue.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, PushButton, SpinBox

from ..errors import InputError
from ..prompt import Key, Prompt, PromptSet, clip_box, xy_to_napari
from .stack import StackSpec
from .tasks import JobText, Progress, notify
from .viewer_layers import unique_name

#: the generator of the candidate masks: the official grid of clicks, or seeds (if installed)
GRID, SEEDED = "grid", "seeded"
FOUND_NAME = "SAM2 found"
OBJECT = "object"


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class EverythingSettings:
    """What the "Segment all" group is set to.

    Attributes
    ----------
    mode : str
        ``"grid"`` (:class:`~napari_sam2.engine.automatic.AutomaticMaskGenerator`) or
        ``"seeded"`` (``engine.seeded.SeededMaskGenerator``, when installed).
    points_per_side : int
        Grid clicks along each side of the slice (``points_per_side**2`` in all).
    pred_iou_thresh : float
        Keep masks whose predicted IoU is above this (0 keeps all).
    stability_score_thresh : float
        Keep masks whose stability score is at least this (0 keeps all).
    min_area : int
        Smallest object kept, in pixels.
    every : int
        Through the stack: search for new objects on every ``every``-th slice.
    """

    mode: str = GRID
    points_per_side: int = 32
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    min_area: int = 20
    every: int = 5


def available_modes() -> list[str]:
    """The generators this installation has: grid always, seeded when its module imports."""
    modes = [GRID]
    try:
        from ..engine.seeded import SeededMaskGenerator  # noqa: F401
    except ImportError:
        pass
    else:
        modes.append(SEEDED)
    return modes


def make_generator(model: Any, settings: EverythingSettings) -> Any:
    """The mask generator ``settings`` ask for, on ``model`` (a loaded SAM 2).

    The grid takes the points per side and the two thresholds; the seeded finder places its
    own prompts (estimating the objects' size from the image) and takes only ``min_area``.
    """
    if settings.mode == GRID:
        from ..engine.automatic import AutomaticMaskGenerator

        return AutomaticMaskGenerator(
            model,
            points_per_side=settings.points_per_side,
            pred_iou_thresh=settings.pred_iou_thresh,
            stability_score_thresh=settings.stability_score_thresh,
        )
    if settings.mode == SEEDED:
        try:
            from ..engine.seeded import SeededMaskGenerator
        except ImportError as exc:
            raise InputError(f"the seeded generator is not available in this installation ({exc}); use 'grid'") from exc
        return SeededMaskGenerator(model, min_area=settings.min_area)
    raise InputError(f"the segment-all mode is 'grid' or 'seeded', got {settings.mode!r}")


class EverythingGroup(Container):
    """The dock's "Segment all" controls: two buttons, and the settings in a group that folds."""

    def __init__(self) -> None:
        defaults = EverythingSettings()
        self.slice_button = PushButton(text="Segment all (this slice)")
        self.slice_button.tooltip = (
            "Find every object on the slice on screen; each becomes an object of its own "
            "(correct it with clicks, remove it by deleting its marker in 'SAM2 found', Commit it)"
        )
        self.stack_button = PushButton(text="Segment all (through the stack)")
        self.stack_button.tooltip = (
            "Find the objects of the slice on screen, track them through the stack and add the "
            "objects that appear on later slices (searched every k slices)"
        )
        self.show_settings = CheckBox(text="Segment-all settings", value=False)
        self.mode = ComboBox(label="finder", choices=available_modes(), value=GRID)
        self.mode.tooltip = (
            "grid: SAM 2's automatic mask generator (a grid of clicks); seeded: one prompt per object "
            "from seeds found in the image (its own sizes; points per side and the thresholds are the grid's)"
        )
        self.points_per_side = SpinBox(label="points per side", min=1, max=128, value=defaults.points_per_side)
        self.points_per_side.tooltip = "Grid clicks along each side (more finds smaller objects, takes longer)"
        self.iou = FloatSpinBox(label="min predicted IoU", min=0.0, max=1.0, step=0.01, value=defaults.pred_iou_thresh)
        self.iou.tooltip = "Keep masks the model rates above this (0 keeps all)"
        self.stability = FloatSpinBox(
            label="min stability", min=0.0, max=1.0, step=0.01, value=defaults.stability_score_thresh
        )
        self.stability.tooltip = "Keep masks that barely change with the threshold (0 keeps all)"
        self.min_area = SpinBox(label="min area (pixels)", min=1, max=2**31 - 1, value=defaults.min_area)
        self.every = SpinBox(label="every k slices", min=1, max=10_000, value=defaults.every)
        self.every.tooltip = "Through the stack: look for objects that appear on every k-th slice"
        self.settings = Container(
            widgets=[self.mode, self.points_per_side, self.iou, self.stability, self.min_area, self.every]
        )
        buttons = Container(widgets=[self.slice_button, self.stack_button], layout="horizontal", labels=False)
        super().__init__(widgets=[buttons, self.show_settings, self.settings], labels=False)
        self.settings.visible = False
        self.show_settings.changed.connect(lambda v: setattr(self.settings, "visible", bool(v)))
        self.mode.changed.connect(self._grid_only)
        self._grid_only()

    def _grid_only(self, *_: Any) -> None:
        """The grid's own settings are greyed out for the seeded finder, which places its own prompts."""
        for widget in (self.points_per_side, self.iou, self.stability):
            widget.enabled = self.mode.value == GRID

    def value(self) -> EverythingSettings:
        """The settings as the widgets show them."""
        return EverythingSettings(
            mode=str(self.mode.value),
            points_per_side=int(self.points_per_side.value),
            pred_iou_thresh=float(self.iou.value),
            stability_score_thresh=float(self.stability.value),
            min_area=int(self.min_area.value),
            every=int(self.every.value),
        )


# --------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class SliceFound:
    """What one slice's segment-all gave: the new objects' ids, and whether the slice is constant."""

    frame: int
    ids: list[int]
    constant: bool


def found_masks(prompts: Mapping[Key, Prompt]) -> dict[Key, Prompt]:
    """The mask part of every prompt that has one, as mask-only prompts.

    Clicks and boxes come from the prompt layers and have no mask; the only masks the editor
    follows are found objects' (a chosen mask candidate is the editor's ``choices``, not a
    prompt). So after a segment-all job, this of the editor's prompts is what was found.
    """
    return {
        k: Prompt(frame=p.frame, obj_id=p.obj_id, points_xy=None, labels=None, box=None, mask=p.mask)
        for k, p in prompts.items()
        if p.mask is not None
    }


def slice_job(
    editor: Any, generator: Any, frame: int, first_id: int, min_area: int
) -> Generator[Progress, None, SliceFound]:
    """Find the objects of ``frame`` and add them to the editor (ids from ``first_id`` on).

    The engine's ``add_found`` resolves overlaps and gives each object one mask prompt.
    """
    from ..engine.everything import add_found

    yield Progress(0, 2)
    image = editor.session.source.frame(frame)
    records = generator.generate(image)
    yield Progress(1, 2)
    ids = add_found(editor, frame, records, min_area=min_area, first_id=first_id)
    yield Progress(2, 2)
    return SliceFound(frame, list(ids), is_constant(image))


def stack_job(
    editor: Any, generator: Any, frame: int, settings: EverythingSettings, first_id: int
) -> Generator[Progress, None, Any]:
    """Find, track and add objects through the stack from ``frame`` (the engine's
    ``everything_steps``: its progress payloads are ``FoundFrame(frame, labels, result)``),
    new ids from ``first_id`` on (above the result layer's labels too); closing it mid-way
    is a cancel that leaves the editor consistent."""
    from ..engine.everything import everything_steps

    return (
        yield from everything_steps(
            editor, generator, frame=frame, every=settings.every, direction="both", min_area=settings.min_area,
            first_id=first_id,
        )  # fmt: skip
    )


# --------------------------------------------------------------------------- saving
def replayable(prompts: Mapping[Key, Prompt]) -> PromptSet:
    """``prompts`` with every mask replaced by its bounding box (masks have no JSON form).

    A prompt that has a box of its own keeps it and just loses the mask.
    """
    out = {}
    for key, p in prompts.items():
        if p.mask is None:
            out[key] = p
            continue
        box = p.box
        if box is None:
            rows, cols = np.nonzero(p.mask)
            # pixel i covers [i - 0.5, i + 0.5]: the box around the mask's pixels
            box = clip_box([cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5], p.mask.shape)
        out[key] = Prompt(frame=p.frame, obj_id=p.obj_id, points_xy=p.points_xy, labels=p.labels, box=box)
    return PromptSet(out)


# --------------------------------------------------------------------------- markers
def marker_xy(mask: np.ndarray) -> np.ndarray:
    """(x, y) of the mask's pixel nearest its centroid (inside the object, even a curved one)."""
    rows, cols = np.nonzero(mask)
    cy, cx = rows.mean(), cols.mean()
    i = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
    return np.array([cols[i], rows[i]], dtype=np.float64)


def ensure_found_layer(viewer: Any, spec: StackSpec, image_layer: Any) -> Any:
    """The markers layer of this image: adopt ``"SAM2 found [image]"`` if it fits, else add it."""
    name = f"{FOUND_NAME} [{spec.layer_name}]"
    if name in viewer.layers:
        layer = viewer.layers[name]
        if type(layer).__name__ == "Points" and layer.ndim == spec.ndim:
            return layer
        name = unique_name(viewer, name)
    return viewer.add_points(
        np.zeros((0, spec.ndim)),
        features=pd.DataFrame({OBJECT: pd.Series([], dtype=int)}),
        name=name,
        scale=spec.scale,
        translate=tuple(np.asarray(image_layer.translate)[-spec.ndim :]),
        size=max(3.0, min(spec.hw) / 30),
        symbol="diamond",
        border_color="white",
        border_width=0.2,
        text={"string": "{object}", "color": "white", "anchor": "upper_left", "size": 9},
    )


def draw_found(layer: Any, found: Mapping[Key, Prompt], spec: StackSpec, color_of: Any) -> None:
    """Make the markers layer show one marker per found mask (its events are blocked meanwhile)."""
    keys = sorted(found)
    coords = np.zeros((len(keys), spec.ndim))
    for i, key in enumerate(keys):
        rc = xy_to_napari(marker_xy(found[key].mask))[0]
        coords[i] = spec.full_coords(key[0], rc)
    with layer.events.data.blocker(), layer.events.features.blocker():
        layer.selected_data = set()
        layer.data = coords
        layer.features = pd.DataFrame({OBJECT: pd.Series([k[1] for k in keys], dtype=int)})
        if keys:
            colors = np.array([color_of(k[1]) for k in keys], dtype=np.float32).reshape(len(keys), 4)
            colors[:, 3] = 1.0
            layer.face_color = colors
    layer.refresh()


def marked_keys(layer: Any, spec: StackSpec) -> set[Key]:
    """The (frame, object) places the markers layer holds a marker for."""
    if not len(layer.data) or OBJECT not in layer.features:
        return set()
    frames = spec.frame_of(np.asarray(layer.data, dtype=np.float64))
    objs = np.asarray(layer.features[OBJECT]).astype(int)
    return {(int(f), int(o)) for f, o in zip(frames, objs, strict=True)}


def found_message(n: int, frame: int, constant: bool) -> str:
    """The note after segmenting one slice (``constant``: the slice holds one value only)."""
    if n:
        return f"found {n} object{'' if n == 1 else 's'} on slice {frame}"
    if constant:
        return f"no objects found on slice {frame} (an empty or constant image)"
    return (
        f"no objects found on slice {frame}: none passed the thresholds; lower 'min predicted IoU' "
        "or 'min stability' in the segment-all settings"
    )


def is_constant(image: np.ndarray) -> bool:
    """Whether every pixel of a slice has the same value (in every channel)."""
    flat = np.asarray(image).reshape(-1, *np.asarray(image).shape[2:])
    return bool((flat == flat[:1]).all())


# --------------------------------------------------------------------------- the controller
class FoundObjects:
    """The segmenter's found objects: their mask prompts, their markers and the segment-all jobs.

    Parameters
    ----------
    seg : Segmenter
        The working state this belongs to (its session, editor, layers and job runner).
    """

    def __init__(self, seg: Any) -> None:
        self.seg = seg
        #: one mask prompt per (frame, object) found; merged with the layers' prompts by ``sync``
        self.found: dict[Key, Prompt] = {}
        self.markers: Any = None
        self._gone: set[Key] = set()  # markers deleted while a segment-all job ran

    # ------------------------------------------------------------------ life cycle
    def reset(self) -> None:
        """A new session: nothing found; an existing markers layer of the image is emptied."""
        self.found = {}
        self.markers = None
        spec = self.seg.spec
        if spec is not None and f"{FOUND_NAME} [{spec.layer_name}]" in self.seg.viewer.layers:
            self.show(create=True)

    def detach(self) -> None:
        """Stop following the markers layer (it stays in the viewer)."""
        if self.markers is not None:
            self.markers.events.data.disconnect(self._on_markers)
            self.markers.selected_data.events.items_changed.disconnect(self._on_selected)

    def clear(self) -> None:
        """Forget every found mask (e.g. a prompt file replaces the session's prompts)."""
        if self.found:
            self.found = {}
            self.show()

    # ------------------------------------------------------------------ state
    def adopt(self) -> None:
        """After a segment-all job (done, cancelled or failed): what the editor follows now is
        what was found, less the markers deleted meanwhile; the markers show it."""
        found = found_masks(self.seg.editor.prompts)
        self.found = {k: p for k, p in found.items() if k not in self._gone}
        if self._gone & set(found):
            self.seg._dirty = True  # the sync after the job removes them from the session
        self._gone = set()
        self.show()

    def show(self, *, create: bool = False) -> None:
        """Draw one marker per found mask (the markers layer is added on first need)."""
        seg = self.seg
        if self.markers is not None and self.markers not in seg.viewer.layers:
            self.markers = None  # the user deleted the layer
        if self.markers is None:
            if not (self.found or create):
                return
            self.markers = ensure_found_layer(seg.viewer, seg.spec, seg.image_layer)
            self.markers.events.data.connect(self._on_markers)
            self.markers.selected_data.events.items_changed.connect(self._on_selected)
        draw_found(self.markers, self.found, seg.spec, seg.color_of)

    def _on_markers(self, event: Any) -> None:
        """A marker deleted: its found mask goes (and the object, if nothing else prompts it)."""
        action = str(getattr(event, "action", "changed"))
        if action.endswith(("adding", "removing", "changing")):
            return
        present = marked_keys(self.markers, self.seg.spec)
        gone = set(self.found) - present
        if gone:
            self.found = {k: p for k, p in self.found.items() if k not in gone}
            if self.seg.runner.busy:
                self._gone |= gone
        if present != set(self.found):  # a marker added or moved to another slice: markers are not prompts
            draw_found(self.markers, self.found, self.seg.spec, self.seg.color_of)
        if gone:
            self.seg.sync()

    def _on_selected(self, _event: Any = None) -> None:
        """Selecting one marker makes its object the current one (the next clicks correct it)."""
        selected = list(self.markers.selected_data)
        if len(selected) == 1 and selected[0] < len(self.markers.data):
            obj = int(np.asarray(self.markers.features[OBJECT])[selected[0]])
            if obj != self.seg.current_object:
                self.seg.set_object(obj)

    # ------------------------------------------------------------------ jobs
    def _begin(self, settings: EverythingSettings) -> Any:
        """The generator for a new segment-all job (None, said in a note, if the settings are refused)."""
        try:
            generator = make_generator(self.seg.model, settings)
        except InputError as exc:
            notify("warning", f"Segment all: {exc}")
            return None
        self._gone = set()
        return generator

    def _end(self, frames: list[int]) -> None:
        """After a segment-all job, whatever its outcome: adopt what was found, show ``frames``."""
        seg = self.seg
        if seg.editor is None:  # the session was closed meanwhile
            return
        self.adopt()
        seg.render(frames)
        seg._after_job()

    def segment_slice(self, settings: EverythingSettings) -> None:
        """Find every object on the slice on screen (a worker job); see the module docstring."""
        seg = self.seg
        frame = seg.current_frame()
        generator = self._begin(settings)
        if generator is None:
            return
        before = set(seg.session.obj_ids)

        def done(result: SliceFound) -> None:
            notify("info", found_message(len(result.ids), result.frame, result.constant))

        def cancelled() -> None:  # a cancel after the objects were added keeps them
            n = len(set(seg.session.obj_ids) - before) if seg.session is not None else 0
            kept = f"the {n} object(s) found are kept" if n else "nothing was added"
            notify("info", f"segment all on slice {frame} cancelled; {kept}")

        seg._run(
            f"SAM 2: segmenting all on slice {frame}",
            slice_job(seg.editor, generator, frame, seg.free_id(), settings.min_area),
            on_done=done, on_cancel=cancelled, on_finally=lambda: self._end([frame]), error_prefix="Segment all",
            text=JobText(doing=f"segmenting all on slice {frame}", did=f"segmented slice {frame}"),
        )  # fmt: skip

    def segment_stack(self, settings: EverythingSettings) -> None:
        """Find, track and add objects through the stack from the slice on screen (a worker job)."""
        seg = self.seg
        frame = seg.current_frame()
        generator = self._begin(settings)
        if generator is None:
            return
        before = set(seg.session.obj_ids)

        def step(item: Progress) -> None:
            written = item.payload  # a FoundFrame: the slice's label image, made in the worker
            if written is not None:
                seg.preview.data[seg.spec.plane_index(written.frame)] = written.labels
                if written.frame == seg.current_frame():
                    seg.preview.refresh()

        def summary(cancelled: bool) -> str:
            new = sorted(set(seg.session.obj_ids) - before) if seg.session is not None else []
            slices = sorted({f for f, o in self.found if o in new})
            where = f" (first seen on slice{'' if len(slices) == 1 else 's'} {', '.join(map(str, slices))})" if slices else ""
            if cancelled:
                return (
                    f"segment all through the stack cancelled; the {len(new)} object(s) found so far{where} are "
                    "kept: correct them with clicks, delete their markers, or Commit them"
                )
            if not new:
                return "no objects found through the stack (an empty or constant image, or none passed the thresholds)"
            return f"found {len(new)} object(s) through the stack{where}"

        def finished() -> None:
            self._end(sorted(set().union(*seg.coverage.values())) if seg.coverage else [])

        seg._run(
            "SAM 2: segmenting all through the stack",
            stack_job(seg.editor, generator, frame, settings, seg.free_id()),
            on_yield=step, on_done=lambda _r: notify("info", summary(False)),
            on_cancel=lambda: notify("info", summary(True)), on_finally=finished, error_prefix="Segment all",
            text=JobText(doing="segmenting all through the stack", did="segmented the stack", unit="step"),
        )  # fmt: skip
