"""Sessions and predictors built on the stateless model (no Qt, no napari)."""

from .features import FeatureCache
from .frames import FrameSource
from .image import ImagePredictor
from .session import FrameResult, VideoSession

__all__ = ["FeatureCache", "FrameResult", "FrameSource", "ImagePredictor", "VideoSession"]
