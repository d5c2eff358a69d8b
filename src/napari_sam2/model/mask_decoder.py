"""SAM 2 mask decoder: masks, IoU estimates, object score and output tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer


@dataclass(frozen=True)
class DecoderOutput:
    """Raw decoder outputs for all mask tokens (index 0: single-mask token).

    Attributes:
        masks: (B, 4, 4E, 4E) mask logits.
        iou: (B, 4) predicted IoU per mask.
        tokens: (B, 4, C) mask output tokens (for object pointers).
        object_score: (B, 1) logit that the object is present.
    """

    masks: torch.Tensor
    iou: torch.Tensor
    tokens: torch.Tensor
    object_score: torch.Tensor


class MaskDecoder(nn.Module):
    """Predicts masks from image embeddings and prompt embeddings.

    Arguments:
        transformer_dim: width C.
        depth, num_heads, mlp_dim: the two-way transformer's sizes.
        num_multimask_outputs: candidate masks besides the single-mask output.
        iou_head_depth, iou_head_hidden_dim: IoU head MLP sizes.
        use_high_res_features: add stride-4/8 features while upscaling.
        iou_prediction_use_sigmoid: squash IoU predictions into [0, 1].
        pred_obj_scores: predict an object-present logit.
        pred_obj_scores_mlp: use a 3-layer MLP (else a linear layer) for it.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        depth: int = 2,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = True,
        iou_prediction_use_sigmoid: bool = True,
        pred_obj_scores: bool = True,
        pred_obj_scores_mlp: bool = True,
    ) -> None:
        super().__init__()
        c = transformer_dim
        self.transformer = TwoWayTransformer(depth=depth, embedding_dim=c, num_heads=num_heads, mlp_dim=mlp_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, c)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, c)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, c)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, kernel_size=2, stride=2),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.ConvTranspose2d(c // 4, c // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(c, c // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(c, c // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(c, c, c // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(
            c, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth, sigmoid_output=iou_prediction_use_sigmoid
        )
        if pred_obj_scores:
            self.pred_obj_score_head = MLP(c, c, 1, 3) if pred_obj_scores_mlp else nn.Linear(c, 1)

    def output_tokens(self) -> torch.Tensor:
        """The learned tokens prepended to the prompts, (T, C)."""
        parts = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            parts.insert(0, self.obj_score_token.weight)
        return torch.cat(parts, dim=0)

    def forward(
        self,
        image_embed: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        high_res: "tuple[torch.Tensor, torch.Tensor] | BlockedHighRes | None" = None,
    ) -> DecoderOutput:
        """Decode all mask tokens.

        Arguments:
            image_embed: (B, C, E, E) image embedding (one per prompt set, or 1 shared).
            image_pe: (1, C, E, E) dense positional encoding.
            sparse: (B, N, C) sparse prompt embeddings.
            dense: (B, C, E, E) dense prompt embeddings.
            high_res: projected stride-4 (B, C/8, 4E, 4E) and stride-8 (B, C/4, 2E, 2E) maps,
                or the same already in :class:`BlockedHighRes` layout (cache it per image).
        """
        b = sparse.shape[0]
        tokens = torch.cat([self.output_tokens()[None].expand(b, -1, -1), sparse], dim=1)
        if image_embed.shape[0] != b:
            image_embed = image_embed.expand(b, -1, -1, -1)
        src = image_embed + dense
        hs, src = self.transformer(src, image_pe.expand(b, -1, -1, -1), tokens)
        s = 1 if self.pred_obj_scores else 0
        iou_token_out = hs[:, s]
        mask_tokens_out = hs[:, s + 1 : s + 1 + self.num_mask_tokens]

        hyper = torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # (B, 4, C/8)
        if high_res is not None and not isinstance(high_res, BlockedHighRes):
            high_res = BlockedHighRes.from_maps(high_res)
        h, w = image_embed.shape[-2:]
        masks = self._upscale_masks(src, h, w, hyper, high_res if self.use_high_res_features else None)
        iou = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            obj = self.pred_obj_score_head(hs[:, 0])
        else:
            obj = iou.new_full((b, 1), 10.0)
        return DecoderOutput(masks=masks, iou=iou, tokens=mask_tokens_out, object_score=obj)

    def _upscale_masks(
        self, src: torch.Tensor, h: int, w: int, hyper: torch.Tensor, high_res: "BlockedHighRes | None"
    ) -> torch.Tensor:
        """Upscale (B, hw, C) image tokens 4x and dot them with (B, M, C/8) hypernetwork outputs.

        The two 2x2 stride-2 transposed convolutions are matrix products on tokens,
        kept in a blocked layout (each token owns its 2x2, then 4x4, output pixels)
        so that no full-size map is ever transposed; only the (B, M, 4h, 4w) masks are
        put in image order at the end.
        """
        up1, norm1, act1, up2, act2 = self.output_upscaling
        b = src.shape[0]
        x = _conv_transpose_2x2(src, up1)  # (B, hw, 2, 2, C/4), pixel (2i+di, 2j+dj)
        if high_res is not None:
            x = x + high_res.s1
        x = act1(F.layer_norm(x, (x.shape[-1],), norm1.weight, norm1.bias, norm1.eps))
        x = _conv_transpose_2x2(x.reshape(b, -1, x.shape[-1]), up2)  # (B, 4hw, 2, 2, C/8)
        x = x.view(b, h * w, 2, 2, 2, 2, -1)  # (i j, di, dj, ei, ej, c)
        if high_res is not None:
            x = x + high_res.s0
        x = act2(x)
        m = hyper.shape[1]
        masks = x.view(b, -1, x.shape[-1]) @ hyper.transpose(1, 2)  # (B, 16hw, M)
        masks = masks.view(b, h, w, 2, 2, 2, 2, m)  # (B, i, j, di, dj, ei, ej, M)
        return masks.permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(b, m, 4 * h, 4 * w)


