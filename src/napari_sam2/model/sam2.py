"""The SAM 2 network: a stateless module with the steps an engine composes.

State-dict keys and shapes equal the official checkpoints', so Meta's ``.pt`` files
load unchanged. The module holds no per-image or per-video state: callers keep the
features, memories and object pointers (see ``napari_sam2.engine``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP
from .config import SAM2Config
from .image_encoder import ImageEncoder
from .mask_decoder import DecoderOutput, MaskDecoder, select_masks, select_tokens
from .memory_attention import MemoryAttention
from .memory_encoder import MemoryEncoder
from .position_encoding import sine_1d
from .prompt_encoder import PAD, PromptEncoder

#: logit written into masks of frames where the object is judged absent
NO_OBJ_SCORE = -1024.0


@dataclass(frozen=True)
class ImageFeatures:
    """Encoder output for a batch of frames.

    Attributes:
        embed: (B, C, E, E) lowest-resolution features (no memory applied).
        pos: (B, C, E, E) sine position encoding of ``embed``.
        high_res: projected stride-4 (B, C/8, 4E, 4E) and stride-8 (B, C/4, 2E, 2E) maps.
    """

    embed: torch.Tensor
    pos: torch.Tensor
    high_res: tuple[torch.Tensor, torch.Tensor]

    def select(self, index: int) -> "ImageFeatures":
        """Features of one frame of the batch (batch size 1)."""
        sl = slice(index, index + 1)
        return ImageFeatures(self.embed[sl], self.pos[sl], (self.high_res[0][sl], self.high_res[1][sl]))

    def expand(self, batch: int) -> "ImageFeatures":
        """The same single frame repeated for ``batch`` objects (no copy)."""
        return ImageFeatures(
            self.embed.expand(batch, -1, -1, -1),
            self.pos.expand(batch, -1, -1, -1),
            tuple(h.expand(batch, -1, -1, -1) for h in self.high_res),  # type: ignore[arg-type]
        )

    def to(self, device: torch.device | str) -> "ImageFeatures":
        return ImageFeatures(
            self.embed.to(device), self.pos.to(device), tuple(h.to(device) for h in self.high_res)  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class TrackOutput:
    """What the SAM heads give for one frame and a batch of objects.

    Attributes:
        logits: (B, 1, 4E, 4E) chosen low-resolution mask logits.
        high_res_logits: (B, 1, S, S) the same upsampled to the model input size.
        iou: (B, 1) predicted IoU of the chosen mask.
        obj_ptr: (B, C) object pointer.
        object_score: (B, 1) object-present logit.
        decoded: the decoder's raw outputs for all mask tokens (training computes its
            losses on every candidate), or None when no decoding produced the masks.
    """

    logits: torch.Tensor
    high_res_logits: torch.Tensor
    iou: torch.Tensor
    obj_ptr: torch.Tensor
    object_score: torch.Tensor
    decoded: DecoderOutput | None = None


class SAM2(nn.Module):
    """SAM 2 image + video network.

    Arguments:
        config: sizes and behaviour flags (see :class:`SAM2Config`).
    """

    def __init__(self, config: SAM2Config) -> None:
        super().__init__()
        self.config = c = config
        if c.proj_tpos_enc_in_obj_ptrs and not c.add_tpos_enc_to_obj_ptrs:
            raise ValueError("proj_tpos_enc_in_obj_ptrs needs add_tpos_enc_to_obj_ptrs")
        self.image_encoder = ImageEncoder(c)
        self.memory_attention = MemoryAttention(c)
        self.memory_encoder = MemoryEncoder(c)
        self.sam_prompt_encoder = PromptEncoder(
            embed_dim=c.d_model, embedding_size=c.embedding_size, image_size=c.image_size, mask_in_chans=c.mask_in_chans
        )
        self.sam_mask_decoder = MaskDecoder(
            transformer_dim=c.d_model,
            depth=c.decoder_depth,
            num_heads=c.decoder_heads,
            mlp_dim=c.decoder_mlp_dim,
            iou_head_hidden_dim=c.iou_head_hidden_dim,
            use_high_res_features=c.use_high_res_features_in_sam,
            iou_prediction_use_sigmoid=c.iou_prediction_use_sigmoid,
            pred_obj_scores=c.pred_obj_scores,
            pred_obj_scores_mlp=c.pred_obj_scores_mlp,
        )
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(c.num_maskmem, 1, 1, c.mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c.d_model))
        if c.use_obj_ptrs_in_encoder:
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
            if c.pred_obj_scores:
                self.no_obj_ptr = nn.Parameter(torch.zeros(1, c.d_model))
            self.obj_ptr_proj = (
                MLP(c.d_model, c.d_model, c.d_model, 3) if c.use_mlp_for_obj_ptr_proj else nn.Linear(c.d_model, c.d_model)
            )
        if c.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, c.mem_dim))
        if c.proj_tpos_enc_in_obj_ptrs:
            self.obj_ptr_tpos_proj = nn.Linear(c.d_model, c.mem_dim)

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    @property
    def dtype(self) -> torch.dtype:
        return self.no_mem_embed.dtype

    # ------------------------------------------------------------------ image
    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        """(B, 3, S, S) normalised images -> :class:`ImageFeatures`."""
        project = None
        if self.config.use_high_res_features_in_sam:  # the decoder's projections of levels 0 and 1
            project = {0: self.sam_mask_decoder.conv_s0, 1: self.sam_mask_decoder.conv_s1}
        feats = self.image_encoder(images, project)
        embed = feats[-1]
        high_res = (feats[0], feats[1])
        pos = self.image_encoder.neck.position_encoding(embed)
        return ImageFeatures(embed=embed, pos=pos, high_res=high_res)

    def image_embedding(self, features: ImageFeatures) -> torch.Tensor:
        """The embedding the single-image decoder sees (no memory: ``no_mem_embed`` added)."""
        if self.config.directly_add_no_mem_embed:
            return features.embed + self.no_mem_embed.view(1, -1, 1, 1)
        return features.embed

    def decode(
        self,
        image_embed: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor] | None,
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_logits: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """Prompt encoder + mask decoder, all mask tokens.

        Arguments:
            image_embed: (1 or B, C, E, E) embedding.
            high_res: projected high-resolution maps, or None.
            coords: (B, N, 2) points (x, y) in model-input pixels (box corners have labels 2, 3).
            labels: (B, N) int labels: 1 positive, 0 negative, 2/3 box corners, -1 padding.
            mask_logits: (B, 1, 4E, 4E) mask prompt logits, or None.
        """
        sparse, dense = self.sam_prompt_encoder(coords, labels, mask_logits, pad=True)
        return self.sam_mask_decoder(image_embed, self.sam_prompt_encoder.dense_pe(), sparse, dense, high_res)

    def select(self, out: DecoderOutput, multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The masks and IoU a caller sees for ``multimask`` (see :func:`select_masks`)."""
        c = self.config
        return select_masks(
            out,
            multimask,
            dynamic_via_stability=c.dynamic_multimask_via_stability,
            stability_delta=c.dynamic_multimask_stability_delta,
            stability_thresh=c.dynamic_multimask_stability_thresh,
        )

    # ------------------------------------------------------------------ video
    def use_multimask(self, is_init_cond_frame: bool, num_points: int) -> bool:
        """Whether tracking decodes 3 candidates on a frame (SAM 2's rule)."""
        c = self.config
        return (
            c.multimask_output_in_sam
            and (is_init_cond_frame or c.multimask_output_for_tracking)
            and c.multimask_min_pt_num <= num_points <= c.multimask_max_pt_num
        )

    def track_heads(
        self,
        pix_feat: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor] | None,
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask: bool,
        presence_bias: float = 0.0,
    ) -> TrackOutput:
        """Decode one frame for a batch of objects during tracking.

        Arguments:
            pix_feat: (B, C, E, E) memory-conditioned features.
            coords, labels: (B, N, 2) / (B, N) prompts, or None for no clicks.
            mask_input: (B, 1, h, w) mask prompt (resized to the decoder's mask size).
            multimask: decode three candidates and keep the best by predicted IoU.
            presence_bias: added to the object-present logit before anything reads it (the
                mask, the object pointer, the returned score that the memory encoder sees):
                > 0 keeps a doubtful object, < 0 lets it go sooner. 0 is the official model.
        """
        b = pix_feat.shape[0]
        if coords is None:
            coords = pix_feat.new_zeros(b, 1, 2)
            labels = torch.full((b, 1), PAD, dtype=torch.int32, device=pix_feat.device)
        mask_prompt = None
        if mask_input is not None:
            size = self.sam_prompt_encoder.mask_input_size
            mask_prompt = mask_input.float()
            if mask_prompt.shape[-2:] != (size, size):
                mask_prompt = F.interpolate(
                    mask_prompt, size=(size, size), mode="bilinear", align_corners=False, antialias=True
                )
        out = self.decode(pix_feat, high_res, coords, labels, mask_prompt)
        logits, iou = self.select(out, multimask)
        tokens = select_tokens(out, multimask, self.config.use_multimask_token_for_obj_ptr)
        score = out.object_score + presence_bias if presence_bias else out.object_score
        present = score > 0  # (B, 1)
        if self.config.pred_obj_scores:
            logits = torch.where(present[:, :, None, None], logits, NO_OBJ_SCORE)
        logits = logits.float()
        token = tokens[:, 0]
        if multimask:
            best = iou.argmax(dim=-1)
            rows = torch.arange(b, device=best.device)
            logits = logits[rows, best][:, None]
            iou = iou[rows, best][:, None]
            if tokens.shape[1] > 1:
                token = tokens[rows, best]
        high = F.interpolate(logits, size=(self.config.image_size,) * 2, mode="bilinear", align_corners=False)
        obj_ptr = self._object_pointer(token, score)
        return TrackOutput(
            logits=logits, high_res_logits=high, iou=iou, obj_ptr=obj_ptr, object_score=score, decoded=out
        )

    def _object_pointer(self, token: torch.Tensor, object_score: torch.Tensor) -> torch.Tensor:
        """Project an output token to an object pointer; absent objects get ``no_obj_ptr``."""
        c = self.config
        if not c.use_obj_ptrs_in_encoder:
            return token.new_zeros(token.shape[0], c.d_model)
        ptr = self.obj_ptr_proj(token)
        if c.pred_obj_scores:
            present = torch.sigmoid(object_score) if c.soft_no_obj_ptr else (object_score > 0).float()
            if c.fixed_no_obj_ptr:
                ptr = present * ptr
            ptr = ptr + (1 - present) * self.no_obj_ptr
        return ptr

    def mask_as_output(
        self, pix_feat: torch.Tensor, high_res: tuple[torch.Tensor, torch.Tensor] | None, mask: torch.Tensor
    ) -> TrackOutput:
        """Turn a (B, 1, S, S) binary mask prompt directly into outputs (no decoding of the mask).

        The object pointer still comes from decoding the downsampled mask.
        """
        c = self.config
        scale, bias = 20.0, -10.0
        high = mask.float() * scale + bias
        low = F.interpolate(
            high, size=(high.shape[-2] // 4, high.shape[-1] // 4), mode="bilinear", align_corners=False, antialias=True
        )
        iou = mask.new_ones(mask.shape[0], 1).float()
        present = (mask.flatten(1).float() > 0).any(dim=1, keepdim=True).float()  # (B, 1)
        object_score = scale * present + bias
        if c.use_obj_ptrs_in_encoder:
            decoded = self.track_heads(pix_feat, high_res, None, None, self.mask_downsample(mask.float()), False)
            ptr = decoded.obj_ptr
            if c.pred_obj_scores:
                if c.fixed_no_obj_ptr:
                    ptr = present * ptr
                ptr = ptr + (1 - present) * self.no_obj_ptr
        else:
            ptr = mask.new_zeros(mask.shape[0], c.d_model).float()
        return TrackOutput(logits=low, high_res_logits=high, iou=iou, obj_ptr=ptr, object_score=object_score)

    def encode_memory(
        self,
        pix_feat: torch.Tensor,
        high_res_logits: torch.Tensor,
        object_score: torch.Tensor,
        is_mask_from_pts: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Memory of a frame from its raw features and predicted mask logits.

        Arguments:
            pix_feat: (B, C, E, E) raw (not memory-conditioned) features.
            high_res_logits: (B, 1, S, S) mask logits at the model input size.
            object_score: (B, 1) object-present logits.
            is_mask_from_pts: the mask came from clicks on this frame.

        Returns:
            (B, mem_dim, E, E) memory features and their (B, mem_dim, E, E) encoding.
        """
        c = self.config
        if c.binarize_mask_from_pts_for_mem_enc and is_mask_from_pts:
            mask = (high_res_logits > 0).float()
        else:
            mask = torch.sigmoid(high_res_logits)
        mask = mask * c.sigmoid_scale_for_mem_enc + c.sigmoid_bias_for_mem_enc
        feats, pos = self.memory_encoder(pix_feat, mask, skip_mask_sigmoid=True)
        if c.no_obj_embed_spatial:
            absent = (object_score <= 0).float()[..., None, None]  # (B, 1, 1, 1)
            feats = feats + absent * self.no_obj_embed_spatial[..., None, None]
        return feats, pos

    def memory_tpos(self, t_pos: int) -> torch.Tensor:
        """Temporal encoding (mem_dim,) of a spatial memory ``t_pos`` frames back (0: conditioning)."""
        return self.maskmem_tpos_enc[self.config.num_maskmem - t_pos - 1].reshape(-1)

    def pointer_tpos(self, rel_pos: torch.Tensor, max_ptrs: int) -> torch.Tensor:
        """Temporal encoding (P, mem_dim) of object pointers at (signed) distances ``rel_pos``."""
        c = self.config
        if not c.add_tpos_enc_to_obj_ptrs:
            return self.no_mem_embed.new_zeros(rel_pos.shape[0], c.mem_dim)
        dim = c.d_model if c.proj_tpos_enc_in_obj_ptrs else c.mem_dim
        enc = sine_1d(rel_pos.float() / max(max_ptrs - 1, 1), dim)
        return self.obj_ptr_tpos_proj(enc) if c.proj_tpos_enc_in_obj_ptrs else enc

    def split_pointers(self, ptrs: torch.Tensor) -> torch.Tensor:
        """(P, B, C) pointers -> (P * C/mem_dim, B, mem_dim) memory tokens."""
        p, b, c = ptrs.shape
        k = c // self.config.mem_dim
        return ptrs.reshape(p, b, k, self.config.mem_dim).permute(0, 2, 1, 3).reshape(p * k, b, -1)

    def attend_memory(
        self,
        features: ImageFeatures,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_obj_ptr_tokens: int,
        *,
        started: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Condition a frame's features on memories: (B, M, mem_dim) -> (B, C, E, E).

        Features of batch 1 with memories of batch B condition one frame for B objects;
        ``started`` is :meth:`start_memory_attention` of the frame, shared by all its objects.
        """
        _, ch, h, w = features.embed.shape
        curr = features.embed.flatten(2).transpose(1, 2)  # (B, C, E, E) -> (B, EE, C)
        pos = features.pos.flatten(2).transpose(1, 2)
        out = self.memory_attention(curr, pos, memory, memory_pos, num_obj_ptr_tokens, started=started)
        return out.transpose(1, 2).reshape(out.shape[0], ch, h, w)

    def start_memory_attention(self, features: ImageFeatures) -> torch.Tensor:
        """The part of memory attention that sees only the frame (one frame, any objects)."""
        curr = features.embed.flatten(2).transpose(1, 2)
        pos = features.pos.flatten(2).transpose(1, 2)
        return self.memory_attention.start(curr, pos)

    def no_memory_features(self, features: ImageFeatures) -> torch.Tensor:
        """Features of an initial conditioning frame (no memory yet), (B, C, E, E)."""
        if self.config.directly_add_no_mem_embed:
            return self.image_embedding(features)
        b = features.embed.shape[0]
        memory = self.no_mem_embed.expand(b, 1, -1)
        pos = self.no_mem_pos_enc.expand(b, 1, -1)
        return self.attend_memory(features, memory, pos, 0)
