"""Frozen configuration dataclasses for SAM 2 and the eight official variants.

A config says everything needed to build a network whose ``state_dict`` has exactly
the keys and shapes of the official checkpoint of that variant. Sizes that the
official builder hard-codes (decoder MLP width, head counts, ...) are fields here too,
so a small test model is just another config.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HieraConfig:
    """The Hiera image trunk."""

    embed_dim: int = 96  # channels of the first stage (doubled at each stage)
    num_heads: int = 1  # heads of the first stage (doubled at each stage)
    stages: tuple[int, ...] = (1, 2, 7, 2)  # blocks per stage
    global_att_blocks: tuple[int, ...] = (5, 7, 9)  # blocks with global (unwindowed) attention
    window_spec: tuple[int, ...] = (8, 4, 14, 7)  # attention window size per stage
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)  # background pos-embed grid
    q_pool: int = 3  # number of stage transitions that pool the queries
    q_stride: tuple[int, int] = (2, 2)  # pooling stride at a stage transition
    dim_mul: float = 2.0
    head_mul: float = 2.0

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Output channels per stage, deepest first (the neck's order)."""
        dims = [int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages))]
        return tuple(reversed(dims))


@dataclass(frozen=True)
class SAM2Config:
    """The whole SAM 2 network: image encoder, prompt/mask heads and video memory.

    Field names follow the official YAML configs where one exists.
    """

    name: str = "custom"
    trunk: HieraConfig = field(default_factory=HieraConfig)
    image_size: int = 1024  # square input side the encoder sees
    backbone_stride: int = 16  # stride of the lowest-resolution feature map
    d_model: int = 256  # neck / prompt encoder / mask decoder width ("hidden_dim")
    mem_dim: int = 64  # memory feature width
    # neck
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    fpn_interp_mode: str = "nearest"
    scalp: int = 1  # drop this many lowest-resolution levels after the neck
    # mask decoder (sizes the official builder hard-codes)
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    iou_prediction_use_sigmoid: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    dynamic_multimask_via_stability: bool = True  # as build_sam2(apply_postprocessing=True)
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    # memory attention
    memory_attention_layers: int = 4
    memory_attention_heads: int = 1
    memory_attention_ffn_dim: int = 2048
    rope_theta: float = 10000.0
    # memory encoder
    fuser_layers: int = 2
    fuser_kernel_size: int = 7
    mask_downsampler_kernel_size: int = 3
    mask_downsampler_stride: int = 2
    mask_downsampler_padding: int = 1
    mask_downsampler_total_stride: int = 16
    # tracking behaviour (SAM2Base arguments)
    num_maskmem: int = 7
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    binarize_mask_from_pts_for_mem_enc: bool = True  # as the official video predictor
    use_mask_input_as_output_without_sam: bool = True
    directly_add_no_mem_embed: bool = True
    no_obj_embed_spatial: bool = True  # SAM 2.1
    use_high_res_features_in_sam: bool = True
    multimask_output_in_sam: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    multimask_output_for_tracking: bool = True
    use_obj_ptrs_in_encoder: bool = True
    max_obj_ptrs_in_encoder: int = 16
    add_tpos_enc_to_obj_ptrs: bool = True  # SAM 2.1 (False in 2.0)
    proj_tpos_enc_in_obj_ptrs: bool = True  # SAM 2.1
    use_signed_tpos_enc_to_obj_ptrs: bool = True  # SAM 2.1
    only_obj_ptrs_in_the_past_for_eval: bool = True
    fixed_no_obj_ptr: bool = True
    soft_no_obj_ptr: bool = False
    use_mlp_for_obj_ptr_proj: bool = True
    max_cond_frames_in_attn: int = -1
    memory_temporal_stride_for_eval: int = 1
    non_overlap_masks_for_mem_enc: bool = False
    # Inference calibration, not architecture: what VideoSession adds to the object-present
    # logit of tracked frames in a time-lapse (t) and in a z-stack (z) when it is told the
    # kind of stack. 0, as in the official models, tracks exactly as the official code. A
    # trained model may carry values chosen on its validation set (napari-sam2-cells does).
    presence_bias_t: float = 0.0
    presence_bias_z: float = 0.0

    @property
    def embedding_size(self) -> int:
        """Side of the lowest-resolution feature map (64 for 1024 inputs)."""
        return self.image_size // self.backbone_stride

    @property
    def low_res_mask_size(self) -> int:
        """Side of the decoder's mask logits (256 for 1024 inputs)."""
        return 4 * self.embedding_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def presence_bias(self, stack_kind: str | None) -> float:
        """The calibrated object-present logit offset for a ``"t"`` or ``"z"`` stack (0 for None)."""
        if stack_kind is None:
            return 0.0
        if stack_kind not in ("t", "z"):
            raise ValueError(f"the kind of stack is 't' (time-lapse) or 'z' (z-stack), got {stack_kind!r}")
        return self.presence_bias_t if stack_kind == "t" else self.presence_bias_z

    def architecture(self) -> "SAM2Config":
        """This config without its inference calibration (what two trainable networks share)."""
        return dataclasses.replace(self, presence_bias_t=0.0, presence_bias_z=0.0)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SAM2Config":
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SAM2Config fields: {', '.join(unknown)}")
        trunk = data.pop("trunk", {})
        if isinstance(trunk, dict):
            trunk_known = {f.name for f in dataclasses.fields(HieraConfig)}
            bad = sorted(set(trunk) - trunk_known)
            if bad:
                raise ValueError(f"unknown HieraConfig fields: {', '.join(bad)}")
            trunk = HieraConfig(**{k: _tuples(v) for k, v in trunk.items()})
        return cls(trunk=trunk, **{k: _tuples(v) for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> "SAM2Config":
        try:
            data = json.loads(text)
        except RecursionError:  # a ValueError like json's own, so callers report the file
            raise ValueError("not valid JSON (nested too deeply)") from None
        if not isinstance(data, dict):
            raise ValueError(f"a SAM2Config JSON is an object {{...}}, got {type(data).__name__}")
        return cls.from_dict(data)


def _tuples(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# The official SAM 2.0 configs differ from 2.1 only in how object pointers get
# their temporal position and in the spatial "no object" memory embedding.
_SAM20 = dict(
    no_obj_embed_spatial=False,
    add_tpos_enc_to_obj_ptrs=False,
    proj_tpos_enc_in_obj_ptrs=False,
    use_signed_tpos_enc_to_obj_ptrs=False,
)

_TRUNKS: dict[str, HieraConfig] = {
    "hiera_tiny": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9)),
    "hiera_small": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13)),
    "hiera_base_plus": HieraConfig(
        embed_dim=112,
        num_heads=2,
        stages=(2, 3, 16, 3),
        global_att_blocks=(12, 16, 20),
        window_pos_embed_bkg_spatial_size=(14, 14),
    ),
    "hiera_large": HieraConfig(
        embed_dim=144,
        num_heads=2,
        stages=(2, 6, 36, 4),
        global_att_blocks=(23, 33, 43),
        window_spec=(8, 4, 16, 8),
    ),
}


def _official_configs() -> dict[str, SAM2Config]:
    configs = {}
    for size, trunk in _TRUNKS.items():
        configs[f"sam2.1_{size}"] = SAM2Config(name=f"sam2.1_{size}", trunk=trunk)
        configs[f"sam2_{size}"] = SAM2Config(name=f"sam2_{size}", trunk=trunk, **_SAM20)
    return configs


#: The eight official variants, by the stem of their checkpoint file name.
CONFIGS: dict[str, SAM2Config] = _official_configs()


#: Our own small SAM 2 (SAM 2.1 layout), trained on synthetic fluorescence microscopy by
#: ``factory/train.py`` (in the repository) and shipped with the package: 256 x 256
#: input, a 4-stage Hiera of width 32, full-width (256) prompt encoder and decoder, 2
#: memory-attention layers.
CELLS_CONFIG = SAM2Config(
    name="napari-sam2-cells",
    image_size=256,
    trunk=HieraConfig(
        embed_dim=32, num_heads=1, stages=(1, 2, 5, 1), global_att_blocks=(5, 7), window_spec=(8, 4, 8, 8)
    ),
    decoder_mlp_dim=1024,
    memory_attention_layers=2,
    memory_attention_ffn_dim=1024,
)
