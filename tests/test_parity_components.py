"""Each SAM 2 component equals its official twin on the same random weights.

The fixtures hold the official modules' outputs (tests/fixtures/make_fixtures.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam2 import load_model

from .parity import fixture_dirs

ATOL = 1e-4


@pytest.fixture(scope="module", params=fixture_dirs(), ids=lambda p: p.name)
def case(request):
    d = request.param
    model = load_model(d / "checkpoint.pt", config=d / "config.json")
    data = dict(np.load(d / "components.npz"))
    image = np.load(d / "image.npz")
    data.update({k: image[k] for k in image.files if k.startswith("feat_")})
    return model, {k: torch.from_numpy(v) for k, v in data.items()}


def _close(ours: torch.Tensor, ref: torch.Tensor, atol: float = ATOL) -> None:
    assert ours.shape == ref.shape
    scale = max(1.0, ref.abs().max().item())
    err = (ours.float() - ref.float()).abs().max().item()
    assert err <= atol * scale, f"max abs error {err:.3g} (reference scale {scale:.3g})"


@torch.inference_mode()
def test_hiera_trunk_matches_reference(case):
    model, d = case
    outs = model.image_encoder.trunk(d["input_image"])
    assert len(outs) == len([k for k in d if k.startswith("trunk_out_")])
    for i, out in enumerate(outs):
        _close(out, d[f"trunk_out_{i}"])


@torch.inference_mode()
def test_fpn_neck_and_sine_encoding_match_reference(case):
    model, d = case
    n = len([k for k in d if k.startswith("trunk_out_")])
    feats = model.image_encoder.neck([d[f"trunk_out_{i}"] for i in range(n)])
    for i, f in enumerate(feats):
        _close(f, d[f"neck_feat_{i}"])
        _close(model.image_encoder.neck.position_encoding(f), d[f"neck_pos_{i}"])


@torch.inference_mode()
def test_prompt_encoder_matches_reference(case):
    model, d = case
    pe = model.sam_prompt_encoder
    sparse, dense = pe(d["prompt_points"], d["prompt_labels"].int(), None)
    _close(sparse, d["pe_sparse"])
    _close(dense, d["pe_dense"])
    _, dense_mask = pe(d["prompt_points"], d["prompt_labels"].int(), d["pe_mask_in"])
    _close(dense_mask, d["pe_dense_mask"])
    _close(pe.dense_pe(), d["pe_dense_pe"])


@torch.inference_mode()
def test_mask_decoder_matches_reference(case):
    model, d = case
    out = model.sam_mask_decoder(
        d["feat_image_embed"],
        d["pe_dense_pe"],
        d["pe_sparse"],
        d["pe_dense"],
        (d["feat_high_res_0"], d["feat_high_res_1"]),
    )
    # the official multimask output is mask tokens 1..3
    _close(out.masks[:, 1:], d["dec_masks"])
    _close(out.iou[:, 1:], d["dec_iou"])
    _close(out.tokens[:, 1:], d["dec_tokens"])
    _close(out.object_score, d["dec_obj"])


@torch.inference_mode()
def test_memory_encoder_matches_reference(case):
    model, d = case
    feats, pos = model.memory_encoder(d["me_pix_feat"], d["me_mask"])
    _close(feats, d["me_feat"])
    _close(pos, d["me_pos"])


@torch.inference_mode()
def test_memory_attention_with_object_pointers_matches_reference(case):
    model, d = case
    n_ptr = int(d["ma_num_obj_ptr_tokens"])
    out = model.memory_attention(
        d["ma_curr"].transpose(0, 1),  # official is sequence-first (L, B, C)
        d["ma_curr_pos"].transpose(0, 1),
        d["ma_memory"].transpose(0, 1),
        d["ma_memory_pos"].transpose(0, 1),
        n_ptr,
    )
    _close(out, d["ma_out"].transpose(0, 1))

