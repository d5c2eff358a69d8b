"""Training our model: prompts, losses, the image and video steps, the training command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from factory import training_data
from factory.training_data import synthetic_clip, synthetic_image_batch
from napari_sam2.engine.preprocess import percentile_window
from napari_sam2.finetune import data as data_module
from napari_sam2.finetune import steps as steps_module
from napari_sam2.finetune.data import END_FRAMES, Clip, clip_from_stack
from napari_sam2.finetune.losses import segmentation_loss
from napari_sam2.finetune.prompts import sample_correction_click, first_prompt, sample_box, sample_click
from napari_sam2.finetune.steps import image_step, video_step
from napari_sam2.model.prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT, NEGATIVE, POSITIVE
from napari_sam2.model.sam2 import SAM2

from .parity import SMALL_CONFIG


def disk(shape=(64, 64), center=(30, 20), radius=8) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def test_clicks_land_inside_and_boxes_around_the_object():
    rng = np.random.default_rng(0)
    mask = disk()
    for _ in range(20):
        x, y = sample_click(mask, rng)
        assert mask[int(y), int(x)]
    box = sample_box(mask, rng, jitter=0.0)
    assert box.tolist() == [12, 22, 29, 39]  # x0, y0, x1, y1 of the disk
    pts, labels = first_prompt(mask, rng, p_box=1.0)
    assert labels.tolist() == [BOX_TOP_LEFT, BOX_BOTTOM_RIGHT] and pts.shape == (2, 2)


def test_correction_clicks_go_to_the_larger_error():
    rng = np.random.default_rng(1)
    gt = disk()
    missed = gt & (np.arange(64)[None, :] < 20)  # left half of the object not predicted
    (x, y), label = sample_correction_click(gt & ~missed, gt, rng)
    assert label == POSITIVE and missed[int(y), int(x)]
    spill = disk(center=(50, 50), radius=6)
    (x, y), label = sample_correction_click(gt | spill, gt, rng)
    assert label == NEGATIVE and spill[int(y), int(x)]


def test_loss_trains_the_best_candidate_and_knows_absent_objects():
    target = torch.zeros(2, 1, 32, 32)
    target[0, 0, 8:24, 8:24] = 1  # object 1 present, object 2 absent
    good = target[0].expand(3, -1, -1).clone() * 20 - 10
    good[1:] = -10  # only candidate 0 is right
    logits = torch.stack([good, torch.full((3, 32, 32), -10.0)])
    iou_pred = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    loss, parts, best_iou = segmentation_loss(logits, iou_pred, torch.tensor([[10.0], [-10.0]]), target)
    assert best_iou[0] == 1.0 and parts["mask"] < 0.01 and parts["iou"] < 1e-6 and parts["obj"] < 1e-3
    wrong_score = segmentation_loss(logits, iou_pred, torch.tensor([[10.0], [10.0]]), target)[1]["obj"]
    assert wrong_score > 1.0


@pytest.fixture(scope="module")
def small_model() -> SAM2:
    torch.manual_seed(0)
    model = SAM2(SMALL_CONFIG)
    with torch.no_grad():  # objects judged present: absent ones get the fixed no-object pointer
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += 30.0
    model.train()
    return model


def _grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_image_step_trains_encoder_and_decoder_but_not_the_memory(small_model: SAM2):
    small_model.zero_grad(set_to_none=True)
    batch = synthetic_image_batch(3, 256, images=2, objects_per_image=3)
    loss, log = image_step(small_model, batch, np.random.default_rng(0), corrections=1)
    loss.backward()
    assert torch.isfinite(loss) and log["objects"] == len(batch.masks)
    assert _grad_norm(small_model.image_encoder) > 0 and _grad_norm(small_model.sam_mask_decoder) > 0
    assert _grad_norm(small_model.memory_attention) == 0


def test_video_step_trains_memory_attention_and_encoder(small_model: SAM2):
    small_model.zero_grad(set_to_none=True)
    clip = synthetic_clip(4, 256, length=3, max_objects=2)
    assert clip.frames.shape == (3, 3, 256, 256) and clip.masks.shape[:2][0] == 3
    loss, log = video_step(small_model, clip, np.random.default_rng(0), p_mask_prompt=0.0)
    loss.backward()
    assert torch.isfinite(loss) and 0 <= log["iou_track"] <= 1
    for module in (small_model.memory_attention, small_model.memory_encoder, small_model.obj_ptr_proj):
        assert _grad_norm(module) > 0


def test_clips_only_track_objects_present_on_their_first_frame():
    labels = np.zeros((6, 64, 64), dtype=np.uint16)
    labels[:, 10:30, 10:30] = 1
    labels[3:, 40:60, 40:60] = 2  # object 2 appears on frame 3
    image = (labels * 500 + 100).astype(np.uint16)
    for seed in range(5):
        clip = clip_from_stack(image, labels, 64, 3, 3, np.random.default_rng(seed))
        assert clip is not None
        assert clip.masks[0].any(axis=(1, 2)).all()  # every tracked object is on frame 0


def _gone_at_end(track: np.ndarray) -> int:
    """How many last frames an object's (T, S, S) masks are empty on."""
    present = track.any(axis=(1, 2))
    return int(np.argmax(present[::-1])) if present.any() else len(present)


