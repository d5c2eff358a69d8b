"""The plugin's working state for one image: model, VideoSession, layers. No widgets here.

:class:`Segmenter` turns what the user does to the layers into engine calls:

* edits of the prompt layers -> :meth:`sync`: the layers' prompts go to the engine's
  :class:`~napari_sam2.engine.editor.Editor`, which decodes what changed, and the preview
  Labels layer shows those slices at once (a slice not encoded yet is encoded in a worker
  first);
* :meth:`propagate`, :meth:`commit`, :meth:`undo_commit`, :meth:`cycle_candidate`;
* :meth:`segment_all` (one slice) and :meth:`segment_all_stack`: found objects are mask
  prompts kept in :attr:`found`, merged with the layers' prompts at every :meth:`sync`, with a
  marker each in the "SAM2 found" Points layer (``everything.py``).

What a prompt means (replayable until propagated, a correction afterwards), which slices each
object covers and which objects are propagated live in the editor, not here.

Only one job runs at a time (:class:`TaskRunner`); edits made meanwhile are applied when it
ends. The session is touched from the main thread only, or from the one running job.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.editor import Editor
from ..engine.runs import check_direction
from ..errors import InputError
from ..io.labels import METADATA_KEY
from ..prompt import Key, Prompt, PromptSet
from ..runtime import choose_precision
from . import everything as ev
from . import prompt_files as pf
from . import prompt_layers as pl
from .candidates import Candidates, next_candidate
from .commit import CommitRecord, apply_commit, commit_problem, plan_commit, undo_commit
from .jobs import encode_job, open_job, propagation_job
from .model_picker import ModelChoice
from .stack import StackSpec
from .tasks import JobText, Progress, TaskRunner, notify
from .viewer_layers import PREVIEW_NAME, RESULT_NAME, ensure_labels_layer, show_video_axis, shown_frame, video_dim


class Segmenter:
    """State and actions behind the dock widget (see the module docstring).

    Arguments:
        viewer: the napari viewer.
        runner: runs long jobs in workers (or synchronously in tests).
    """

    def __init__(self, viewer: Any, runner: TaskRunner) -> None:
        self.viewer = viewer
        self.runner = runner
        self.model: Any = None
        self.model_choice: ModelChoice | None = None
        self.spec: StackSpec | None = None
        self.session: Any = None
        self.image_layer: Any = None
        self.points: Any = None
        self.shapes: Any = None
        self.preview: Any = None
        self.result: Any = None
        self.current_object = 1
        self.negative_mode = False
        #: move the viewer to each slice as propagation finishes it (costs a redraw per slice)
        self.follow = False
        self.last_commit: CommitRecord | None = None
        self.changed_callbacks: list[Callable[[], None]] = []
        self.editor: Editor | None = None
        self._candidates: dict[Key, Candidates] = {}
        #: found objects (segment all): their mask prompts, markers and jobs (``everything.py``)
        self.everything = ev.FoundObjects(self)
        self._dirty = False
        self._problems: set[str] = set()

    # ------------------------------------------------------------------ small helpers
    @property
    def active(self) -> bool:
        return self.session is not None

    # the editor's state, read-only here: the prompts the session follows, the slices each
    # object has a mask on, the objects a propagation has tracked
    prompts = property(lambda self: self.editor.prompts if self.editor is not None else PromptSet())
    #: the found objects' mask prompts, (frame, object) -> Prompt(mask=...)
    found = property(lambda self: self.everything.found)
    coverage = property(lambda self: self.editor.coverage if self.editor is not None else {})
    propagated = property(lambda self: self.editor.propagated if self.editor is not None else set())

    def _changed(self) -> None:
        for callback in self.changed_callbacks:
            callback()

    def current_frame(self) -> int:
        """The slice of the video axis the viewer shows now."""
        return shown_frame(self.viewer, self.image_layer, self.spec)

    def color_of(self, obj_id: int) -> np.ndarray:
        if self.preview is None:
            return np.array([1.0, 1.0, 0.0, 1.0])
        return np.asarray(self.preview.get_color(obj_id), dtype=np.float32)

    def _run(self, name: str, job: Generator[Progress, None, Any], **callbacks: Any) -> None:
        self.runner.start(name, job, **callbacks)
        self._changed()  # show "busy" (a synchronous job has already ended here)

    # ------------------------------------------------------------------ start
    def start(self, image_layer: Any, video_axis: int | None, axis_kind: str, choice: ModelChoice) -> None:
        """Load the model (worker), open a session on the image, set up the layers."""
        if self.runner.busy:
            notify("warning", "SAM 2 is busy; wait for the current job or cancel it, then start again")
            return
        try:
            spec = StackSpec.from_layer(image_layer, video_axis, axis_kind)
            choice.check()
        except InputError as exc:
            notify("warning", str(exc))
            return
        reuse = self.model is not None and self.model_choice is not None and self.model_choice.weights == choice.weights
        # a restart on the same image with the same model and precision keeps the encoded slices
        same = self.spec is not None and image_layer is self.image_layer and self.spec.same_source(spec)
        same = same and self.session is not None and (
            self.session.precision.dtype == choose_precision(choice.precision, self.session.model.device).dtype
        )
        old = self.session if reuse and same else None

        def done(out: tuple[Any, Any]) -> None:
            self.model, session = out
            self.model_choice = choice
            if self.session is not None:
                self.close(release=self.session is not session)
            self._install(image_layer, spec, session)

        short = Path(choice.label).name
        self._run(
            f"SAM 2: loading {choice.label}", open_job(choice, spec, self.model if reuse else None, old),
            on_done=done, on_finally=self._after_job,
            error_prefix=f"Could not start SAM 2 with {choice.label}",
            text=JobText(doing=f"loading {short}", did=f"loaded {short}"),
        )  # fmt: skip

    def _install(self, image_layer: Any, spec: StackSpec, session: Any) -> None:
        self.image_layer, self.spec, self.session = image_layer, spec, session
        self.editor = Editor(session)
        self._candidates.clear()
        self.last_commit = None
        self._problems.clear()
        show_video_axis(self.viewer, spec)
        self.points, self.shapes, messages = pl.ensure_prompt_layers(self.viewer, spec, image_layer)
        self.preview = ensure_labels_layer(self.viewer, PREVIEW_NAME, spec, image_layer, opacity=0.5, clear=True)
        self.result = ensure_labels_layer(self.viewer, RESULT_NAME, spec, image_layer, opacity=0.7, clear=False)
        for message in messages:
            notify("warning", message)
        self.points.events.data.connect(self._on_prompt_data)
        self.points.events.features.connect(self._on_prompt_edit)
        self.shapes.events.data.connect(self._on_prompt_data)
        self.shapes.events.features.connect(self._on_prompt_edit)
        self.points.mouse_drag_callbacks.insert(0, self._on_points_press)
        self.points.bind_key("n", lambda _layer: self.toggle_negative(), overwrite=True)
        self.points.bind_key("c", lambda _layer: self.cycle_candidate(), overwrite=True)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self.everything.reset()
        self.set_object(self.current_object if self.current_object >= 1 else 1)
        self.viewer.layers.selection.active = self.points
        self.points.mode = "add"
        self.sync()
        self.prefetch()

    def _disconnect(self) -> None:
        for layer in (self.points, self.shapes):
            if layer is None:
                continue
            for name in ("data", "features"):
                for cb in (self._on_prompt_data, self._on_prompt_edit):
                    getattr(layer.events, name).disconnect(cb)
        if self.points is not None and self._on_points_press in self.points.mouse_drag_callbacks:
            self.points.mouse_drag_callbacks.remove(self._on_points_press)
        self.everything.detach()
        self.viewer.dims.events.current_step.disconnect(self._on_step)

    def close(self, release: bool = True) -> None:
        """Stop the running job and detach from the layers (they stay in the viewer).

        ``release=False`` keeps the session's spill files (for a restart that re-uses it).
        A job still running in its worker is cancelled; the session is released once it ends.
        """
        session, running = self.session, self.runner.running
        if self.session is not None:
            self._disconnect()
        self.session = self.editor = None
        if session is not None and release:
            if running is not None and not running.finished:
                running.cleanups.append(session.close)
            else:
                session.close()
        if running is not None:
            running.cancel()

    # ------------------------------------------------------------------ events
    def _on_prompt_data(self, event: Any) -> None:
        action = str(getattr(event, "action", "changed"))
        if action.endswith(("adding", "removing", "changing")):
            return
        self.sync()

    def _on_prompt_edit(self, _event: Any = None) -> None:
        self.sync()

    def _on_points_press(self, layer: Any, event: Any) -> None:
        """Before napari adds a clicked point: Shift (or negative mode) makes it negative."""
        if layer.mode != "add":
            return
        negative = self.negative_mode != ("Shift" in event.modifiers)
        layer.feature_defaults = {pl.OBJECT: self.current_object, pl.POSITIVE: not negative}
        layer.current_symbol = pl.NEGATIVE_SYMBOL if negative else pl.POSITIVE_SYMBOL

    def _on_step(self, _event: Any = None) -> None:
        if self.image_layer not in self.viewer.layers:  # e.g. the viewer is closing
            return
        self.prefetch()
        self._changed()

    def _after_job(self) -> None:
        if self._dirty and self.active:
            self._dirty = False
            self.sync()
        self._changed()

    # ------------------------------------------------------------------ objects and modes
    def set_object(self, obj_id: int) -> None:
        """Make ``obj_id`` the object new clicks and boxes belong to."""
        self.current_object = int(obj_id)
        if self.points is not None:
            self.points.feature_defaults = {pl.OBJECT: self.current_object, pl.POSITIVE: not self.negative_mode}
        if self.shapes is not None:
            self.shapes.feature_defaults = {pl.OBJECT: self.current_object}
            self.shapes.current_edge_color = self.color_of(self.current_object)
        self._changed()

    def new_object(self) -> int:
        """Make the next free object id the current object, and return it (see :meth:`free_id`)."""
        new = self.free_id()
        self.set_object(new)
        return new

    def free_id(self) -> int:
        """The next free object id: above every id in the prompts, the session and the result layer."""
        ids = [0, self.current_object if self._has_prompts_for(self.current_object) else 0]
        ids += [pl.max_object_id(layer) for layer in (self.points, self.shapes) if layer is not None]
        ids += [o for _, o in self.found]
        if self.session is not None:
            ids.extend(self.session.obj_ids)
        if self.result is not None:
            ids.append(int(np.max(self.result.data)))
        return max(ids) + 1

    def _has_prompts_for(self, obj_id: int) -> bool:
        return obj_id in self.prompts.obj_ids

    def toggle_negative(self, value: bool | None = None) -> None:
        self.negative_mode = (not self.negative_mode) if value is None else bool(value)
        if self.points is not None:
            self.points.feature_defaults = {pl.OBJECT: self.current_object, pl.POSITIVE: not self.negative_mode}
            self.points.current_symbol = pl.NEGATIVE_SYMBOL if self.negative_mode else pl.POSITIVE_SYMBOL
        self._changed()

    # ------------------------------------------------------------------ prompts -> session
    def sync(self, then: Callable[[], None] | None = None) -> None:
        """Send changed prompts to the session and show their slices; ``then`` runs after."""
        if not self.active:
            return
        if self.runner.busy:
            self._dirty = True
            return
        collected = pl.collect_prompts(self.points, self.shapes, self.spec)
        for problem in collected.problems:
            if problem not in self._problems:
                notify("warning", problem)
        self._problems = set(collected.problems)
        pl.style_points(self.points, self.color_of)
        pl.style_boxes(self.shapes, self.color_of)
        prompts = self._with_found(collected.prompts)
        changed = prompts.changed(self.prompts)
        objects = {o for _, o in changed}
        needed = {f for f, o in prompts if o in objects}
        missing = sorted(f for f in needed if f not in self.session.features)
        if missing:
            self._encode(missing, then=lambda: self.sync(then))
            return
        if changed:
            self._apply(prompts)
        if then is not None:
            then()

    def _with_found(self, layer_prompts: PromptSet) -> PromptSet:
        """The layers' prompts with the found masks: one prompt per (frame, object), so a click
        on a found object's slice joins its mask (``merge_prompts``)."""
        if not self.found:
            return layer_prompts
        return PromptSet.of([*layer_prompts.values(), *self.found.values()])

    def _apply(self, prompts: PromptSet) -> None:
        touched = self.editor.apply(prompts)
        self._candidates = {k: c for k, c in self._candidates.items() if prompts.get(k) == c.prompt}
        self.render(touched)

    def render(self, frames: list[int]) -> None:
        """Show the session's label image of ``frames`` in the preview layer."""
        if not frames:
            return
        empty = not self.session.obj_ids
        for frame in frames:
            where = self.spec.plane_index(frame)
            self.preview.data[where] = 0 if empty else self.session.label_image(frame)
        self.preview.refresh()
        self._changed()

    # ------------------------------------------------------------------ encoding
    def _encode(self, frames: list[int], then: Callable[[], None] | None = None) -> None:
        what = f"slice {frames[0]}" if len(frames) == 1 else f"{len(frames)} slices"
        self._run(
            f"SAM 2: encoding {what}", encode_job(self.session, frames), on_done=lambda _r: then() if then else None,
            on_finally=self._after_job, error_prefix=f"Encoding {what}",
            text=JobText(doing=f"encoding {what}", did=f"encoded {what}", unit="slice" if len(frames) > 1 else "step"),
        )  # fmt: skip

    def prefetch(self) -> None:
        """Encode the slice on screen in a worker, so the first click on it is instant."""
        if not self.active or self.runner.busy or self.image_layer not in self.viewer.layers:
            return
        frame = self.current_frame()
        if frame not in self.session.features:
            self._encode([frame])

    # ------------------------------------------------------------------ candidates
    def candidate_info(self) -> str:
        cand = self._candidates.get((self.current_frame(), self.current_object))
        return "" if cand is None else cand.info()

    def cycle_candidate(self) -> None:
        """Show the next of the 3 masks SAM 2 proposes for a single click (current slice and object)."""
        if not self.active or self.runner.busy:
            notify("info", "SAM 2 is busy; try again when the current job ends")
            return
        key = (self.current_frame(), self.current_object)
        prompt = self.prompts.get(key)
        if prompt is None or not prompt.is_single_click:
            notify("info", f"mask candidates are for a single click: object {key[1]} has no single click on slice {key[0]}")
            return
        if key[1] in self.propagated:
            notify("info", "mask candidates are offered before propagating; correct a propagated object with more clicks")
            return
        cand = next_candidate(self._candidates.get(key), prompt, self.model, self.session, self.spec.hw)
        self._candidates[key] = cand
        self.render(self.editor.choose(key, cand.masks[cand.index] if cand.index else None))

    def _ready_for_job(self) -> bool:
        """A session is started and no job is running; otherwise tell the user why not."""
        if not self.active:
            notify("warning", "start a session first (pick an image and a model, then Start)")
            return False
        if self.runner.busy:
            notify("info", "SAM 2 is busy; wait for the current job or cancel it")
            return False
        return True

    # ------------------------------------------------------------------ propagation
    def propagate(self, direction: str = "forward") -> None:
        """Track every object through the stack from its first prompted slice (a worker job).

        When every object has been propagated and the only new prompts are corrections,
        re-track from the corrected slices outward instead (``Editor.plan``): the slices
        between an object's first prompt and its correction keep their masks.
        """
        check_direction(direction)
        if not self._ready_for_job():
            return
        if self.spec.n_frames == 1:
            notify("info", "a 2-D image has no other slices to propagate to; Commit the masks directly")
            return
        self.sync(then=lambda: self._propagate(direction))

    def _propagate(self, direction: str) -> None:
        session, spec = self.session, self.spec
        if not session.obj_ids:
            notify("warning", "nothing to propagate: click on an object first (Points layer, add mode)")
            return
        objects = set(session.obj_ids)
        runs = self.editor.plan(direction)

        def frame_done(item: Progress) -> None:
            frame, labels = item.payload
            self.preview.data[spec.plane_index(frame)] = labels
            if self.follow:
                self.viewer.dims.set_current_step(video_dim(self.viewer, spec), frame)
            if frame == self.current_frame():
                self.preview.refresh()

        def finished() -> None:
            self.preview.refresh()
            self._after_job()

        n = len(objects)
        self._run(
            f"SAM 2: propagating {direction}", propagation_job(self.editor, runs), on_yield=frame_done,
            on_cancel=lambda: notify("info", "propagation cancelled; the slices done so far are kept"),
            on_finally=finished, error_prefix="Propagation",
            text=JobText(doing=f"propagating {direction}", did="propagated", unit="slice",
                         extra=f"{n} object" if n == 1 else f"{n} objects"),
        )  # fmt: skip

    def cancel(self) -> None:
        if self.runner.running is not None:
            self.runner.running.cancel()

    # ------------------------------------------------------------------ segment all
    def segment_all(self, settings: ev.EverythingSettings | None = None) -> None:
        """Find every object on the slice on screen; each becomes an object of the session."""
        if self._ready_for_job():
            self.sync(then=lambda: self.everything.segment_slice(settings or ev.EverythingSettings()))

    def segment_all_stack(self, settings: ev.EverythingSettings | None = None) -> None:
        """Find the objects of the slice on screen, track them through the stack, and add the
        objects that appear on later slices (every ``settings.every`` slices)."""
        if not self._ready_for_job():
            return
        if self.spec.n_frames == 1:
            notify("info", "a 2-D image has one slice: use Segment all (this slice)")
            return
        self.sync(then=lambda: self.everything.segment_stack(settings or ev.EverythingSettings()))

    # ------------------------------------------------------------------ commit
    def commit(self) -> None:
        """Write the session's objects into the result layer (overlap rule in ``commit.py``)."""
        if not self._ready_for_job():
            return
        coverage = {k: set(v) for k, v in self.coverage.items() if v}
        if (problem := commit_problem(self.result.data, coverage)) is not None:
            notify("warning", problem)
            return
        result = self.result

        def done(record: CommitRecord) -> None:
            apply_commit(result, record)
            self.last_commit = record
            result.metadata[METADATA_KEY] = self.metadata()
            notify("info", record.summary())

        n = len(coverage)
        self._run(
            "SAM 2: committing", plan_commit(result.data, self.preview.data, coverage, self.spec),
            on_done=done, on_finally=self._after_job, error_prefix="Commit",
            text=JobText(doing="committing", did="committed", unit="slice",
                         extra=f"{n} object" if n == 1 else f"{n} objects"),
        )  # fmt: skip

    def undo_commit(self) -> None:
        if self.last_commit is None or self.result is None:
            notify("info", "there is no commit to undo")
            return
        restored = undo_commit(self.result, self.last_commit)
        self.last_commit = None
        notify("info", f"undid the last commit ({restored} pixels restored)")
        self._changed()

    # ------------------------------------------------------------------ saving and loading
    def metadata(self) -> dict[str, Any]:
        """What we store with the labels: axes, video axis, model and the prompts."""
        model = self.model_choice.label if self.model_choice else None
        # found masks have no JSON form: their bounding boxes are saved (everything.replayable)
        meta = pf.metadata(self.spec, model, ev.replayable(self.prompts), self._candidates)
        meta["found_objects"] = [
            {"frame": f, "object": o, "saved_as": "box"} for f, o in sorted(self.found)
        ]
        return meta

    def _read_prompts(self, path: str) -> list[Prompt]:
        if not self.active:
            raise InputError("start a session first, then load prompts into it")
        return pf.read_for(self.spec, path)

    def prompts_not_in(self, path: str) -> tuple[int, int]:
        """Clicks and boxes in the prompt layers that the file at ``path`` does not have."""
        return pl.prompts_not_in(self.points, self.shapes, self._read_prompts(path), self.spec)

    def load_prompts(self, path: str, mode: str = pf.REPLACE) -> int:
        """Load a JSON prompt file into the prompt layers; returns how many clicks and boxes it added.

        ``mode="replace"`` (the default): the layers then hold exactly the file's prompts, so the
        session replays the file (after a Restart, the layers already hold them: nothing is
        duplicated). ``mode="add"``: the file's prompts are added to the layers' own, except those
        already there. Every object whose prompts change is rebuilt from its prompts alone, as
        before propagating (propagate again to track it).
        """
        prompts = self._read_prompts(path)
        added, dropped = pf.load_into_layers(self.points, self.shapes, self.spec, prompts, mode, self.current_object)
        if mode == pf.REPLACE:  # the file replaces the session's prompts, found masks too
            self.everything.clear()
        collected = pl.collect_prompts(self.points, self.shapes, self.spec)
        # a loaded object is a function of its prompts (replayable), as before propagating
        self.editor.forget_propagation({o for _, o in self._with_found(collected.prompts).changed(self.prompts)})
        self.set_object(self.current_object)  # the layers' defaults for the next click
        self.sync()
        notify("info", pf.loaded_message(path, mode, added, dropped))
        return added
