"""Segment everything through a stack (engine.everything): found objects become the session's
objects, are tracked through the stack, new ones are added where they appear, cancel keeps a
consistent editor. On small synthetic stacks with the shipped napari-sam2-cells at 1 thread."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2 import load_model
from napari_sam2.engine.automatic import AutomaticMaskGenerator, MaskRecord
from napari_sam2.engine.editor import Editor
from napari_sam2.engine.everything import (
    EverythingResult,
    add_found,
    everything_steps,
    find_objects,
    otsu_foreground,
)
from napari_sam2.engine.session import VideoSession
from napari_sam2.errors import InputError
from napari_sam2.prompt import Prompt, PromptSet
from napari_sam2.synthetic import fluorescence_timelapse, nuclei_stack

N, HW = 9, (96, 96)


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    try:
        yield load_model("napari-sam2-cells")
    finally:
        torch.set_num_threads(2)  # conftest's


@pytest.fixture(scope="module")
def stack():
    return nuclei_stack(n_slices=N, shape=HW, n_nuclei=5, seed=1)


def _record(mask: np.ndarray) -> MaskRecord:
    ys, xs = np.nonzero(mask)
    return MaskRecord(mask=mask, area=int(mask.sum()), bbox=(int(xs.min()), int(ys.min()), int(np.ptp(xs)), int(np.ptp(ys))),
                      predicted_iou=1.0, stability_score=1.0, point_coords=np.array([[xs.mean(), ys.mean()]]),
                      crop_box=(0, 0, mask.shape[1], mask.shape[0]))  # fmt: skip


class TruthGenerator:
    """A perfect automatic step: the ground-truth masks of whichever frame it is given."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels, self.calls = images, labels, []

    def generate(self, image: np.ndarray) -> list[MaskRecord]:
        (t,) = [t for t in range(len(self.images)) if np.array_equal(self.images[t], image)]
        self.calls.append(t)
        return [_record(self.labels[t] == k) for k in np.unique(self.labels[t])[1:]]


def _run(steps) -> tuple[list, EverythingResult]:
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as stop:
            return seen, stop.value


def _stack_of(progress: list, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.uint32)
    for p in progress:  # a back-filled frame comes again: the later one wins
        out[p.payload.frame] = p.payload.labels
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _best_label(pred: np.ndarray, truth: np.ndarray) -> tuple[int, float]:
    """The predicted label that best matches the ``truth`` mask, and its IoU."""
    ids = [i for i in np.unique(pred[truth]) if i]
    scored = [(i, _iou(pred == i, truth)) for i in ids]
    return max(scored, key=lambda s: s[1], default=(0, 0.0))


def test_objects_found_on_the_middle_frame_are_tracked_to_the_other_frames(model, stack) -> None:
    generator = AutomaticMaskGenerator(model, points_per_side=12)
    with VideoSession(model, stack.image, stack_kind="z") as session:
        editor = Editor(session)
        progress, result = _run(everything_steps(editor, generator, every=N))
        labels = _stack_of(progress, stack.image.shape)
    mid = N // 2
    assert result.frame == mid and result.added[mid] == result.objects[: len(result.added[mid])]
    assert sorted({p.payload.frame for p in progress}) == list(range(N))
    assert progress[-1].done == progress[-1].total == N
    # the found objects are the session's objects, each with one mask prompt on the frame it was found on
    assert editor.prompts.obj_ids == sorted(session.obj_ids) == result.objects
    assert len(editor.prompts) == len(result.objects) and result.added[mid]
    assert all(p.mask is not None and p.obj_id in result.added[p.frame] for p in editor.prompts.values())
    # most nuclei on the middle frame were found (the small model's grid misses some), and each
    # found one keeps its id on the neighbouring slices
    truth = stack.labels
    nuclei = np.unique(truth[mid])[1:]
    found = [(k, *_best_label(labels[mid], truth[mid] == k)) for k in nuclei]
    found = [(k, obj) for k, obj, iou in found if iou > 0.6]
    assert len(found) * 2 >= len(nuclei), found
    matched = 0
    for k, obj in found:
        for t in (mid - 1, mid + 1):
            if (truth[t] == k).sum() > 50:
                assert _best_label(labels[t], truth[t] == k)[0] == obj, (k, t)
                matched += 1
    assert matched >= 2


def test_an_object_that_appears_later_is_added_as_a_new_object(model) -> None:
    cells = fluorescence_timelapse(n_frames=N, shape=(96, 112), n_cells=4, seed=1)
    images, truth = cells.image.copy(), cells.labels.copy()
    # one cell enters only at frame 6: before it, its pixels are background
    late = max(np.unique(truth[6:])[1:], key=lambda k: min((truth[t] == k).sum() for t in (6, 7, 8)))
    assert min((truth[t] == late).sum() for t in (6, 7, 8)) > 150
    background = np.median(images[0][truth[0] == 0])
    for t in range(6):
        images[t][truth[t] == late] = background
        truth[t][truth[t] == late] = 0
    generator = TruthGenerator(images, truth)
    with VideoSession(model, images, stack_kind="t") as session:
        editor = Editor(session)
        progress, result = _run(everything_steps(editor, generator, frame=2, every=3, direction="forward"))
        labels = _stack_of(progress, images.shape)
    # checks on 5 and 8: the cell is new at 8 (not there on 5), tracked back to 6 by the back-fill
    assert result.checked == [5, 8]
    assert 8 in result.new_objects
    new = [obj for obj in result.new_objects[8] if _iou(labels[8] == obj, truth[8] == late) > 0.5]
    assert len(new) == 1 and new[0] not in result.added[2]
    for t in (6, 7):
        assert _iou(labels[t] == new[0], truth[t] == late) > 0.5, t
    assert not (labels[2:6] == new[0]).any()
    # found on frame 8 with a mask prompt, like the first frame's objects
    assert editor.prompts[(8, new[0])].mask is not None
    # frames 2-8 once, and per check that added objects a back-fill of the 2 frames since the
    # previous check and the check's frame again
    assert result.frame_visits == 7 + 3 * len(result.new_objects)


