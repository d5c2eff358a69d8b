"""Which official SAM 2 variant a state dict is, read from its tensors alone.

The checkpoint's shapes and key names make a :class:`_Signature` (trunk width, blocks per
stage, 2.0 or 2.1, ...), compared with the signature of each config in ``CONFIGS``; so a
file needs no matching name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..errors import CheckpointError
from ..model.config import CONFIGS, SAM2Config
from .reading import _PATCH_EMBED


@dataclass(frozen=True)
class _Signature:
    """What the tensors of a checkpoint say about its variant."""

    embed_dim: int
    stages: tuple[int, ...]
    pos_embed_size: tuple[int, ...]
    first_window: int | None
    sam21: bool
    d_model: int | None
    mem_dim: int | None
    memory_attention_layers: int | None

    def describe(self) -> str:
        version = "2.1" if self.sam21 else "2.0"
        return (
            f"SAM {version}, Hiera embed_dim {self.embed_dim}, stages {self.stages}, "
            f"pos_embed {self.pos_embed_size}"
        )


def _config_signature(cfg: SAM2Config) -> _Signature:
    trunk = cfg.trunk
    return _Signature(
        embed_dim=trunk.embed_dim,
        stages=tuple(trunk.stages),
        pos_embed_size=tuple(trunk.window_pos_embed_bkg_spatial_size),
        first_window=trunk.window_spec[0],
        sam21=cfg.no_obj_embed_spatial or cfg.proj_tpos_enc_in_obj_ptrs,
        d_model=cfg.d_model,
        mem_dim=cfg.mem_dim,
        memory_attention_layers=cfg.memory_attention_layers,
    )


def _state_dict_signature(sd: Mapping[str, torch.Tensor]) -> _Signature:
    block_ids = set()
    stage_starts = {0}
    layer_ids = set()
    for key in sd:
        block = re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", key)
        if block is not None:
            block_ids.add(int(block.group(1)))
            if key.endswith(".proj.weight") and ".attn." not in key:
                stage_starts.add(int(block.group(1)))  # a block with a projection opens a stage
        layer = re.match(r"memory_attention\.layers\.(\d+)\.", key)
        if layer is not None:
            layer_ids.add(int(layer.group(1)))
    num_blocks = max(block_ids) + 1 if block_ids else 0
    bounds = sorted(stage_starts) + [num_blocks]
    stages = tuple(b - a for a, b in zip(bounds[:-1], bounds[1:]))

    def dim(key: str, axis: int) -> int | None:
        tensor = sd.get(key)
        return int(tensor.shape[axis]) if tensor is not None and tensor.dim() > axis else None

    pos_embed = sd.get("image_encoder.trunk.pos_embed")
    return _Signature(
        embed_dim=int(sd[_PATCH_EMBED].shape[0]),
        stages=stages,
        pos_embed_size=tuple(pos_embed.shape[2:]) if pos_embed is not None else (),
        first_window=dim("image_encoder.trunk.pos_embed_window", 2),
        sam21="no_obj_embed_spatial" in sd or "obj_ptr_tpos_proj.weight" in sd,
        d_model=dim("no_mem_embed", -1),
        mem_dim=dim("maskmem_tpos_enc", -1),
        memory_attention_layers=len(layer_ids) or None,
    )


def _matches(found: _Signature, official: _Signature) -> bool:
    """True when every fact the checkpoint shows equals the official one (None = unknown)."""
    for name in found.__dataclass_fields__:
        value = getattr(found, name)
        if value is not None and value != getattr(official, name):
            return False
    return True


def infer_config(
    state_dict: Mapping[str, torch.Tensor], *, source: str | os.PathLike[str] | None = None
) -> SAM2Config:
    """Return the official config (an entry of ``CONFIGS``) whose tensors ``state_dict`` has.

    The trunk width comes from the patch embedding, the blocks per stage from where the
    blocks with a projection sit, 2.0 vs 2.1 from ``no_obj_embed_spatial`` /
    ``obj_ptr_tpos_proj``.

    Parameters
    ----------
    state_dict
        A SAM 2 state dict, e.g. from :func:`read_state_dict`. Only key names and shapes are
        read, so tensors on the meta device do too.
    source
        Only names the file in error messages.

    Returns
    -------
    SAM2Config
        The official variant's config, e.g. ``CONFIGS["sam2.1_hiera_tiny"]``.

    Raises
    ------
    CheckpointError
        The tensors are not SAM 2, or match no official variant (pass ``config=`` then).
    """
    where = f"checkpoint {str(source)!r}" if source is not None else "state dict"
    if _PATCH_EMBED not in state_dict:
        raise CheckpointError(f"{where} is not a SAM 2 checkpoint: it has no {_PATCH_EMBED}")
    found = _state_dict_signature(state_dict)
    for cfg in CONFIGS.values():
        if _matches(found, _config_signature(cfg)):
            return cfg
    raise CheckpointError(
        f"{where} matches no official SAM 2 variant ({found.describe()}); "
        "pass its config explicitly: load_model(path, config=SAM2Config(...) or 'config.json')"
    )
