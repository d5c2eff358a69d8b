"""One training step of each SAM 2 stage on our model.

* :func:`image_step` -- several objects per image decoded from one embedding; a first
  prompt (click, clicks or box), then correction clicks sampled from the error region
  with the previous logits as mask prompt; multimask loss on the best candidate.
* :func:`video_step` -- a clip: the objects are prompted on frame 0 (clicks, a box or
  their mask) and tracked through the clip with the memory, as the engine tracks them
  (same memory selection, :mod:`napari_sam2.engine.tracking`); sometimes a correction
  click on a later frame makes it a conditioning frame. Loss on every frame, including
  whether the object is present.

Where the correction goes. On a random frame (the shipped model's training) it rarely
meets the failure people correct: an object that has ended (a nucleus out of focus in z,
a cell gone from the field) still followed on a neighbour. ``correction_at="worst"``
corrects as the evaluation and a user do: on the frame a first tracking pass gets most
wrong -- there, mostly, a negative click on such a false positive -- and then tracks the
clip again with that frame in every frame's memory, as the plugin propagates again after
a correction. A conditioning frame showing the object gone must then drop it where it is
gone without losing it where it is present, which a model that never saw one gets wrong.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.tracking import gather_memory
from ..model.prompt_encoder import NEGATIVE, POSITIVE
from ..model.sam2 import SAM2, ImageFeatures, TrackOutput
from .data import Clip, ImageBatch
from ..evaluate.metrics import mask_iou
from .losses import segmentation_loss
from .prompts import sample_correction_click, first_prompt, pad_clicks

__all__ = ["image_step", "video_step"]

_LOGIT_CLAMP = 32.0


def _upsample(logits: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)


def _loss_size(model: SAM2) -> int:
    """Losses are computed on logits upsampled 2x from the decoder's (half the input size)."""
    return 2 * model.config.low_res_mask_size


