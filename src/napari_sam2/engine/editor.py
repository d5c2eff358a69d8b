"""The one edit path: what the user's prompts mean for a :class:`VideoSession`.

:class:`Editor` sits over a session and owns the rule every driver shares (the napari widget,
``segment``, dask batch, evaluation):

* until an object has been propagated, its masks are a function of its prompts alone, so a
  saved prompt file replays to the same masks: a changed prompt is decoded afresh on its
  frame (only that frame), a removed one rebuilds the object from the prompts it has left;
* once propagated (a propagation has tracked at least one frame for it), a changed prompt is
  a correction: SAM 2 refines the mask there with the clicks, and :meth:`Editor.plan` carries
  the corrections outward from the corrected frames instead of tracking from the start.

It also keeps what the drivers used to shadow by hand: the frames each object has a mask on
(:attr:`Editor.coverage`) and which objects are propagated (:attr:`Editor.propagated`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from ..prompt import Key, Prompt, PromptSet
from .results import FrameResult
from .runs import Run, plan_runs, run_all
from .session import VideoSession


class Editor:
    """Prompts in, masks out, over one :class:`VideoSession` (see the module docstring).

    Parameters
    ----------
    session : VideoSession
        The session to edit; the editor is its only writer.
    """

    def __init__(self, session: VideoSession) -> None:
        self.session = session
        self.prompts = PromptSet()
        #: per (frame, object): a mask chosen instead of a single click's first mask (candidates)
        self.choices: dict[Key, np.ndarray] = {}
        #: per object, the frames it has a mask on (prompted or tracked)
        self.coverage: dict[int, set[int]] = {}
        #: the objects a propagation has tracked: their changed prompts are corrections
        self.propagated: set[int] = set()

    # ------------------------------------------------------------------ prompts
    def apply(self, prompts: Mapping[Key, Prompt]) -> list[int]:
        """Make the session follow ``prompts`` (all of them, one per (frame, object)).

        Only what changed since the last call is decoded. Returns the frames whose masks
        changed, to redraw. A prompt the model refuses raises and leaves the editor as it was
        for that object (the other objects' changes are kept).
        """
        new = prompts if isinstance(prompts, PromptSet) else PromptSet(prompts)
        changed = new.changed(self.prompts)
        # a chosen candidate belongs to the click it was chosen for
        self.choices = {k: m for k, m in self.choices.items() if k in new and k not in changed}
        touched: set[int] = set()
        for obj in sorted({o for _, o in changed}):
            keys = sorted(k for k in changed if k[1] == obj)
            if obj in self.propagated and new.frames_of(obj):
                touched |= self._correct(obj, keys, new)
            elif any(k not in new for k in keys) or obj in self.propagated:
                touched |= self._rebuild(obj, new)
            else:  # new or edited prompts of an object that is still a function of its prompts
                for key in keys:
                    self._decode(new[key], refine=False)
                    self.coverage.setdefault(obj, set()).add(key[0])
                    touched.add(key[0])
        self.prompts = new
        return sorted(touched)

    def choose(self, key: Key, mask: np.ndarray | None) -> list[int]:
        """Show ``mask`` (a candidate) for the single click at ``key`` instead of SAM 2's first mask;
        None goes back to it. Returns the frames to redraw."""
        prompt = self.prompts.get(key)
        if prompt is None or not prompt.is_single_click or key[1] in self.propagated:
            raise ValueError(f"no single click of an unpropagated object at {key}")
        if mask is None:
            self.choices.pop(key, None)
        else:
            self.choices[key] = np.asarray(mask, dtype=bool)
        self._decode(prompt, refine=False)
        return [key[0]]

    def forget_propagation(self, obj_ids: set[int] | list[int]) -> None:
        """Make these objects functions of their prompts again (e.g. prompts loaded from a file):
        the next :meth:`apply` that changes them rebuilds them from their prompts."""
        self.propagated -= set(obj_ids)

    def reset(self) -> None:
        """Forget every object, prompt and mask (the session's cached features are kept)."""
        self.session.reset()
        self.prompts = PromptSet()
        self.choices.clear()
        self.coverage.clear()
        self.propagated.clear()

    def _decode(self, prompt: Prompt, *, refine: bool) -> None:
        chosen = self.choices.get(prompt.key) if not refine else None
        if chosen is not None and prompt.is_single_click:
            prompt = Prompt(frame=prompt.frame, obj_id=prompt.obj_id, points_xy=None, labels=None, box=None,
                            mask=chosen)  # fmt: skip
        self._add(prompt, refine=refine)

    def _add(self, prompt: Prompt, *, refine: bool) -> None:
        """One prompt into the session. A mask with clicks or a box (e.g. a found object the
        user clicked on) means the mask refined by them: the mask first, then the clicks and
        box with the mask as the decoder's mask input, as a click refines any mask."""
        if prompt.mask is None or (prompt.points_xy is None and prompt.box is None):
            self.session.add_prompt(prompt=prompt, refine=refine)
            return
        mask_only = Prompt(frame=prompt.frame, obj_id=prompt.obj_id, points_xy=None, labels=None, box=None,
                           mask=prompt.mask)  # fmt: skip
        clicks = Prompt(frame=prompt.frame, obj_id=prompt.obj_id, points_xy=prompt.points_xy, labels=prompt.labels,
                        box=prompt.box)  # fmt: skip
        self.session.add_prompt(prompt=mask_only, refine=refine)
        self.session.add_prompt(prompt=clicks, refine=True)

    def _rebuild(self, obj: int, prompts: PromptSet) -> set[int]:
        """Make ``obj`` a function of its prompts alone; returns the frames to redraw."""
        touched = self.coverage.pop(obj, set())
        if obj in self.session.obj_ids:
            self.session.remove_object(obj)
        self.propagated.discard(obj)
        frames = prompts.frames_of(obj)
        for frame in frames:
            self._decode(prompts[(frame, obj)], refine=False)
        if frames:
            self.coverage[obj] = set(frames)
        return touched | set(frames)

    def _correct(self, obj: int, keys: list[Key], prompts: PromptSet) -> set[int]:
        """Changed prompts of a propagated object: corrections on their frames."""
        for key in keys:
            if key in prompts:
                self._add(prompts[key], refine=True)
            elif obj in self.session.obj_ids:
                self.session.clear_prompts(*key)
            self.coverage.setdefault(obj, set()).add(key[0])
        return {f for f, _ in keys}

    # ------------------------------------------------------------------ propagation
    def plan(self, direction: str) -> list[Run]:
        """The runs Propagate means now: the corrections carried outward when every object has
        been propagated and only corrections are new, else tracking from the prompted frames."""
        objects = set(self.session.obj_ids)
        runs = self.session.correction_runs(direction) if objects and objects <= self.propagated else []
        return runs or plan_runs(self.prompts.frames, self.session.num_frames, direction)

    def propagate(self, runs: list[Run]) -> Iterator[FrameResult]:
        """Execute ``runs``, yielding each tracked frame; an object counts as propagated from its
        first tracked frame on (a run that fails before it leaves the objects replayable)."""
        objects = set(self.session.obj_ids)
        for result in run_all(self.session, runs):
            self.propagated |= objects
            for obj in objects:
                self.coverage.setdefault(obj, set()).add(result.frame)
            yield result
