"""Fill small background holes inside predicted masks (SAM 2's video post-processing).

The official code does this with a CUDA-only connected-components kernel and skips it
elsewhere; here it runs on any device with scipy's labelling (8-connectivity, as the
official kernel).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)
#: logit given to filled holes (small and positive, as the official)
HOLE_FILL_LOGIT = 0.1


def fill_holes(logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Set background components (logit <= 0) of area <= ``max_area`` to a small positive logit.

    Arguments:
        logits: (B, 1, h, w) mask logits.
        max_area: largest hole area (pixels) to fill.
    """
    if max_area <= 0:
        return logits
    background = (logits <= 0).cpu().numpy()
    fill = np.zeros_like(background)
    for i in range(background.shape[0]):
        labels, n = ndimage.label(background[i, 0], structure=_EIGHT)
        if n == 0:
            continue
        areas = np.bincount(labels.ravel())
        small = areas <= max_area
        small[0] = False
        fill[i, 0] = small[labels]
    if not fill.any():
        return logits
    return torch.where(torch.from_numpy(fill).to(logits.device), torch.tensor(HOLE_FILL_LOGIT, dtype=logits.dtype), logits)
