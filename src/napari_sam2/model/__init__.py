"""The SAM 2 network in plain PyTorch (no numpy, no Qt)."""

from .config import CONFIGS, HieraConfig, SAM2Config
from .sam2 import SAM2, ImageFeatures, TrackOutput

__all__ = ["CONFIGS", "HieraConfig", "SAM2", "SAM2Config", "ImageFeatures", "TrackOutput"]