def _conv_transpose_2x2(tokens: torch.Tensor, conv: nn.ConvTranspose2d) -> torch.Tensor:
    """A kernel-2 stride-2 transposed convolution applied to (B, N, Cin) tokens.

    Returns (B, N, 2, 2, Cout): token n's output pixels (2i+di, 2j+dj) at [n, di, dj].
    """
    cin, cout = conv.weight.shape[:2]
    weight = conv.weight.permute(0, 2, 3, 1).reshape(cin, 4 * cout)  # (Cin, Cout, 2, 2) -> (Cin, 2*2*Cout)
    out = torch.addmm(conv.bias.repeat(4), tokens.reshape(-1, cin), weight)
    return out.view(tokens.shape[0], tokens.shape[1], 2, 2, cout)


@dataclass(frozen=True)
class BlockedHighRes:
    """High-resolution decoder features in the token-blocked layout of the upscaler.

    Attributes:
        s1: (B, hw, 2, 2, C/4) stride-8 features; [n, di, dj] is pixel (2i+di, 2j+dj).
        s0: (B, hw, 2, 2, 2, 2, C/8) stride-4 features; [n, di, dj, ei, ej] is pixel
            (4i+2di+ei, 4j+2dj+ej).
    """

    s1: torch.Tensor
    s0: torch.Tensor

    @classmethod
    def from_maps(cls, high_res: tuple[torch.Tensor, torch.Tensor]) -> "BlockedHighRes":
        """From (B, C/8, 4h, 4w) and (B, C/4, 2h, 2w) maps."""
        s0, s1 = high_res
        b, c1, h2, w2 = s1.shape
        h, w = h2 // 2, w2 // 2
        # (B, c, i, di, j, dj) -> (B, i, j, di, dj, c)
        s1b = s1.reshape(b, c1, h, 2, w, 2).permute(0, 2, 4, 3, 5, 1).reshape(b, h * w, 2, 2, c1)
        c0 = s0.shape[1]
        # (B, c, i, di, ei, j, dj, ej) -> (B, i, j, di, dj, ei, ej, c)
        s0b = s0.reshape(b, c0, h, 2, 2, w, 2, 2).permute(0, 2, 5, 3, 6, 4, 7, 1)
        return cls(s1=s1b, s0=s0b.reshape(b, h * w, 2, 2, 2, 2, c0))


def stability_scores(mask_logits: torch.Tensor, delta: float) -> torch.Tensor:
    """Area(logit > delta) / area(logit > -delta) per mask, (B, M, H, W) -> (B, M)."""
    flat = mask_logits.flatten(-2)
    inner = (flat > delta).sum(-1).float()
    outer = (flat > -delta).sum(-1).float()
    return torch.where(outer > 0, inner / outer, torch.ones_like(inner))


def select_masks(
    out: DecoderOutput,
    multimask: bool,
    *,
    dynamic_via_stability: bool,
    stability_delta: float,
    stability_thresh: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the decoder outputs a caller sees: (B, M, h, w) logits and (B, M) IoU.

    With ``multimask`` the three candidates (tokens 1-3). Otherwise the single-mask
    token 0 -- unless ``dynamic_via_stability`` and that mask is unstable, in which
    case the candidate with the highest predicted IoU replaces it.
    """
    if multimask:
        return out.masks[:, 1:], out.iou[:, 1:]
    single, single_iou = out.masks[:, :1], out.iou[:, :1]
    if not dynamic_via_stability:
        return single, single_iou
    cand_iou = out.iou[:, 1:]
    best = cand_iou.argmax(dim=-1)  # (B,)
    rows = torch.arange(best.shape[0], device=best.device)
    best_masks = out.masks[:, 1:][rows, best][:, None]
    best_iou = cand_iou[rows, best][:, None]
    stable = stability_scores(single, stability_delta) >= stability_thresh  # (B, 1)
    masks = torch.where(stable[..., None, None], single, best_masks)
    iou = torch.where(stable, single_iou, best_iou)
    return masks, iou


def select_tokens(out: DecoderOutput, multimask: bool, use_multimask_token_for_obj_ptr: bool) -> torch.Tensor:
    """The output tokens that match :func:`select_masks`' masks, (B, M, C).

    Note: as in the official decoder, the single-mask path returns token 0 even when
    stability selection swapped in a candidate mask.
    """
    if multimask and use_multimask_token_for_obj_ptr:
        return out.tokens[:, 1:]
    return out.tokens[:, :1]
