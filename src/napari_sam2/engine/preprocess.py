"""Images of any microscope dtype -> SAM 2 model input, and masks back to image size.

Rules (documented in docs/index.md):

* ``uint8`` images go through exactly the official preprocessing: ``/255``, bilinear
  antialiased resize to S x S (aspect ratio not kept), ImageNet mean/std.
* Other dtypes (``uint16``, ``int*``, ``float*``, ``bool``) are scaled per channel by a
  robust percentile window (default 1st-99.8th percentile) into [0, 1] and clipped,
  then treated like a ``/255`` uint8 image. A constant channel becomes 0. A fixed
  window can be given instead (e.g. a stack-wide one, so all slices share contrast).
  Floats and 64-bit integers are scaled in float64, so values beyond float32's range
  (1e300) segment like any others; NaN and infinite values are refused.
* Channels: (H, W) and (H, W, 1) are grayscale, copied to R, G and B; (H, W, 2) maps to
  R and G with B = 0; (H, W, 3) is RGB; (H, W, 4) is RGBA and the alpha is dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_PERCENTILES = (1.0, 99.8)
#: above this many pixels per channel, percentiles come from a regular subsample
_PERCENTILE_SAMPLE = 1 << 22


def check_image(image: Any) -> np.ndarray:
    """Return ``image`` as an (H, W) or (H, W, C<=4) numpy array, or raise InputError."""
    arr = np.asarray(image)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
    ):
        raise InputError(f"image must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise InputError(
            f"image must be 2-D (H, W) or (H, W, C), got {arr.ndim}-D with shape {arr.shape}"
        )
    if arr.ndim == 3 and not 1 <= arr.shape[2] <= 4:
        raise InputError(
            f"image has {arr.shape[2]} channels in its last axis (shape {arr.shape}); "
            "expected 1-4 channels (H, W, C) -- pick up to 3 channels first"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"image is empty (shape {arr.shape})")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError("complex-valued images are not supported")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError("image contains NaN or infinite values")
    return arr


def percentile_window(image: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> np.ndarray:
    """Per-channel (low, high) intensity window, shape (C, 2), of an (H, W[, C]) image."""
    arr = image if image.ndim == 3 else image[..., None]
    flat = arr.reshape(-1, arr.shape[-1])
    if flat.shape[0] > _PERCENTILE_SAMPLE:
        flat = flat[:: int(np.ceil(flat.shape[0] / _PERCENTILE_SAMPLE))]
    return np.percentile(flat.astype(np.float64), percentiles, axis=0).T


def to_unit_rgb(image: np.ndarray, window: np.ndarray | None = None) -> torch.Tensor:
    """An image as a (3, H, W) float32 tensor in [0, 1] (rules in the module docstring).

    Arguments:
        image: validated (H, W) or (H, W, C) array.
        window: (C, 2) or (2,) intensity window for non-uint8 data; default percentiles.
    """
    arr = image if image.ndim == 3 else image[..., None]
    if arr.dtype == np.uint8:
        unit = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1).div(255)
    else:
        if arr.dtype == np.bool_:
            arr = arr.astype(np.float32)
        w = percentile_window(arr) if window is None else np.asarray(window, dtype=np.float64)
        w = np.array(np.broadcast_to(w.reshape(-1, 2), (arr.shape[-1], 2)))
        lo, hi = w[:, 0], w[:, 1]
        if arr.dtype.kind == "f" or arr.dtype.itemsize > 4:
            unit = _scale_float64(arr, lo, hi)
        else:
            span = np.where(hi > lo, hi - lo, 1.0)
            data = torch.from_numpy(np.array(arr, dtype=np.float32)).permute(2, 0, 1)  # a writable copy
            lo_t = torch.as_tensor(lo, dtype=torch.float32)[:, None, None]
            span_t = torch.as_tensor(span, dtype=torch.float32)[:, None, None]
            unit = ((data - lo_t) / span_t).clamp_(0.0, 1.0)
            unit[torch.as_tensor(hi <= lo)] = 0.0
    c = unit.shape[0]
    if c == 1:
        unit = unit.expand(3, -1, -1)
    elif c == 2:
        unit = torch.cat([unit, unit.new_zeros(1, *unit.shape[1:])], dim=0)
    elif c == 4:
        unit = unit[:3]
    return unit


def _scale_float64(arr: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> torch.Tensor:
    """(H, W, C) floats or 64-bit integers -> (C, H, W) float32 in [0, 1], computed in float64.

    Cast to float32 first, values beyond its range (a float64 image of 1e300) become inf and
    the scaled image NaN. Halves are scaled, so that even ``hi - lo`` cannot overflow.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        half = np.asarray(arr, dtype=np.float64) * 0.5
        lo_h, hi_h = lo * 0.5, hi * 0.5
        span_h = np.where(hi_h > lo_h, hi_h - lo_h, 1.0)
        unit = np.clip((half - lo_h) / span_h, 0.0, 1.0)
    unit[..., hi <= lo] = 0.0  # a constant channel
    return torch.from_numpy(unit.astype(np.float32)).permute(2, 0, 1)


def to_model_input(
    image: np.ndarray, size: int, *, window: np.ndarray | None = None
) -> torch.Tensor:
    """A validated image -> (1, 3, size, size) normalised float32 model input."""
    unit = to_unit_rgb(image, window)
    resized = F.interpolate(unit[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return normalise(resized)


def normalise(unit: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images in [0, 1] -> ImageNet mean/std normalised model input."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (unit - mean) / std


def upscale_logits(logits: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, M, h, w) low-resolution logits -> (B, M, H, W) bilinear at the image size."""
    return F.interpolate(logits.float(), size=hw, mode="bilinear", align_corners=False)
