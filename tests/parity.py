"""Helpers for the parity tests: find fixture directories and compare outputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_sam2.model.config import HieraConfig, SAM2Config

FIXTURES = Path(__file__).parent / "fixtures"

#: a tiny random-weight config for tests that build their own checkpoints
SMALL_CONFIG = SAM2Config(
    name="test_small",
    image_size=256,
    d_model=64,
    mem_dim=32,
    trunk=HieraConfig(
        embed_dim=16, num_heads=1, stages=(1, 2, 2, 1), global_att_blocks=(3, 5), window_spec=(8, 4, 4, 2)
    ),
    memory_attention_layers=2,
    memory_attention_ffn_dim=128,
)


def fixture_dirs() -> list[Path]:
    """The committed small fixtures plus any listed in $NAPARI_SAM2_EXTRA_FIXTURES.

    Extra fixtures (e.g. a full-size sam2.1_hiera_tiny made by
    ``tests/fixtures/make_fixtures.py --config ... --out DIR``) are separated by os.pathsep.
    """
    dirs = sorted(p for p in FIXTURES.glob("small_*") if (p / "checkpoint.pt").exists())
    extra = os.environ.get("NAPARI_SAM2_EXTRA_FIXTURES", "")
    dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    return dirs


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; two empty masks count as identical."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)
