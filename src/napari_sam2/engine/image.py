"""ImagePredictor: click or box -> mask on one image, mirroring SAM2ImagePredictor."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..model.mask_decoder import BlockedHighRes
from ..model.prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT
from ..model.sam2 import SAM2, ImageFeatures
from .preprocess import check_image, to_model_input, upscale_logits
from .prompts import as_numbers, check_box, check_points

#: low-resolution logits are clamped to this range when returned (as the official does)
LOGIT_CLAMP = 32.0


class ImagePredictor:
    """Encode an image once, then predict masks from prompts in milliseconds.

    Parameters
    ----------
    model : SAM2
        A loaded :class:`~napari_sam2.model.SAM2` (see ``load_model``).
    mask_threshold : float, default 0.0
        Logit threshold that turns logits into masks.

    Examples
    --------
    >>> predictor = ImagePredictor(load_model("sam2.1_hiera_tiny"))
    >>> predictor.set_image(image)          # (H, W), (H, W, C); any dtype
    >>> masks, scores, low_res = predictor.predict(point_coords=[[120, 80]], point_labels=[1])
    """

    def __init__(self, model: SAM2, *, mask_threshold: float = 0.0) -> None:
        self.model = model
        self.mask_threshold = mask_threshold
        self.reset_image()

    def reset_image(self) -> None:
        """Forget the current image and its features."""
        self.features: ImageFeatures | None = None
        self.original_size: tuple[int, int] | None = None
        self._embed: torch.Tensor | None = None
        self._high_res: BlockedHighRes | None = None

    @property
    def is_image_set(self) -> bool:
        return self.features is not None

    @property
    def device(self) -> torch.device:
        return self.model.device

    @torch.inference_mode()
    def set_image(self, image: Any, *, window: np.ndarray | None = None) -> None:
        """Compute the embedding of ``image``.

        Parameters
        ----------
        image : array-like
            (H, W) or (H, W, C) array, C in 1..4, any numeric dtype. uint8 RGB gets exactly
            the official preprocessing; see ``engine.preprocess``.
        window : np.ndarray, optional
            Fixed (low, high) intensity window (per channel: (C, 2)) for non-uint8 data
            instead of the per-image percentiles.
        """
        arr = check_image(image)
        self.reset_image()
        x = to_model_input(arr, self.model.config.image_size, window=window)
        x = x.to(self.device, self.model.dtype)
        self.set_features(self.model.encode_image(x), arr.shape[:2])

    def set_features(self, features: ImageFeatures, original_size: tuple[int, int]) -> None:
        """Use precomputed features (e.g. from a feature cache) for an image of ``original_size``."""
        self.features = features
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self._embed = self.model.image_embedding(features)
        self._high_res = BlockedHighRes.from_maps(features.high_res)  # per-image layout work, done once

    @torch.inference_mode()
    def predict(
        self,
        point_coords: Any = None,
        point_labels: Any = None,
        box: Any = None,
        mask_input: Any = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for prompts on the current image.

        Parameters
        ----------
        point_coords : array-like, optional
            (N, 2) points as (x, y) pixels of the original image.
        point_labels : array-like, optional
            (N,) labels, 1 = object, 0 = background.
        box : array-like, optional
            (4,) box x0, y0, x1, y1 in pixels.
        mask_input : array-like, optional
            (1, 256, 256) or (256, 256) low-resolution logits from a previous ``predict``
            (side = 4 x the embedding size).
        multimask_output : bool, default True
            Return 3 candidates (best for a single click).
        return_logits : bool, default False
            Return logits instead of boolean masks.

        Returns
        -------
        masks : np.ndarray
            (C, H, W) bool (or float32 logits), with C = 3 or 1.
        iou_scores : np.ndarray
            (C,) predicted IoU.
        low_res_logits : np.ndarray
            (C, 256, 256) clamped to +-32.
        """
        if self.features is None or self.original_size is None or self._embed is None:
            raise RuntimeError("call set_image(image) before predict()")
        h, w = self.original_size
        s = self.model.config.image_size
        coords, labels = check_points(point_coords, point_labels, (h, w))
        box_xyxy = check_box(box, (h, w))
        mask = self._check_mask(mask_input)
        if coords is None and box_xyxy is None and mask is None:
            raise InputError("no prompts: give point_coords/point_labels, a box, or a mask_input")

        scale = np.array([s / w, s / h], dtype=np.float32)
        parts_xy, parts_lab = [], []
        if box_xyxy is not None:
            parts_xy.append(box_xyxy.reshape(2, 2) * scale)
            parts_lab.append(np.array([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], dtype=np.int32))
        if coords is not None and labels is not None:
            parts_xy.append(coords * scale)
            parts_lab.append(labels)
        pts = lab = None
        if parts_xy:
            pts = torch.from_numpy(np.concatenate(parts_xy)[None]).to(self.device)
            lab = torch.from_numpy(np.concatenate(parts_lab)[None]).to(self.device)

        model = self.model
        out = model.decode(self._embed, self._high_res, pts, lab, mask)
        low, iou = model.select(out, multimask_output)
        masks = upscale_logits(low, (h, w))[0]
        if not return_logits:
            masks = masks > self.mask_threshold
        low_res = low[0].float().clamp(-LOGIT_CLAMP, LOGIT_CLAMP)
        return masks.cpu().numpy(), iou[0].float().cpu().numpy(), low_res.cpu().numpy()

    def _check_mask(self, mask_input: Any) -> torch.Tensor | None:
        if mask_input is None:
            return None
        side = self.model.config.low_res_mask_size
        m = as_numbers(mask_input, "mask_input", f"(1, {side}, {side})").astype(np.float32)
        if m.ndim == 2:
            m = m[None]
        if m.shape != (1, side, side):
            raise InputError(
                f"mask_input must have shape (1, {side}, {side}) (low-resolution logits from a "
                f"previous predict), got {np.asarray(mask_input).shape}"
            )
        if not np.isfinite(m).all():
            raise InputError("mask_input contains NaN or infinite values")
        return torch.from_numpy(m[None]).to(self.device, self.model.dtype)
