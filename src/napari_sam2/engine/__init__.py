"""Sessions and predictors built on the stateless model (no Qt, no napari)."""

from .image import ImagePredictor

__all__ = ["ImagePredictor"]
