"""SAM 2 (Segment Anything 2) in napari, on a clean PyTorch implementation.

The public API is imported lazily, so ``import napari_sam2`` (which napari does to read
the plugin manifest) does not pay for importing torch.
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

# typing.TYPE_CHECKING without importing typing: two thirds of this module's import time,
# and the console script imports this package before its Ctrl-C guard is up (_entry.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .engine.image import ImagePredictor
    from .engine.results import FrameResult
    from .engine.session import VideoSession
    from .weights import load_model

# public name -> module that defines it
_LAZY = {
    "load_model": "napari_sam2.weights",
    "ImagePredictor": "napari_sam2.engine.image",
    "VideoSession": "napari_sam2.engine.session",
    "FrameResult": "napari_sam2.engine.results",
}

__all__ = ["FrameResult", "ImagePredictor", "VideoSession", "__version__", "load_model"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_sam2' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
