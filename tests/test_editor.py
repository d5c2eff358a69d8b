"""The engine's edit path and run planner, without a viewer: what every driver shares."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam2.engine.editor import Editor
from napari_sam2.engine.runs import Run, frames_visited, plan_runs, run_all
from napari_sam2.engine.session import VideoSession
from napari_sam2.errors import InputError
from napari_sam2.prompt import Prompt, PromptSet

from .parity import FIXTURES


from .test_session import model  # noqa: F401  (the small SAM 2.1 fixture model)


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return np.load(FIXTURES / "small_sam2.1" / "video.npz")["frames"][:6]


def click(frame: int, obj: int, *points: tuple[float, float], negative: int = 0) -> Prompt:
    labels = [1] * (len(points) - negative) + [0] * negative
    return Prompt(frame=frame, obj_id=obj, points_xy=np.array(points, np.float32), labels=labels, box=None)


def box(frame: int, obj: int) -> Prompt:
    return Prompt(frame=frame, obj_id=obj, points_xy=None, labels=None, box=[60, 20, 120, 80])


# --------------------------------------------------------------------------- run planner


def test_directions_cover_the_stack_once_each_way():
    assert plan_runs([3, 5], 10, "forward") == [(3, False, 7)]
    assert plan_runs([5, 3, 5], 10, "backward") == [(5, True, 6)]
    assert plan_runs([3, 5], 10, "both") == [Run(3, False, 7), Run(3, True, 4)]
    assert plan_runs([0, 4], 10, "both") == [(0, False, 10)]  # nothing lies before frame 0
    assert frames_visited(plan_runs([3, 5], 10, "both")) == 11  # frame 3 twice
    with pytest.raises(InputError, match="direction"):
        plan_runs([0], 4, "sideways")
    with pytest.raises(InputError, match="no prompts"):
        plan_runs([], 4, "both")


@pytest.mark.parametrize(("frames", "direction"), [([2], "both"), ([0], "backward"), ([3, 1], "backward"), ([0], "both")])
def test_running_a_plan_yields_the_frames_it_counts(model, clip, frames, direction):
    with VideoSession(model, clip) as session:
        for f in frames:
            session.add_prompt(prompt=click(f, 1, (40, 50)))
        runs = plan_runs(frames, session.num_frames, direction)
        seen = [r.frame for r in run_all(session, runs)]
    assert len(seen) == frames_visited(runs)
    assert set(seen) == (set(range(6)) if direction == "both" else set(range(max(frames) + 1)))


# --------------------------------------------------------------------------- the edit path


def _labels(session: VideoSession) -> dict[int, np.ndarray]:
    return {t: session.label_image(t) for t in range(session.num_frames)}


def test_prompts_given_one_by_one_replay_to_the_masks_of_the_whole_set(model, clip):
    final = PromptSet.of([click(0, 1, (40, 50), (60, 40), negative=1), box(2, 2), click(4, 1, (45, 55))])
    with VideoSession(model, clip) as fresh:
        for p in final.values():
            fresh.add_prompt(prompt=p, refine=False)
        expected = _labels(fresh)
    with VideoSession(model, clip) as session:
        editor = Editor(session)
        steps = [
            [click(0, 1, (40, 50))],
            [click(0, 1, (40, 50)), box(2, 2)],
            [click(0, 1, (40, 50)), box(2, 2), click(3, 1, (10, 10))],
            [click(0, 1, (40, 50), (60, 40), negative=1), box(2, 2), click(3, 1, (10, 10)), click(4, 1, (45, 55))],
            list(final.values()),  # the click on frame 3 is withdrawn: object 1 is rebuilt without it
        ]
        for step in steps:
            editor.apply(PromptSet.of(step))
        got = _labels(session)
        assert editor.coverage == {1: {0, 4}, 2: {2}} and editor.propagated == set()
    for t in range(6):
        np.testing.assert_array_equal(got[t], expected[t], err_msg=f"frame {t}")


def test_a_click_decodes_only_what_changed(model, clip, monkeypatch):
    with VideoSession(model, clip) as session:
        editor = Editor(session)
        prompts = [click(0, 1, (40, 50)), click(3, 1, (45, 55)), box(2, 2)]
        assert editor.apply(PromptSet.of(prompts)) == [0, 2, 3]
        decoded = []
        real = session.add_prompt
        monkeypatch.setattr(session, "add_prompt", lambda **kw: decoded.append(kw["prompt"].key) or real(**kw))
        assert editor.apply(PromptSet.of([*prompts[:2], click(3, 1, (45, 55), (20, 20), negative=1), box(2, 2)])) == [3]
        assert decoded == [(3, 1)]
        assert editor.apply(editor.prompts) == [] and decoded == [(3, 1)]  # nothing changed: nothing decoded


def test_an_object_is_propagated_from_its_first_tracked_frame_on(model, clip):
    with VideoSession(model, clip) as session:
        editor = Editor(session)
        editor.apply(PromptSet.of([click(1, 1, (40, 50))]))
        runs = editor.plan("both")
        assert runs == plan_runs([1], 6, "both")
        stream = editor.propagate(runs)
        assert editor.propagated == set()  # planned, not yet tracked: still a function of its prompts
        assert next(stream).frame == 1 and editor.propagated == {1}
        assert [next(stream).frame for _ in range(3)] == [2, 3, 4]
        stream.close()  # cancelled on frame 4: what was tracked counts
        assert editor.coverage == {1: {1, 2, 3, 4}}
        corrected = click(4, 1, (40, 50), (60, 40), negative=1)
        editor.apply(PromptSet.of([click(1, 1, (40, 50)), corrected]))
        assert session.pending_corrections == [4]  # a correction, not a rebuild
        assert editor.plan("both") == [(4, False, 2)]  # carried outward from the corrected frame


def test_a_propagation_that_fails_on_its_first_frame_leaves_the_objects_replayable(model, clip, monkeypatch):
    with VideoSession(model, clip) as session:
        editor = Editor(session)
        editor.apply(PromptSet.of([click(0, 1, (40, 50))]))

        def broken(*_args, **_kwargs):
            raise RuntimeError("out of memory")
            yield  # a generator, as propagate

        monkeypatch.setattr(session, "propagate", broken)
        with pytest.raises(RuntimeError):
            list(editor.propagate(editor.plan("forward")))
        assert editor.propagated == set()
        monkeypatch.undo()
        editor.apply(PromptSet.of([click(0, 1, (40, 50)), click(2, 1, (45, 55))]))
        assert session.pending_corrections == []  # the new click is a prompt, not a correction


def test_a_chosen_candidate_replaces_the_first_mask_until_its_click_changes(model, clip):
    with VideoSession(model, clip) as session:
        editor = Editor(session)
        editor.apply(PromptSet.of([click(0, 1, (40, 50))]))
        first = session.label_image(0).copy()
        chosen = np.zeros(session.hw, bool)
        chosen[10:30, 20:60] = True
        assert editor.choose((0, 1), chosen) == [0]
        shown = session.label_image(0) == 1
        assert (shown & chosen).sum() / (shown | chosen).sum() > 0.9
        editor.apply(PromptSet.of([click(0, 1, (40, 50)), box(3, 2)]))  # another object: the choice stays
        assert (0, 1) in editor.choices
        editor.apply(PromptSet.of([click(0, 1, (41, 50)), box(3, 2)]))  # the click moved: SAM 2's mask again
        assert editor.choices == {}
        assert not np.array_equal(session.label_image(0) == 1, shown)
        with pytest.raises(ValueError, match="single click"):
            editor.choose((3, 2), chosen)
        assert first.any()


def test_clicks_on_a_mask_prompt_refine_the_mask(model, clip):
    """A found object (a mask prompt) the user clicks on: the mask refined by the clicks,
    the same as adding the mask and then refining it, and the same again on replay."""
    h, w = clip.shape[1:3]
    mask = np.zeros((h, w), bool)
    mask[30:70, 20:80] = True
    found = Prompt(frame=1, obj_id=1, points_xy=None, labels=None, box=None, mask=mask)
    clicked = Prompt(frame=1, obj_id=1, points_xy=np.array([[50.0, 50.0], [25.0, 35.0]]), labels=[1, 0], box=None,
                     mask=mask)  # fmt: skip
    with VideoSession(model, clip) as s:
        editor = Editor(s)
        editor.apply(PromptSet.of([found]))
        alone = s.result(1).logits[0].copy()
        editor.apply(PromptSet.of([clicked]))
        refined = s.result(1).logits[0].copy()
    with VideoSession(model, clip) as s:  # by hand: the mask, then the clicks refining it
        s.add_prompt(prompt=found, refine=False)
        s.add_prompt(1, 1, points=clicked.points_xy, labels=clicked.labels, refine=True)
        by_hand = s.result(1).logits[0]
    with VideoSession(model, clip) as s:  # replay from the prompt file's content
        Editor(s).apply(PromptSet.of([clicked]))
        replayed = s.result(1).logits[0]
    assert not np.array_equal(refined > 0, alone > 0)  # the clicks changed the mask
    np.testing.assert_array_equal(refined, by_hand)
    np.testing.assert_array_equal(refined, replayed)
