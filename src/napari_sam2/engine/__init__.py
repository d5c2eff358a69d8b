"""Sessions and predictors built on the stateless model (no Qt, no napari)."""

from .features import FeatureCache
from .frames import FrameSource
from .image import ImagePredictor
from .results import FrameResult
from .session import VideoSession

__all__ = ["FeatureCache", "FrameResult", "FrameSource", "ImagePredictor", "VideoSession"]
