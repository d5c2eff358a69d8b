"""SAM 2's training losses: mask (BCE + dice, best candidate), IoU head, object score."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mask_losses", "segmentation_loss"]


def mask_losses(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mask BCE and dice losses.

    Arguments:
        logits: (B, M, H, W) candidate logits (M candidates per object).
        target: (B, 1, H, W) float ground truth in [0, 1].

    Returns:
        (B, M) positive-weighted BCE and (B, M) dice loss. Positives are up-weighted by
        sqrt(negatives / positives) (1-10x) so small objects are not drowned by background.
    """
    t = target.expand_as(logits)
    pos = target.flatten(1).mean(1).clamp(1e-4, 1.0)  # (B,)
    pos_weight = ((1 - pos) / pos).sqrt().clamp(1.0, 10.0)[:, None, None, None]
    weight = torch.where(t > 0.5, pos_weight.expand_as(t), torch.ones_like(t))
    bce = F.binary_cross_entropy_with_logits(logits, t, weight=weight, reduction="none").flatten(2).mean(-1)
    prob = torch.sigmoid(logits).flatten(2)
    tt = t.flatten(2)
    dice = 1 - (2 * (prob * tt).sum(-1) + 1) / (prob.sum(-1) + tt.sum(-1) + 1)
    return bce, dice


def segmentation_loss(
    logits: torch.Tensor,
    iou_pred: torch.Tensor,
    object_score: torch.Tensor,
    target: torch.Tensor,
    *,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 0.5),
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """The loss of one decoding of a batch of objects.

    Arguments:
        logits: (B, M, H, W) candidate mask logits at the target's resolution.
        iou_pred: (B, M) predicted IoU of each candidate.
        object_score: (B, 1) object-present logits.
        target: (B, 1, H, W) ground truth; an all-zero target means the object is absent.
        weights: BCE, dice, IoU-head and object-score weights.

    Only the candidate with the lowest mask loss is trained on the mask (SAM's multimask
    loss); the IoU head learns the true IoU of every candidate; the mask losses count only
    for objects that are present.

    Returns:
        (scalar loss, float parts for logging, (B,) IoU of the best candidate).
    """
    present = (target.flatten(1).amax(1) > 0).float()  # (B,)
    bce, dice = mask_losses(logits, target)
    combined = weights[0] * bce + weights[1] * dice
    best = combined.argmin(dim=1)  # (B,)
    rows = torch.arange(logits.shape[0], device=logits.device)
    n_present = present.sum().clamp(min=1.0)
    mask_loss = (combined[rows, best] * present).sum() / n_present
    with torch.no_grad():
        pred = logits > 0
        tgt = (target > 0.5).expand_as(pred)
        inter = (pred & tgt).flatten(2).sum(-1).float()
        union = (pred | tgt).flatten(2).sum(-1).float()
        true_iou = torch.where(union > 0, inter / union.clamp(min=1.0), torch.ones_like(union))
    iou_loss = (F.mse_loss(iou_pred.float(), true_iou, reduction="none").mean(1) * present).sum() / n_present
    obj_loss = F.binary_cross_entropy_with_logits(object_score[:, 0].float(), present)
    total = mask_loss + weights[2] * iou_loss + weights[3] * obj_loss
    parts = {"mask": float(mask_loss.detach()), "iou": float(iou_loss.detach()), "obj": float(obj_loss.detach())}
    return total, parts, true_iou[rows, best]