def test_cancel_leaves_a_consistent_editor_that_takes_a_click_and_propagates(model, stack) -> None:
    generator = TruthGenerator(stack.image, stack.labels)
    with VideoSession(model, stack.image, stack_kind="z") as session:
        editor = Editor(session)
        steps = everything_steps(editor, generator, every=2)
        for _ in range(3):  # the middle frame and two tracked ones
            next(steps)
        steps.close()
        assert editor.prompts.obj_ids == sorted(session.obj_ids) and session.obj_ids
        mid = N // 2
        tracked = session.label_image(mid + 1)
        obj = max(editor.prompts.obj_ids, key=lambda o: (tracked == o).sum())
        ys, xs = np.nonzero(tracked == obj)
        # a click on a tracked frame is a correction there; propagating carries it on from there
        click = Prompt(mid + 1, obj, points_xy=np.array([[xs.mean(), ys.mean()]]), labels=np.array([1]), box=None)
        assert editor.apply(PromptSet({**editor.prompts, click.key: click})) == [mid + 1]
        frames = [r.frame for r in editor.propagate(editor.plan("both"))]
        assert frames[0] == mid + 1 and frames[-1] == N - 1
        assert session.label_image(mid + 1)[int(ys.mean()), int(xs.mean())] == obj


def test_a_constant_stack_gives_zero_objects_and_says_so(model) -> None:
    frames = np.full((4, 64, 64), 700, dtype=np.uint16)
    generator = AutomaticMaskGenerator(model, points_per_side=4)
    with VideoSession(model, frames) as session:
        editor = Editor(session)
        progress, result = _run(everything_steps(editor, generator, every=2))
    assert result.objects == [] and session.obj_ids == []
    assert result.summary().startswith("no objects found")
    assert [p.payload.frame for p in progress] == [2, 3, 1, 0]
    assert all(not p.payload.labels.any() for p in progress)


def test_add_found_resolves_overlaps_drops_specks_and_takes_fresh_ids(model) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (2, 32, 32), dtype=np.uint8)
    big = np.zeros((32, 32), dtype=bool)
    big[4:20, 4:20] = True
    small = np.zeros((32, 32), dtype=bool)
    small[8:12, 8:12] = True  # on top of big: big keeps the ring around it
    speck = np.zeros((32, 32), dtype=bool)
    speck[30, 30] = True
    with VideoSession(model, frames) as session:
        editor = Editor(session)
        editor.apply(PromptSet.of([Prompt(1, 7, points_xy=np.array([[25.0, 25.0]]), labels=np.array([1]), box=None)]))
        ids = add_found(editor, 0, [_record(big), _record(small), _record(speck)], min_area=4)
        assert ids == [8, 9]  # above the 7 in use; the speck is dropped
        assert (editor.prompts[(0, 8)].mask == (big & ~small)).all()
        assert (editor.prompts[(0, 9)].mask == small).all()
        assert sorted(session.obj_ids) == [7, 8, 9]
        assert add_found(editor, 0, []) == []
        with pytest.raises(InputError, match="first_id 3 is in use"):
            add_found(editor, 0, [_record(big)], first_id=3)
        with pytest.raises(InputError, match="min_area"):
            add_found(editor, 0, [_record(big)], min_area=0)


def test_find_objects_is_the_generators_generate() -> None:
    images = np.zeros((1, 8, 8), dtype=np.uint8)
    labels = np.zeros((1, 8, 8), dtype=np.uint16)
    labels[0, 2:5, 2:5] = 1
    records = find_objects(TruthGenerator(images, labels), images[0])
    assert len(records) == 1 and (records[0].mask == (labels[0] == 1)).all()


def test_bad_settings_are_one_line_errors(model) -> None:
    frames = np.zeros((3, 32, 32), dtype=np.uint8)
    with VideoSession(model, frames) as session:
        editor = Editor(session)
        for kwargs, match in [({"every": 0}, "every must be"), ({"frame": 3}, "frames 0..2"),
                              ({"direction": "up"}, "direction must be"), ({"max_overlap": 2.0}, "max_overlap")]:  # fmt: skip
            with pytest.raises(InputError, match=match):
                next(everything_steps(editor, TruthGenerator(frames, frames), **kwargs))
    with pytest.raises(InputError, match="points_per_side must be >= 1"):
        AutomaticMaskGenerator(model, points_per_side=0)


def test_otsu_foreground_finds_bright_and_dark_objects() -> None:
    image = np.full((40, 40), 100.0)
    image[10:20, 10:20] = 900.0
    assert (otsu_foreground(image) == (image > 500)).all()
    assert (otsu_foreground(1000 - image) == (image > 500)).all()  # dark objects on a bright field
    assert not otsu_foreground(np.full((8, 8), 3)).any()



def test_first_id_keeps_new_objects_above_ids_used_elsewhere(model, stack) -> None:
    """The plugin passes the first id free in its result layer: no found object may take a
    committed label's id."""
    generator = AutomaticMaskGenerator(model, points_per_side=8)
    with VideoSession(model, stack.image[:3], stack_kind="z") as session:
        editor = Editor(session)
        _, result = _run(everything_steps(editor, generator, every=3, first_id=40))
    assert result.objects and min(result.objects) == 40
    assert sorted(session.obj_ids) == result.objects == list(range(40, 40 + len(result.objects)))