def test_ending_clips_track_first_an_object_that_is_gone_on_the_last_frames():
    labels = np.zeros((10, 64, 64), dtype=np.uint16)
    labels[:, 10:30, 10:30] = 1  # on every frame
    labels[2:6, 40:60, 40:60] = 2  # on frames 2-5 only
    image = (labels * 500 + 100).astype(np.uint16)
    for seed in range(6):
        clip = clip_from_stack(image, labels, 64, 4, 2, np.random.default_rng(seed), p_end=1.0)
        assert clip is not None and clip.masks.shape[1] == 2
        assert 1 <= _gone_at_end(clip.masks[:, 0]) <= 3  # object 2 ends: present on frame 0, gone at the end
        assert clip.masks[:, 1].any(axis=(1, 2)).all()  # the other object, on every frame
    labels[:, 40:60, 40:60] = 2  # no object ends any more
    assert clip_from_stack(image, labels, 64, 4, 2, np.random.default_rng(0), p_end=1.0) is None


def test_every_synthetic_ending_clip_has_an_object_that_ends():
    for seed in range(8):
        clip = synthetic_clip(seed, 96, length=8, max_objects=3, p_end=1.0)
        assert clip.masks[0].any(axis=(1, 2)).all()  # every tracked object is on frame 0
        assert 1 <= _gone_at_end(clip.masks[:, 0]) <= END_FRAMES


def _gone_between(track: np.ndarray) -> bool:
    """An object's (T, S, S) masks: there on the first and last frame, empty on one between."""
    present = track.any(axis=(1, 2))
    return bool(present[0] and present[-1] and not present[1:-1].all())


def test_gap_clips_track_first_an_object_that_is_gone_in_between_and_back():
    labels = np.zeros((10, 64, 64), dtype=np.uint16)
    labels[:, 10:30, 10:30] = 1  # on every frame
    labels[:, 40:60, 40:60] = 2
    labels[4:6, 40:60, 40:60] = 0  # object 2 hidden on frames 4-5
    image = (labels * 500 + 100).astype(np.uint16)
    for seed in range(6):
        clip = clip_from_stack(image, labels, 64, 5, 2, np.random.default_rng(seed), p_gap=1.0)
        assert clip is not None and clip.masks.shape[1] == 2
        assert _gone_between(clip.masks[:, 0])
        assert clip.masks[:, 1].any(axis=(1, 2)).all()
    labels[4:6, 40:60, 40:60] = 2  # nothing comes back any more
    assert clip_from_stack(image, labels, 64, 5, 2, np.random.default_rng(0), p_gap=1.0) is None


def test_every_synthetic_gap_clip_has_an_object_that_comes_back():
    for seed in range(4):
        clip = synthetic_clip(seed, 96, length=8, max_objects=3, p_gap=1.0)
        assert clip.masks[0].any(axis=(1, 2)).all()
        assert _gone_between(clip.masks[:, 0])


def test_division_clips_track_the_mother_who_keeps_her_place():
    labels = np.zeros((10, 64, 64), dtype=np.uint16)
    labels[:, 8:40, 8:40] = 1  # the mother, 32 x 32
    labels[:, 50:60, 50:60] = 2
    labels[6:, 8:40, 30:40] = 3  # frame 6: she divides; the daughter (3, 32 x 10) buds off at her side
    image = (labels * 500 + 100).astype(np.uint16)
    for seed in range(6):
        clip = clip_from_stack(image, labels, 64, 5, 2, np.random.default_rng(seed), p_division=1.0)
        assert clip is not None
        area = clip.masks[:, 0].sum(axis=(1, 2))
        assert area[0] == 32 * 32 and area[-1] == 32 * 22  # the mother before and after, not the bud
    labels[6:, 8:40, 30:40] = 1  # no division any more
    assert clip_from_stack(image, labels, 64, 5, 2, np.random.default_rng(0), p_division=1.0) is None
    clip = synthetic_clip(3, 96, length=8, max_objects=3, p_division=1.0)
    area = clip.masks[:, 0].sum(axis=(1, 2))
    assert area[0] > 0 and (area[1:] < 0.75 * area[:-1]).any()