def _target(masks: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """Boolean masks (..., S, S) -> float targets (..., size, size) by area averaging."""
    t = torch.from_numpy(np.ascontiguousarray(masks)).float()
    lead = t.shape[:-2]
    t = F.adaptive_avg_pool2d(t.reshape(-1, 1, *t.shape[-2:]), size).reshape(*lead, size, size)
    return t.to(device)


def _candidates(decoded, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and IoU predictions a decoding is trained on: 3 candidates or the single mask."""
    if multimask:
        return decoded.masks[:, 1:], decoded.iou[:, 1:]
    return decoded.masks[:, :1], decoded.iou[:, :1]


def _tensor_clicks(clicks, device) -> tuple[torch.Tensor, torch.Tensor]:
    pts, labels = pad_clicks(clicks)
    return torch.from_numpy(pts).to(device), torch.from_numpy(labels).to(device)


def image_step(
    model: SAM2,
    batch: ImageBatch,
    rng: np.random.Generator,
    *,
    corrections: int = 2,
    features: ImageFeatures | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one image batch: first prompt plus ``corrections`` correction rounds.

    ``features`` are the batch's encoder outputs when the encoder is frozen and they were
    computed once (fine-tuning on cached features); by default the images are encoded.
    """
    size = model.config.image_size
    device = model.device
    feats = model.encode_image(batch.images.to(device)) if features is None else features
    owner = torch.from_numpy(batch.owner).to(device)
    embed = model.image_embedding(feats)[owner]
    high = tuple(h[owner] for h in feats.high_res)
    loss_size = _loss_size(model)
    target = _target(batch.masks[:, None], loss_size, device)
    clicks = [first_prompt(m, rng) for m in batch.masks]
    mask_input = None
    total = torch.zeros((), device=device)
    log: dict[str, float] = {}
    for rnd in range(corrections + 1):
        coords, labels = _tensor_clicks(clicks, device)
        decoded = model.decode(embed, high, coords, labels, mask_input)
        # SAM's rule: three candidates for a lone click, the single mask otherwise
        multi = np.array([len(lab) == 1 and lab[0] == POSITIVE for _, lab in clicks])
        chosen = torch.empty_like(decoded.masks[:, :1])
        for flag in (True, False):
            rows = np.nonzero(multi == flag)[0]
            if rows.size == 0:
                continue
            r = torch.from_numpy(rows).to(device)
            sub = type(decoded)(decoded.masks[r], decoded.iou[r], decoded.tokens[r], decoded.object_score[r])
            logits, iou = _candidates(sub, flag)
            loss, parts, _ = segmentation_loss(_upsample(logits, loss_size), iou, sub.object_score, target[r])
            total = total + loss * (rows.size / len(clicks)) / (corrections + 1)
            for k, v in parts.items():
                log[k] = log.get(k, 0.0) + v * rows.size / len(clicks) / (corrections + 1)
            best = iou.argmax(dim=1)
            chosen[r] = logits[torch.arange(rows.size, device=device), best][:, None]
        if rnd == 0:
            with torch.no_grad():
                pred = _upsample(chosen, loss_size) > 0
                tgt = target > 0.5
                inter = (pred & tgt).flatten(1).sum(1).float()
                union = (pred | tgt).flatten(1).sum(1).clamp(min=1).float()
                log["iou_first"] = float((inter / union).mean())
        if rnd == corrections:
            break
        pred_np = (_upsample(chosen.detach(), size) > 0)[:, 0].cpu().numpy()
        new_clicks = []
        for (pts, lab), p, g in zip(clicks, pred_np, batch.masks):
            (x, y), label = sample_correction_click(p, g, rng)
            new_clicks.append((np.concatenate([pts, [[x, y]]]).astype(np.float32), np.append(lab, label)))
        clicks = new_clicks
        mask_input = chosen.detach().clamp(-_LOGIT_CLAMP, _LOGIT_CLAMP)
    log["objects"] = float(len(clicks))
    return total, log


class _Bank:
    """The memories of a batch of objects tracked together through a clip."""

    def __init__(self) -> None:
        self.cond: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # frame -> (memory, obj_ptr)
        self.non_cond: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def get(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cond[t] if t in self.cond else self.non_cond[t]


def _condition(model: SAM2, bank: _Bank, frame: int, feats: ImageFeatures, n: int, num_frames: int) -> torch.Tensor:
    """Memory-conditioned features (N, C, E, E) of ``frame``, memories chosen as the engine does."""
    memory, memory_pos, n_ptr = gather_memory(
        model, bank, frame, num_frames=num_frames, reverse=False,
        memory_of=lambda t_pos, t: bank.get(t)[0], pointer_of=lambda t: bank.get(t)[1],
        grid_hw=tuple(feats.embed.shape[-2:]), batch=n, device=feats.embed.device,
    )  # fmt: skip
    return model.attend_memory(feats.expand(n), memory, memory_pos, n_ptr)


def video_step(
    model: SAM2, clip: Clip, rng: np.random.Generator, *, p_mask_prompt: float = 0.15, p_correction: float = 0.4,
    correction_at: str = "random",
    virtual_length: int = 32,
    features: ImageFeatures | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one clip tracked from prompts on its first frame (``features``: as in
    :func:`image_step`, the clip's frames already encoded).

    A share ``p_correction`` of the clips gets a correction click on one later frame, which
    becomes a conditioning frame. ``correction_at`` says where and how:

    ``"random"``
        A uniformly random frame, corrected as the tracking reaches it: only the frames
        after it see it.
    ``"worst"``
        As :func:`~napari_sam2.evaluate.evaluate_tracking` corrects: the frame where
        the tracking without a correction is worst (lowest mean IoU of the objects, by
        :func:`~napari_sam2.evaluate.mask_iou`: an absent object's false positive
        scores 0 and gets a negative click). A first pass without gradients tracks the clip
        to find it; then the prompted frame, the corrected frame (conditioned on that
        pass's memories, as a click refines an already tracked frame) and the other frames
        in order, every one of them seeing both conditioning frames, as when the plugin
        propagates again after a correction (SAM 2 puts every conditioning frame in every
        frame's memory): the frames before the corrected one are trained with it too. The
        first pass costs a forward pass of the memory and heads, not of the image encoder.
    """
    if correction_at not in ("random", "worst"):
        raise ValueError(f"correction_at must be 'random' or 'worst', not {correction_at!r}")
    cfg = model.config
    size = cfg.image_size
    device = model.device
    t_len, n = clip.masks.shape[:2]
    feats_all = model.encode_image(clip.frames.to(device)) if features is None else features
    num_frames = max(virtual_length, t_len)
    loss_size = _loss_size(model)
    target = _target(clip.masks[:, :, None], loss_size, device)  # (T, N, 1, L, L)
    total = torch.zeros((), device=device)
    log = {"mask": 0.0, "iou": 0.0, "obj": 0.0}
    ious = []
    corrected = t_len > 1 and rng.uniform() < p_correction
    correct_at = int(rng.integers(1, t_len)) if corrected and correction_at == "random" else -1
    # one prompt kind per clip, so all objects share SAM's multimask rule
    kind = rng.choice(["click", "box", "mask"], p=[0.6 - p_mask_prompt / 2, 0.4 - p_mask_prompt / 2, p_mask_prompt])
    clicks0 = None
    if kind != "mask":
        clicks0 = [first_prompt(m, rng, p_box=1.0 if kind == "box" else 0.0, p_multi=0.0) for m in clip.masks[0]]

    def loss_of(out: TrackOutput, multimask: bool, t: int) -> None:
        nonlocal total
        logits, iou = _candidates(out.decoded, multimask)
        loss, parts, best_iou = segmentation_loss(_upsample(logits, loss_size), iou, out.object_score, target[t])
        total = total + loss / t_len
        for k, v in parts.items():
            log[k] += v / t_len
        ious.append(float(best_iou.mean()))

    # each frame's features sliced once, and repeated once for the objects
    frame = [feats_all.select(t) for t in range(t_len)]
    frame_n = [f.expand(n) for f in frame]

    def remember(bank: _Bank, t: int, out: TrackOutput, is_cond: bool) -> None:
        fe = frame_n[t]
        mem, _ = model.encode_memory(fe.embed, out.high_res_logits, out.object_score, is_mask_from_pts=is_cond)
        (bank.cond if is_cond else bank.non_cond)[t] = (mem, out.obj_ptr)

    def prompted(train: bool) -> TrackOutput:
        """Frame 0 decoded from the objects' first prompts (a conditioning frame)."""
        fe = frame_n[0]
        if clicks0 is None:
            mask0 = torch.from_numpy(clip.masks[0][:, None]).to(device).float()
            return model.mask_as_output(fe.embed, fe.high_res, mask0)
        pix = model.no_memory_features(fe)
        coords, labels = _tensor_clicks(clicks0, device)
        multimask = model.use_multimask(True, coords.shape[1])
        out = model.track_heads(pix, fe.high_res, coords, labels, None, multimask)
        if train:
            loss_of(out, multimask, 0)
        return out

    def tracked(t: int, bank: _Bank, train: bool) -> tuple[torch.Tensor, TrackOutput]:
        """Frame ``t`` decoded from its memory-conditioned features (and those features)."""
        pix = _condition(model, bank, t, frame[t], n, num_frames)
        multimask = model.use_multimask(False, 0)
        out = model.track_heads(pix, frame_n[t].high_res, None, None, None, multimask)
        if train:
            loss_of(out, multimask, t)
        return pix, out

    def correct(t: int, pix: torch.Tensor, out: TrackOutput) -> TrackOutput:
        """Frame ``t`` decoded again with a correction click per object and the tracked mask."""
        pred = (out.high_res_logits.detach()[:, 0] > 0).cpu().numpy()
        clicks = []
        for p, g in zip(pred, clip.masks[t]):
            if g.any():
                (x, y), label = sample_correction_click(p, g, rng)
            else:  # the object is gone: a negative click on whatever is predicted
                (x, y), label = (sample_correction_click(p, g, rng) if p.any() else ((size / 2, size / 2), NEGATIVE))
            clicks.append((np.array([[x, y]], dtype=np.float32), np.array([label])))
        coords, labels = _tensor_clicks(clicks, device)
        prev = out.logits.detach().clamp(-_LOGIT_CLAMP, _LOGIT_CLAMP)
        multimask = model.use_multimask(False, 1)
        out = model.track_heads(pix, frame_n[t].high_res, coords, labels, prev, multimask)
        loss_of(out, multimask, t)
        return out

    bank = _Bank()
    if corrected and correction_at == "worst":
        with torch.no_grad():  # the tracking the correction is made on
            first = _Bank()
            remember(first, 0, prompted(train=False), True)
            frame_iou = []  # of frames 1, 2, ...
            for t in range(1, t_len):
                out = tracked(t, first, train=False)[1]
                pred = (out.high_res_logits[:, 0] > 0).cpu().numpy()
                frame_iou.append(np.mean([mask_iou(p, g) for p, g in zip(pred, clip.masks[t])]))
                remember(first, t, out, False)
        correct_at = 1 + int(np.argmin(frame_iou))  # the earliest of equally bad frames
        remember(bank, 0, prompted(train=True), True)
        seen = _Bank()  # what the first pass remembered before the corrected frame, and frame 0
        seen.cond = bank.cond
        seen.non_cond = {t: m for t, m in first.non_cond.items() if t < correct_at}
        pix, out = tracked(correct_at, seen, train=True)
        remember(bank, correct_at, correct(correct_at, pix, out), True)
        for t in range(1, t_len):
            if t != correct_at:
                remember(bank, t, tracked(t, bank, train=True)[1], False)
    else:
        remember(bank, 0, prompted(train=True), True)
        for t in range(1, t_len):
            pix, out = tracked(t, bank, train=True)
            is_cond = t == correct_at
            if is_cond:
                out = correct(t, pix, out)
            remember(bank, t, out, is_cond)
    log["iou_track"] = float(np.mean(ious)) if ious else 0.0
    log["objects"] = float(n)
    return total, log
