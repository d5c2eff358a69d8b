"""Assemble an object's memory bank for one frame and condition the frame on it.

Which memories a frame sees is SAM 2's rule (as the official video predictor): every
conditioning (prompted) frame, plus the non-conditioning outputs of the
``num_maskmem - 1`` frames just before it (after it, when tracking in reverse); and
object pointers from the conditioning frames in the past and from up to
``max_obj_ptrs_in_encoder - 1`` preceding tracked frames.
"""

from __future__ import annotations

import torch

from ..model.sam2 import SAM2, ImageFeatures
from .memory import ObjectTrack, OutputStore


def memory_frames(track: ObjectTrack, frame: int, num_maskmem: int, reverse: bool) -> list[tuple[int, int]]:
    """(t_pos, source frame) of the spatial memories used on ``frame``.

    t_pos 0 marks conditioning frames; t_pos k >= 1 the frame ``num_maskmem - k`` steps back.
    """
    picked = [(0, t) for t in track.cond]
    for t_pos in range(1, num_maskmem):
        t_rel = num_maskmem - t_pos
        prev = frame + t_rel if reverse else frame - t_rel
        if prev in track.non_cond:
            picked.append((t_pos, prev))
    return picked


def pointer_frames(
    track: ObjectTrack, frame: int, num_frames: int, max_ptrs: int, reverse: bool, signed: bool
) -> list[tuple[int, int]]:
    """(temporal position, source frame) of the object pointers used on ``frame``."""
    sign = -1 if reverse else 1
    picked = []
    for t in track.cond:
        if (t >= frame) if reverse else (t <= frame):
            picked.append(((frame - t) * sign if signed else abs(frame - t), t))
    for t_diff in range(1, max_ptrs):
        t = frame + t_diff if reverse else frame - t_diff
        if t < 0 or t >= num_frames:
            break
        if t in track.non_cond:
            picked.append((t_diff, t))
    return picked


def condition_on_memory(
    model: SAM2,
    outputs: OutputStore,
    track: ObjectTrack,
    frame: int,
    feats: ImageFeatures,
    *,
    num_frames: int,
    reverse: bool,
) -> torch.Tensor:
    """Memory-conditioned features (1, C, E, E) of ``frame`` for one object."""
    cfg = model.config
    device = feats.embed.device
    _, _, e_h, e_w = feats.embed.shape
    mem_pos_grid = model.memory_encoder.position_encoding.grid(e_h, e_w, device)  # (mem_dim, E, E)
    mem_pos_tokens = mem_pos_grid.flatten(1).T  # (EE, mem_dim)

    mems, poss = [], []
    for t_pos, t in memory_frames(track, frame, cfg.num_maskmem, reverse):
        src = track.cond[t] if t_pos == 0 else track.non_cond[t]
        # stored in bfloat16 like the official; computed in float32
        mems.append(outputs.memory(src).to(device, torch.float32).flatten(2)[0].T)  # (EE, mem_dim)
        poss.append(mem_pos_tokens + model.memory_tpos(t_pos))

    n_ptr_tokens = 0
    if cfg.use_obj_ptrs_in_encoder:
        max_ptrs = min(num_frames, cfg.max_obj_ptrs_in_encoder)
        ptr_sel = pointer_frames(
            track, frame, num_frames, max_ptrs, reverse, signed=cfg.use_signed_tpos_enc_to_obj_ptrs
        )
        if ptr_sel:
            rel = torch.tensor([p for p, _ in ptr_sel], device=device)
            ptrs = torch.stack(
                [(track.cond[t] if t in track.cond else track.non_cond[t]).obj_ptr for _, t in ptr_sel]
            )  # (P, 1, C)
            ptr_pos = model.pointer_tpos(rel, max_ptrs)[:, None]  # (P, 1, mem_dim)
            if cfg.mem_dim < cfg.d_model:
                k = cfg.d_model // cfg.mem_dim
                ptrs = model.split_pointers(ptrs)  # (P*k, 1, mem_dim)
                ptr_pos = ptr_pos.repeat_interleave(k, dim=0)
            mems.append(ptrs[:, 0])
            poss.append(ptr_pos[:, 0])
            n_ptr_tokens = ptrs.shape[0]

    memory = torch.cat(mems, dim=0)[None]  # (1, M, mem_dim)
    memory_pos = torch.cat(poss, dim=0)[None]
    return model.attend_memory(feats, memory, memory_pos, n_ptr_tokens)