def _clip_before_ending_clips(image, labels, size, length, max_objects, rng):
    """``clip_from_stack`` as it was before ending clips (verbatim), the reference below."""
    n = image.shape[0]
    if n < length:
        return None
    for _ in range(8):
        start = int(rng.integers(0, n - length + 1))
        idx = np.arange(start, start + length)
        if rng.uniform() < 0.5:
            idx = idx[::-1]
        lab = data_module._resize_labels(labels[idx], size)
        ids, areas = np.unique(lab[0], return_counts=True)
        picked = data_module._pick(ids, areas, max_objects, rng)
        if picked.size:
            break
    else:
        return None
    frames = image[idx]
    frames, lab = data_module._flip_turn([frames, lab], rng)
    window = percentile_window(frames[:: max(1, length // 4)].reshape(-1, frames.shape[-1]))
    tensor = data_module._to_model(frames, size, rng, window)
    masks = np.stack([lab == i for i in picked], axis=1)
    return Clip(tensor, masks)


def test_default_clips_are_the_clips_of_before():
    """The shipped model's run record still describes the code: same data, same rng stream."""
    from napari_sam2.synthetic import nuclei_zstack

    stack = nuclei_zstack(12, (64, 64), seed=3)
    for seed in range(4):
        clips, states = [], []
        for make in (
            lambda rng: clip_from_stack(stack.image, stack.labels, 64, 4, 3, rng),
            lambda rng: clip_from_stack(stack.image, stack.labels, 64, 4, 3, rng, p_end=0.0),
            lambda rng: _clip_before_ending_clips(stack.image, stack.labels, 64, 4, 3, rng),
        ):
            rng = np.random.default_rng(seed)
            clips.append(make(rng))
            states.append(rng.bit_generator.state)
        assert states[0] == states[1] == states[2]
        for clip in clips[1:]:
            assert torch.equal(clip.frames, clips[0].frames) and np.array_equal(clip.masks, clips[0].masks)
    a, b = synthetic_clip(5, 64, 4, 3), synthetic_clip(5, 64, 4, 3, p_end=0.0, p_gap=0.0)
    assert torch.equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
    for seed in range(3):  # gap and division clips leave the phase-2 mix (ending clips) as it was
        c, d = synthetic_clip(seed, 64, 4, 3, p_end=1.0), synthetic_clip(seed, 64, 4, 3, p_end=1.0, p_gap=0.0)
        assert torch.equal(c.frames, d.frames) and np.array_equal(c.masks, d.masks)
        e = synthetic_clip(seed, 64, 4, 3, p_end=0.4, p_gap=0.1)
        f = synthetic_clip(seed, 64, 4, 3, p_end=0.4, p_gap=0.1, p_division=0.0)
        assert torch.equal(e.frames, f.frames) and np.array_equal(e.masks, f.masks)


def test_worst_frame_correction_lands_where_tracking_fails(small_model: SAM2, monkeypatch: pytest.MonkeyPatch):
    # one object filling the frame, gone on frame 2: the fixture's model predicts it present
    # everywhere (object score) with some pixels on, so its IoU is > 0 on every frame but 0 on frame 2
    t_len, absent = 4, 2
    masks = np.ones((t_len, 1, 256, 256), dtype=bool)
    masks[absent] = False
    clip = Clip(torch.randn(t_len, 3, 256, 256, generator=torch.Generator().manual_seed(0)), masks)
    corrected = []

    def spy(pred, gt, rng):
        corrected.append(next(t for t in range(t_len) if np.shares_memory(gt, clip.masks[t])))
        return sample_correction_click(pred, gt, rng)

    monkeypatch.setattr(steps_module, "sample_correction_click", spy)
    with torch.no_grad():
        for seed in range(3):
            video_step(small_model, clip, np.random.default_rng(seed), p_mask_prompt=0.0, p_correction=1.0,
                       correction_at="worst")  # fmt: skip
        assert corrected == [absent] * 3
        corrected.clear()
        for seed in range(6):  # the same clips corrected on random frames
            video_step(small_model, clip, np.random.default_rng(seed), p_mask_prompt=0.0, p_correction=1.0)
        assert len(corrected) == 6 and set(corrected) != {absent}
    with pytest.raises(ValueError, match="correction_at"):
        video_step(small_model, clip, np.random.default_rng(0), correction_at="first")


def test_training_command_records_the_ending_and_correction_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from factory import train as cmd
    from factory.check_lineage import train_settings

    monkeypatch.setattr(cmd, "CELLS_CONFIG", SMALL_CONFIG)
    out = tmp_path / "run"
    run = ["--out", str(out), "--steps", "1", "--warmup", "1", "--threads", "1"]
    run += ["--video-fraction", "1", "--video-start", "0"]  # one clip step
    new = ["--end-fraction", "0.5", "--correction-at", "worst", "--correction-fraction", "1", "--clip-length", "3"]
    argv = run + new + ["--gap-fraction", "0.25", "--timelapse-fraction", "0.3"]
    assert cmd.main(argv) == 0
    settings = json.loads((out / "settings.json").read_text())
    # what a run records loads back as what its command asks for (factory.check_lineage relies on it)
    assert train_settings(settings) == cmd.settings_from(cmd.build_parser().parse_args(argv))
    assert (settings["end_fraction"], settings["correction_at"], settings["correction_fraction"]) == (0.5, "worst", 1.0)
    assert (settings["clip_length"], settings["gap_fraction"], settings["timelapse_fraction"]) == (3, 0.25, 0.3)
    assert "video/loss" in json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    with pytest.raises(SystemExit):
        cmd.main(["--out", str(tmp_path / "bad"), "--correction-at", "first"])


def test_training_command_writes_a_loadable_model_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from napari_sam2.model import config as config_module
    from factory import train as cmd
    from napari_sam2.weights import load_model

    monkeypatch.setattr(cmd, "CELLS_CONFIG", SMALL_CONFIG)  # the command with a tiny model
    assert config_module.CELLS_CONFIG.name == "napari-sam2-cells"
    out = tmp_path / "run"
    assert cmd.main(["--out", str(out), "--steps", "2", "--warmup", "1", "--threads", "1"]) == 0
    model = load_model(out / "model.pt")
    assert model.config == SMALL_CONFIG
    assert next(iter(torch.load(out / "model.pt", weights_only=True)["model"].values())).dtype == torch.float16
    assert cmd.main(["--out", str(out), "--steps", "3", "--warmup", "1", "--threads", "1"]) == 0
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [2, 3]  # resumed at step 2, not restarted


def test_timelapse_fraction_chooses_the_kind_of_stack_clips_are_cut_from(monkeypatch: pytest.MonkeyPatch):
    made: list[str] = []
    for name in ("cell_timelapse", "nuclei_zstack"):
        real = getattr(training_data, name)
        monkeypatch.setattr(training_data, name, lambda *a, _real=real, _name=name, **k: made.append(_name) or _real(*a, **k))
    for p, kinds in ((0.0, {"nuclei_zstack"}), (1.0, {"cell_timelapse"})):
        made.clear()
        for seed in range(4):
            synthetic_clip(seed, 64, 4, 2, p_timelapse=p)
        assert set(made) == kinds
    made.clear()
    for seed in range(12):
        synthetic_clip(seed, 64, 4, 2)  # the default mix has both
    assert set(made) == {"cell_timelapse", "nuclei_zstack"}


def test_timelapse_frames_cuts_clips_from_longer_timelapses(monkeypatch: pytest.MonkeyPatch):
    """``timelapse_frames`` draws the time-lapses of plain and ending clips that long and cuts
    the clip from anywhere in them (late frames too); None draws them as before."""
    made: list = []
    real = training_data.cell_timelapse
    monkeypatch.setattr(training_data, "cell_timelapse", lambda *a, **k: made.append(real(*a, **k)) or made[-1])

    def window_of(clip: Clip, labels: np.ndarray) -> int:
        """The first stack frame the clip's masks came from (any flip, turn or direction)."""
        n = len(clip.masks)
        for start in range(len(labels) - n + 1):
            for idx in (np.arange(start, start + n), np.arange(start, start + n)[::-1]):
                lab = labels[idx]
                for k in range(4):
                    for flip in (False, True):
                        t = np.rot90(lab, k, axes=(-2, -1))
                        t = t[..., ::-1] if flip else t
                        ids = [np.unique(t[0][m]) for m in clip.masks[0]]
                        if all(i.size == 1 and np.array_equal(t == i[0], mk) for i, mk in zip(ids, clip.masks.transpose(1, 0, 2, 3))):
                            return int(idx.min())
        raise AssertionError("clip not found in its stack")

    starts = []
    for seed in range(6):
        made.clear()
        clip = synthetic_clip(seed, 64, 4, 2, p_timelapse=1.0, timelapse_frames=20)
        assert {len(s.labels) for s in made} == {20}
        starts.append(window_of(clip, made[-1].labels))
    assert max(starts) > 0  # not always the first frames
    made.clear()
    synthetic_clip(0, 64, 4, 2, p_timelapse=1.0, p_end=1.0, timelapse_frames=20)
    assert {len(s.labels) for s in made} == {20}  # ending clips too (4 + 8 < 20)
    for seed in range(3):
        made.clear()
        a = synthetic_clip(seed, 64, 4, 2, p_timelapse=1.0)
        assert {len(s.labels) for s in made} == {4}
        b = synthetic_clip(seed, 64, 4, 2, p_timelapse=1.0, timelapse_frames=None)
        assert torch.equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)



def test_fast_fraction_draws_timelapses_with_fast_cells(monkeypatch: pytest.MonkeyPatch):
    """``p_fast`` draws that share of the time-lapses (of plain, gap and division clips
    alike) with a speed in FAST_SPEED, and their cells do move further per frame; 0 leaves
    the speed to the generator and the clips as they were."""
    speeds: list = []
    real = training_data.cell_timelapse

    def spy(*a, **k):
        speeds.append(k.get("speed"))
        return real(*a, **k)

    monkeypatch.setattr(training_data, "cell_timelapse", spy)
    lo, hi = training_data.FAST_SPEED
    for p_gap in (0.0, 1.0):
        speeds.clear()
        synthetic_clip(1, 64, 8, 2, p_timelapse=1.0, p_gap=p_gap, p_fast=1.0)
        assert speeds and all(s is not None and lo <= s <= hi for s in speeds)
    speeds.clear()
    for seed in range(8):
        synthetic_clip(seed, 64, 4, 2, p_timelapse=1.0, p_fast=0.0)
    assert set(speeds) == {None}
    # 0 draws nothing from the stream (the clips of earlier runs stay), while any p_fast > 0
    # draws its coin: a tiny one almost never makes a clip fast, yet shifts the stream
    shifted = [
        not np.array_equal(synthetic_clip(seed, 64, 4, 2, p_timelapse=1.0).masks,
                           synthetic_clip(seed, 64, 4, 2, p_timelapse=1.0, p_fast=1e-9).masks)
        for seed in range(4)
    ]  # fmt: skip
    assert any(shifted)
    drawn = []
    for seed in range(40):
        speeds.clear()
        synthetic_clip(seed, 64, 4, 2, p_timelapse=1.0, p_fast=0.5)
        drawn.append(speeds[-1] is not None)
    assert 8 <= sum(drawn) <= 32  # about half

    def mean_step(p_fast: float) -> float:
        from napari_sam2.evaluate import object_speed

        steps = []
        for seed in range(6):
            clip = synthetic_clip(seed, 128, 8, 3, p_timelapse=1.0, p_fast=p_fast)
            steps += [v for m in clip.masks.transpose(1, 0, 2, 3) if (v := object_speed(m)) is not None]
        return float(np.mean(steps))

    assert mean_step(1.0) > 1.2 * mean_step(0.0)


def test_presence_calibration_avoids_a_bias_next_to_a_cliff():
    from factory import calibrate_presence as cal

    # the best mean sits one step from a collapse: its neighbourhood's worst case rules it out
    scores = {0.0: 0.74, -0.5: 0.75, -1.0: 0.77, -1.5: 0.78, -2.0: 0.80, -2.5: 0.65}
    assert cal.robust(scores)[-2.0] == 0.65 and cal.robust(scores)[-1.5] == 0.77
    assert cal.choose(scores, 0.005) == -1.5
    # on a plateau the smallest change within the tolerance wins
    assert cal.choose({0.0: 0.70, 0.5: 0.76, 1.0: 0.762, 1.5: 0.763, 2.0: 0.763}, 0.005) == 1.0
    assert cal.choose({0.0: 0.80, 1.0: 0.70}, 0.005) == 0.0  # no gain: no bias
