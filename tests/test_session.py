"""VideoSession behaviour beyond parity: bad input, cancelling, objects, corrections, laziness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2 import load_model
from napari_sam2.engine.results import FrameResult
from napari_sam2.engine.session import VideoSession
from napari_sam2.errors import InputError

from .parity import FIXTURES


@pytest.fixture(scope="module")
def model():
    d = FIXTURES / "small_sam2.1"
    return load_model(d / "checkpoint.pt", config=d / "config.json")


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return np.load(FIXTURES / "small_sam2.1" / "video.npz")["frames"][:8]


@pytest.fixture
def session(model, clip):
    s = VideoSession(model, clip)
    yield s
    s.close()


def _click(session: VideoSession, frame: int = 0, obj: int = 1) -> FrameResult:
    return session.add_prompt(frame, obj, points=[[40, 50]], labels=[1])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(frame=8, obj_id=1, points=[[1, 1]], labels=[1]), "out of range"),
        (dict(frame=-1, obj_id=1, points=[[1, 1]], labels=[1]), "out of range"),
        (dict(frame=0, obj_id=-2, points=[[1, 1]], labels=[1]), "object ids"),
        (dict(frame=0, obj_id=1), "empty"),
        (dict(frame=0, obj_id=1, points=np.zeros((0, 2)), labels=[]), "empty"),
        (dict(frame=0, obj_id=1, points=[[500, 1]], labels=[1]), "outside the image"),
        (dict(frame=0, obj_id=1, mask=np.ones((10, 10), bool)), "frame's shape"),
        (dict(frame=0, obj_id=1, mask=np.zeros((120, 160), bool)), "empty"),
        (dict(frame=0, obj_id=1, mask=np.ones((120, 160), bool), box=[1, 1, 5, 5]), "not both"),
    ],
)
def test_bad_prompts_raise_and_leave_the_session_usable(session, kwargs, message):
    with pytest.raises(InputError, match=message):
        session.add_prompt(**kwargs)
    assert session.obj_ids == []
    assert _click(session).obj_ids == [1]


def test_zero_frames_and_nan_stacks_are_rejected(model):
    with pytest.raises(InputError):
        VideoSession(model, np.zeros((0, 32, 32), np.uint8))
    bad = np.zeros((3, 32, 32), np.float32)
    bad[0, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        VideoSession(model, bad)


def test_unknown_object_and_propagating_without_prompts_are_errors(session):
    with pytest.raises(InputError, match="no prompts"):
        next(session.propagate())
    with pytest.raises(InputError, match="unknown object"):
        session.remove_object(5)
    with pytest.raises(InputError, match="unknown object"):
        session.clear_prompts(0, 5)


# ---------------------------------------------------------------- behaviour
def test_propagation_covers_every_frame_and_never_reencodes(session):
    _click(session)
    results = list(session.propagate())
    assert [r.frame for r in results] == list(range(8))
    assert session.features.encoded_count == 8
    list(session.propagate(start=7, reverse=True))
    session.add_prompt(3, 1, points=[[40, 50], [10, 10]], labels=[1, 0])
    list(session.propagate())
    assert session.features.encoded_count == 8  # corrections and re-propagation reuse features


def test_cancelled_propagation_keeps_finished_frames_and_can_continue(model, clip):
    full = VideoSession(model, clip)
    _click(full)
    expected = {r.frame: r.logits for r in full.propagate()}

    s = VideoSession(model, clip)
    _click(s)
    gen = s.propagate()
    done = [next(gen).frame for _ in range(4)]
    gen.close()  # the user pressed "cancel"
    assert done == [0, 1, 2, 3]
    np.testing.assert_allclose(s.result(3).logits, expected[3], atol=1e-5)
    assert (s.result(5).logits == -1024).all()  # not reached yet
    rest = list(s.propagate(start=3))
    assert [r.frame for r in rest] == [3, 4, 5, 6, 7]
    for r in rest:
        np.testing.assert_allclose(r.logits, expected[r.frame], atol=1e-4)


def test_correction_sticks_only_with_corrections_as_conditioning(model, clip):
    def corrected(as_cond: bool) -> np.ndarray:
        s = VideoSession(model, clip, corrections_as_conditioning=as_cond)
        _click(s)
        list(s.propagate())
        fixed = s.add_prompt(5, 1, points=[[40, 50], [60, 40]], labels=[1, 0]).masks[0]
        after = {r.frame: r.masks[0] for r in s.propagate()}[5]
        return fixed, after

    fixed, after = corrected(True)
    np.testing.assert_array_equal(after, fixed)  # the correction survives re-propagation
    fixed_off, after_off = corrected(False)
    assert not np.array_equal(after_off, fixed_off)  # the official default re-tracks it


def test_corrections_are_carried_outward_from_the_corrected_frame(model, clip):
    s = VideoSession(model, clip, corrections_as_conditioning=True)
    s.add_prompt(3, 1, points=[[40, 50]], labels=[1])
    assert s.pending_corrections == [] and s.correction_runs() == []  # a first prompt is no correction
    for reverse in (False, True):
        list(s.propagate(start=3, reverse=reverse))
    # a correction on the first prompted frame re-tracks both ways from it
    s.add_prompt(3, 1, points=[[40, 50], [60, 40]], labels=[1, 0])
    assert s.pending_corrections == [3] and s.correction_runs() == [(3, False, 5), (3, True, 4)]
    for start, reverse, _ in s.correction_runs():
        list(s.propagate(start=start, reverse=reverse))
    before = {t: s.result(t).logits[0].copy() for t in range(8)}
    s.add_prompt(5, 1, points=[[40, 50], [60, 40]], labels=[1, 0])  # after the click: forward from 5
    s.add_prompt(1, 1, points=[[40, 50], [70, 30]], labels=[1, 0])  # before it: backward from 1
    assert s.pending_corrections == [1, 5]
    assert s.correction_runs() == [(5, False, 3), (1, True, 2)]
    assert s.correction_runs("forward") == [(5, False, 3)] and s.correction_runs("backward") == [(1, True, 2)]
    with pytest.raises(InputError, match="direction"):
        s.correction_runs("sideways")
    fixed = {t: s.result(t).logits[0].copy() for t in (1, 5)}
    runs = s.correction_runs()
    for start, reverse, n in runs:
        assert [r.frame for r in s.propagate(start=start, reverse=reverse)] == (
            list(range(start, start - n, -1)) if reverse else list(range(start, start + n))
        )
    assert s.pending_corrections == []
    for t in (2, 3, 4):  # between the click and the corrections: untouched
        np.testing.assert_array_equal(s.result(t).logits[0], before[t])
    for t in (1, 5):  # the corrected frames keep the correction
        np.testing.assert_array_equal(s.result(t).logits[0], fixed[t])
    assert not np.array_equal(s.result(6).logits[0], before[6])  # beyond: re-steered
    s.add_prompt(6, 1, points=[[40, 50]], labels=[1])
    assert s.pending_corrections == [6]
    s.clear_prompts(6, 1)  # a withdrawn correction is nothing to carry
    assert s.pending_corrections == [] and s.correction_runs() == []
    s.close()


def test_objects_can_be_added_after_propagation_and_removed(session):
    _click(session)
    list(session.propagate())
    r = session.add_prompt(2, 7, box=[60, 20, 120, 80])
    assert r.obj_ids == [1, 7]
    assert (session.result(0).logits[1] == -1024).all()  # nothing for object 7 on frame 0 yet
    results = list(session.propagate())
    assert results[0].frame == 0 and results[0].obj_ids == [1, 7]
    # as the official: propagation starts at the first prompted frame of any object, and
    # object 7 is tracked there from the memory of its (later) prompted frame
    assert not (results[0].logits[1] == -1024).all()
    np.testing.assert_array_equal(results[2].logits[1], r.logits[1])  # its prompted frame is kept
    session.remove_object(1)
    assert session.obj_ids == [7]
    assert session.result(4).obj_ids == [7]
    session.reset()
    assert session.obj_ids == []


def test_clear_prompts_turns_the_frame_into_a_tracked_one(session):
    _click(session)
    _click(session, frame=4)
    list(session.propagate())
    session.clear_prompts(4, 1)
    track = session._tracks[1]
    assert 4 not in track.cond and 4 in track.non_cond and 4 not in track.points


def test_label_image_gives_each_pixel_the_strongest_object():
    logits = np.array([[[1.0, -1.0, 2.0]], [[0.5, 3.0, -1.0]]], dtype=np.float32)  # (O=2, H=1, W=3)
    r = FrameResult(frame=0, obj_ids=[4, 9], logits=logits)
    np.testing.assert_array_equal(r.label_image(), [[4, 9, 4]])
    none = FrameResult(frame=0, obj_ids=[4], logits=-np.ones((1, 2, 2), np.float32))
    assert not none.label_image().any()


def test_a_lazy_result_labels_as_its_full_resolution_logits():
    import torch

    rng = np.random.default_rng(0)
    low = [torch.from_numpy(rng.normal(size=(16, 16)).astype(np.float32)) for _ in range(3)]
    low[1] = torch.maximum(low[0], low[1])  # ties and near-ties with object 0 where it is strongest
    parts = dict(low_res=[low[0], low[1], None, low[2]], hw=(37, 50))
    labels = FrameResult(2, [5, 3, 8, 11], **parts).label_image()  # object by object, never (O, H, W)
    full = FrameResult(2, [5, 3, 8, 11], logits=FrameResult(2, [5, 3, 8, 11], **parts).logits)
    assert full.hw == (37, 50) and (full.logits[2] == -1024).all()  # no output for object 8 here
    np.testing.assert_array_equal(labels, full.label_image())  # argmax over the full-resolution logits
    assert set(np.unique(labels)) == {0, 3, 5, 11}


def test_mask_prompt_is_reproduced_on_its_frame(session):
    mask = np.zeros((120, 160), bool)
    mask[30:70, 40:100] = True
    r = session.add_prompt(0, 3, mask=mask)
    iou = (r.masks[0] & mask).sum() / (r.masks[0] | mask).sum()
    assert iou > 0.9


def test_fill_hole_area_fills_small_holes_only():
    import torch

    from napari_sam2.engine.holes import fill_holes

    logits = torch.full((1, 1, 12, 12), 5.0)
    logits[0, 0, 2:4, 2:4] = -3.0  # 4-pixel hole: filled
    logits[0, 0, 6:10, 6:10] = -3.0  # 16-pixel hole: kept
    out = fill_holes(logits, 8)
    assert (out[0, 0, 2:4, 2:4] > 0).all()
    assert (out[0, 0, 6:10, 6:10] < 0).all()
    assert torch.equal(fill_holes(logits, 0), logits)


def test_frames_are_read_lazily(model, clip):
    reads: list[int] = []

    class Counting:
        shape, dtype, ndim = (100, *clip.shape[1:]), clip.dtype, clip.ndim

        def __getitem__(self, t):
            reads.append(t)
            return clip[t % len(clip)]

    s = VideoSession(model, Counting())
    _click(s)
    list(s.propagate(max_frames=3))
    assert sorted(set(reads)) == [0, 1, 2, 3]


# ---------------------------------------------------------------- presence bias
def _scores(s: VideoSession, obj: int = 1) -> dict[int, float]:
    track = s._tracks[obj]
    return {t: float(out.object_score) for t, out in {**track.non_cond, **track.cond}.items()}


def test_presence_bias_shifts_the_object_score_of_tracked_frames_only(model, clip):
    def run(**kw) -> VideoSession:
        s = VideoSession(model, clip, **kw)
        _click(s)
        list(s.propagate())
        return s

    plain, keep, drop = run(), run(presence_bias=50.0), run(presence_bias=-50.0)
    base, kept, dropped = _scores(plain), _scores(keep), _scores(drop)
    assert plain.presence_bias == 0.0 and keep.presence_bias == 50.0
    assert base[0] == kept[0] == dropped[0]  # the clicked frame decodes without memory: no bias
    # frame 1 remembers only frame 0, the same in all three: its score is shifted exactly
    assert kept[1] == pytest.approx(base[1] + 50.0, abs=1e-3)
    assert dropped[1] == pytest.approx(base[1] - 50.0, abs=1e-3)
    assert all(kept[t] > 0 for t in range(1, 8)) and all(dropped[t] < 0 for t in range(1, 8))
    masks = lambda s: np.stack([s.result(t).masks[0] for t in range(8)])  # noqa: E731
    assert masks(plain)[1:].any()  # (so emptying them is the bias's doing)
    assert not masks(drop)[1:].any() and masks(drop)[0].any()  # only the click's mask stays
    np.testing.assert_array_equal(masks(drop)[0], masks(plain)[0])
    # the object pointer reads the shifted score too: an absent object's is the no-object pointer
    no_obj = model.no_obj_ptr.float().reshape(1, -1)
    torch.testing.assert_close(drop._tracks[1].non_cond[1].obj_ptr, no_obj)
    assert not torch.allclose(keep._tracks[1].non_cond[1].obj_ptr, no_obj)


def test_stack_kind_picks_the_models_calibration(model, clip):
    import copy
    import dataclasses

    calibrated = copy.deepcopy(model)
    calibrated.config = dataclasses.replace(model.config, presence_bias_t=-50.0, presence_bias_z=2.5)
    assert VideoSession(calibrated, clip, stack_kind="t").presence_bias == -50.0
    assert VideoSession(calibrated, clip, stack_kind="z").presence_bias == 2.5
    assert VideoSession(calibrated, clip).presence_bias == 0.0  # unknown kind: uncalibrated
    assert VideoSession(calibrated, clip, stack_kind="t", presence_bias=1.0).presence_bias == 1.0
    assert VideoSession(model, clip, stack_kind="t").presence_bias == 0.0  # official weights: none
    with pytest.raises(InputError, match="'t' \\(time-lapse\\), 'z'"):
        VideoSession(model, clip, stack_kind="c")
    s = VideoSession(calibrated, clip, stack_kind="t")
    _click(s)
    assert not np.stack([r.masks[0] for r in list(s.propagate())[1:]]).any()


# ---------------------------------------------------------------- many objects per frame
def test_objects_tracked_together_get_what_each_gets_alone(model, clip, monkeypatch):
    """Tracking the objects of a frame together (memory attention's frame part once for all)
    changes nothing but float rounding: the logits agree to 1e-4 and the masks are the same
    wherever a logit is not within 1e-3 of the threshold. Six objects, with two memory
    layouts: objects 5 and 6 are first prompted on frame 2, so their banks differ."""

    def track(batched: bool) -> list[FrameResult]:
        if not batched:
            def one_by_one(self, tracks, frame, reverse):
                return {
                    t.obj_id: self._track_frame(t, frame, is_init=False, points=None, mask=None, reverse=reverse,
                                                run_memory_encoder=True, prev_logits=None)
                    for t in tracks
                }  # fmt: skip

            monkeypatch.setattr(VideoSession, "_track_objects", one_by_one)
        with VideoSession(model, clip) as s:
            for obj, (x, y) in enumerate([(40, 50), (120, 40), (60, 90), (100, 100)], start=1):
                s.add_prompt(0, obj, points=[[x, y]], labels=[1])
            s.add_prompt(2, 5, box=[10, 10, 50, 40])
            s.add_prompt(2, 6, points=[[140, 20], [130, 30]], labels=[1, 0])
            results = list(s.propagate(start=0))
        monkeypatch.undo()
        return results

    together, alone = track(True), track(False)
    assert [r.frame for r in together] == [r.frame for r in alone] == list(range(8))
    for a, b in zip(together, alone):
        assert a.obj_ids == b.obj_ids == [1, 2, 3, 4, 5, 6]
        np.testing.assert_allclose(a.logits, b.logits, rtol=0, atol=1e-4)
        clear = np.abs(b.logits) > 1e-3
        np.testing.assert_array_equal((a.logits > 0)[clear], (b.logits > 0)[clear])
    assert any(len(np.unique(r.label_image())) >= 4 for r in together)  # several objects really are present
