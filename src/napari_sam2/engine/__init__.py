"""Sessions and predictors built on the stateless model (no Qt, no napari).

The names below are imported lazily, so the torch-free modules of this package (``runs``,
``prompts``) can be imported without paying for torch.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .features import FeatureCache
    from .frames import FrameSource
    from .image import ImagePredictor
    from .results import FrameResult
    from .session import VideoSession

_LAZY = {
    "FeatureCache": "features",
    "FrameSource": "frames",
    "ImagePredictor": "image",
    "FrameResult": "results",
    "VideoSession": "session",
}

__all__ = ["FeatureCache", "FrameResult", "FrameSource", "ImagePredictor", "VideoSession"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
