"""Segment everything: a grid of point prompts -> filtered, de-duplicated masks (one 2-D image).

:class:`AutomaticMaskGenerator` gives the masks of the official ``SAM2AutomaticMaskGenerator``
(``sam2`` 1.1.0) on the same weights, with the same settings and defaults. The steps:

1. **Crops.** Layer 0 is the whole image; layer ``i >= 1`` cuts it into ``2**i x 2**i`` crops that
   overlap by ``int(crop_overlap_ratio * short_side * 2 / 2**i)`` pixels. Each crop is encoded once.
2. **Point grid.** Layer ``i`` uses ``int(points_per_side / crop_n_points_downscale_factor**i)``
   points per side, at the centres of a regular grid over the crop; they are decoded
   ``points_per_batch`` at a time as single positive clicks (3 candidates each with
   ``multimask_output``, else 1 -- with SAM 2's fallback to the best candidate when the single
   mask is unstable).
3. **Refinement** (``use_m2m``): every candidate is decoded once more with its own clamped
   low-resolution logits as mask prompt (single-mask output).
4. **Small regions** (``min_mask_region_area > 0``): on the *low-resolution* logits (4E x 4E,
   256 x 256 for the official 1024-pixel models), background components (logit <= 0) of at most
   that many low-resolution pixels become foreground (logit 10) and foreground components that
   small become background (logit -10), 8-connected -- what the official generator does through
   its image predictor's ``max_hole_area`` / ``max_sprinkle_area``. The official needs its CUDA
   extension for this step and silently skips it without one; here it runs on any device.
5. **Filters**, per candidate: predicted IoU > ``pred_iou_thresh`` (when > 0); logits upsampled
   bilinearly to the crop size; stability score = area(logit > t + o) / area(logit > t - o) with
   t = ``mask_threshold``, o = ``stability_score_offset``, kept when >= ``stability_score_thresh``
   (when > 0); mask = logit > t; masks whose box comes within 20 pixels of a crop edge that is
   not an image edge are dropped.
6. **De-duplication**: greedy box NMS within each crop (score = predicted IoU, IoU >
   ``box_nms_thresh`` suppresses), then, with several crops, across crops (score = 1 / crop area,
   so masks from smaller crops win; IoU > ``crop_nms_thresh`` suppresses). Ties in score keep
   their earlier position (a stable sort, as torchvision's CPU kernel).

Memory: per batch only the low-resolution logits are kept whole; candidates are filtered by
predicted IoU before upsampling, upsampled a few at a time, and stored cut to their boxes until
NMS has chosen; full-size masks are made only for the returned records.

Images: (H, W) or (H, W, C) of any numeric dtype; uint8 RGB gets exactly the official
preprocessing, other dtypes one percentile window computed on the whole image and shared by all
crops (see ``engine.preprocess``). A constant image (every channel one value, e.g. all zeros)
yields no masks without running the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..errors import InputError
from ..model.mask_decoder import BlockedHighRes
from ..model.sam2 import SAM2
from .image import LOGIT_CLAMP, ImagePredictor
from .preprocess import check_image, percentile_window

#: a mask whose box comes this close (pixels) to an inner crop edge is dropped
CROP_EDGE_TOLERANCE = 20.0
#: logits given to filled holes / removed specks by the small-region step (as the official)
REGION_FILL_LOGIT = 10.0
#: candidate masks upsampled to full crop resolution at once
_UPSAMPLE_CHUNK = 16
#: 8-connectivity within each mask of a (K, h, w) stack, none across masks
_EIGHT_PER_MASK = np.zeros((3, 3, 3), dtype=bool)
_EIGHT_PER_MASK[1] = True


@dataclass(frozen=True)
class MaskRecord:
    """One mask found by :class:`AutomaticMaskGenerator` (the official record's fields).

    Attributes
    ----------
    mask : np.ndarray
        (H, W) bool, the mask on the whole image.
    area : int
        Number of pixels in ``mask``.
    bbox : tuple of int
        (x, y, w, h) as the official: x, y the first column and row of the mask, w = last column
        - x and h = last row - y (so a one-pixel mask has w = h = 0); (0, 0, 0, 0) if empty.
    predicted_iou : float
        The model's predicted IoU of the mask.
    stability_score : float
        Area at logit > t + offset over area at logit > t - offset.
    point_coords : np.ndarray
        (1, 2) float (x, y) image pixels of the grid point that gave the mask.
    crop_box : tuple of int
        (x, y, w, h) of the crop the mask was predicted in.
    """

    mask: np.ndarray
    area: int
    bbox: tuple[int, int, int, int]
    predicted_iou: float
    stability_score: float
    point_coords: np.ndarray
    crop_box: tuple[int, int, int, int]


@dataclass
class _Found:
    """Masks kept so far, each cut to its box (crop coordinates until uncropped)."""

    boxes: list[torch.Tensor]  # (k, 4) int64 x0, y0, x1, y1 (inclusive pixel indices)
    pieces: list[np.ndarray]  # bool (y1 - y0 + 1, x1 - x0 + 1) each
    iou: list[torch.Tensor]
    stability: list[torch.Tensor]
    points: list[torch.Tensor]  # (k, 2) float32 pixels

    @classmethod
    def empty(cls) -> "_Found":
        return cls([], [], [], [], [])

    def __len__(self) -> int:
        return len(self.pieces)

    def cat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.pieces:
            z = torch.zeros(0)
            return torch.zeros(0, 4, dtype=torch.long), z, z, torch.zeros(0, 2)
        return torch.cat(self.boxes), torch.cat(self.iou), torch.cat(self.stability), torch.cat(self.points)


class AutomaticMaskGenerator:
    """Masks for everything in an image from a grid of clicks, as SAM 2's automatic generator.

    Parameters
    ----------
    model : SAM2 or ImagePredictor
        The network (an :class:`ImagePredictor` is made for it), or a predictor to use.
    points_per_side : int, default 32
        Grid points along each side of the image (``points_per_side**2`` clicks in layer 0).
    points_per_batch : int, default 64
        Clicks decoded together (memory vs speed; the result does not depend on it).
    pred_iou_thresh : float, default 0.8
        Keep masks whose predicted IoU is above this, in [0, 1] (0 disables the filter).
    stability_score_thresh : float, default 0.95
        Keep masks whose stability score is at least this, in [0, 1] (0 disables the filter).
    stability_score_offset : float, default 1.0
        Logit offset of the stability score (>= 0).
    mask_threshold : float, default 0.0
        Logit threshold of the masks.
    box_nms_thresh : float, default 0.7
        Box IoU above which a lower-scored mask of the same crop is dropped, in [0, 1].
    crop_n_layers : int, default 0
        Crop layers besides the whole image (layer i has 4**i crops).
    crop_nms_thresh : float, default 0.7
        Box IoU above which a mask from a larger crop is dropped, in [0, 1].
    crop_overlap_ratio : float, default 512 / 1500
        Overlap of neighbouring crops in layer 1 as a fraction of the short side, in [0, 1).
    crop_n_points_downscale_factor : int, default 1
        Layer i uses ``points_per_side / factor**i`` points per side.
    min_mask_region_area : int, default 0
        Fill holes and remove specks of at most this many *low-resolution* pixels (0: off).
    use_m2m : bool, default False
        Refine each mask once with its own logits as mask prompt.
    multimask_output : bool, default True
        Three candidates per click instead of one.

    Examples
    --------
    >>> gen = AutomaticMaskGenerator(load_model("sam2.1_hiera_tiny"), points_per_side=16)
    >>> records = gen.generate(image)
    >>> labels = label_image(records, image.shape[:2])
    """

    def __init__(
        self,
        model: SAM2 | ImagePredictor,
        *,
        points_per_side: int = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        min_mask_region_area: int = 0,
        use_m2m: bool = False,
        multimask_output: bool = True,
    ) -> None:
        self.points_per_side = _integer("points_per_side", points_per_side, 1)
        self.points_per_batch = _integer("points_per_batch", points_per_batch, 1)
        self.pred_iou_thresh = _real("pred_iou_thresh", pred_iou_thresh, 0.0, 1.0)
        self.stability_score_thresh = _real("stability_score_thresh", stability_score_thresh, 0.0, 1.0)
        self.stability_score_offset = _real("stability_score_offset", stability_score_offset, 0.0, math.inf)
        self.mask_threshold = _real("mask_threshold", mask_threshold, -math.inf, math.inf)
        self.box_nms_thresh = _real("box_nms_thresh", box_nms_thresh, 0.0, 1.0)
        self.crop_n_layers = _integer("crop_n_layers", crop_n_layers, 0)
        self.crop_nms_thresh = _real("crop_nms_thresh", crop_nms_thresh, 0.0, 1.0)
        self.crop_overlap_ratio = _real("crop_overlap_ratio", crop_overlap_ratio, 0.0, 1.0, high_open=True)
        self.crop_n_points_downscale_factor = _integer(
            "crop_n_points_downscale_factor", crop_n_points_downscale_factor, 1
        )
        self.min_mask_region_area = _integer("min_mask_region_area", min_mask_region_area, 0)
        self.use_m2m = _flag("use_m2m", use_m2m)
        self.multimask_output = _flag("multimask_output", multimask_output)
        self.point_grids = []
        for layer in range(self.crop_n_layers + 1):
            n = int(self.points_per_side / self.crop_n_points_downscale_factor**layer)
            if n < 1:
                raise InputError(
                    f"crop_n_points_downscale_factor={self.crop_n_points_downscale_factor} leaves no points in crop "
                    f"layer {layer} (points_per_side={self.points_per_side}, crop_n_layers={self.crop_n_layers})"
                )
            self.point_grids.append(point_grid(n))
        self.predictor = model if isinstance(model, ImagePredictor) else ImagePredictor(model)

    # ------------------------------------------------------------------ public
    @torch.inference_mode()
    def generate(self, image: Any) -> list[MaskRecord]:
        """Find the masks of ``image``.

        Parameters
        ----------
        image : array-like
            (H, W) or (H, W, C) array, C in 1..4, any numeric dtype.

        Returns
        -------
        list of MaskRecord
            In the official order (by crop NMS, then by predicted IoU within a crop). Empty for
            a constant image.
        """
        arr = check_image(image)
        h, w = arr.shape[:2]
        flat = arr.reshape(h * w, -1)
        if (flat == flat[:1]).all():
            return []
        window = None if arr.dtype == np.uint8 else percentile_window(arr)
        crops, layers = crop_boxes((h, w), self.crop_n_layers, self.crop_overlap_ratio)

        boxes, iou, stab, points, pieces, crop_of = [], [], [], [], [], []
        for index, (crop, layer) in enumerate(zip(crops, layers)):
            found = self._process_crop(arr, crop, layer, (h, w), window)
            b, i, s, p = found.cat()
            x0, y0 = crop[0], crop[1]
            boxes.append(b + torch.tensor([[x0, y0, x0, y0]]))
            points.append(p + torch.tensor([[x0, y0]]))
            iou.append(i)
            stab.append(s)
            pieces.extend(found.pieces)
            crop_of.extend([index] * len(found))
        all_boxes, all_iou, all_stab, all_points = (torch.cat(t) for t in (boxes, iou, stab, points))
        crop_index = torch.tensor(crop_of, dtype=torch.long)
        order = torch.arange(len(pieces))
        if len(crops) > 1 and len(pieces):
            crop_t = torch.tensor(crops, dtype=torch.long)[crop_index]
            scores = 1 / box_area(crop_t)  # smaller crops first
            order = nms(all_boxes.float(), scores, self.crop_nms_thresh)

        records = []
        for k in order.tolist():
            x0, y0, x1, y1 = (int(v) for v in all_boxes[k])
            mask = np.zeros((h, w), dtype=bool)
            piece = pieces[k]
            mask[y0 : y0 + piece.shape[0], x0 : x0 + piece.shape[1]] = piece
            cx0, cy0, cx1, cy1 = crops[int(crop_index[k])]
            records.append(
                MaskRecord(
                    mask=mask,
                    area=int(piece.sum()),
                    bbox=(x0, y0, x1 - x0, y1 - y0),
                    predicted_iou=float(all_iou[k]),
                    stability_score=float(all_stab[k]),
                    point_coords=all_points[k].double().numpy()[None],
                    crop_box=(cx0, cy0, cx1 - cx0, cy1 - cy0),
                )
            )
        return records

    # ------------------------------------------------------------------ steps
    def _process_crop(
        self,
        image: np.ndarray,
        crop: list[int],
        layer: int,
        image_hw: tuple[int, int],
        window: np.ndarray | None,
    ) -> _Found:
        x0, y0, x1, y1 = crop
        predictor, model = self.predictor, self.predictor.model
        predictor.set_image(image[y0:y1, x0:x1], window=window)
        features = predictor.features
        assert features is not None
        embed = model.image_embedding(features)
        high_res = BlockedHighRes.from_maps(features.high_res)
        ch, cw = y1 - y0, x1 - x0
        size = model.config.image_size
        device = model.device

        points_px = torch.as_tensor(self.point_grids[layer] * np.array([cw, ch]), dtype=torch.float32)
        model_xy = points_px.clone()
        model_xy[:, 0] = model_xy[:, 0] / cw
        model_xy[:, 1] = model_xy[:, 1] / ch
        model_xy = model_xy * size

        def decode(xy: torch.Tensor, mask_prompt: torch.Tensor | None, multimask: bool):
            labels = torch.ones(xy.shape[0], 1, dtype=torch.int32, device=device)
            out = model.decode(embed, high_res, xy[:, None, :].to(device), labels, mask_prompt)
            return model.select(out, multimask)

        found = _Found.empty()
        for start in range(0, points_px.shape[0], self.points_per_batch):
            sl = slice(start, start + self.points_per_batch)
            low, iou = decode(model_xy[sl], None, self.multimask_output)
            m = low.shape[1]
            low = low.flatten(0, 1)[:, None]  # (B*M, 1, h, w)
            iou = iou.flatten(0, 1)
            pts = points_px[sl].repeat_interleave(m, dim=0)
            if self.use_m2m:
                xy = model_xy[sl].repeat_interleave(m, dim=0)
                prompt = low.clamp(-LOGIT_CLAMP, LOGIT_CLAMP)
                parts = [
                    decode(xy[i : i + self.points_per_batch], prompt[i : i + self.points_per_batch], False)
                    for i in range(0, xy.shape[0], self.points_per_batch)
                ]
                low = torch.cat([p[0] for p in parts])
                iou = torch.cat([p[1] for p in parts])[:, 0]
            iou = iou.float().cpu()
            if self.pred_iou_thresh > 0.0:
                keep = iou > self.pred_iou_thresh
                low, iou, pts = low[keep.to(low.device)], iou[keep], pts[keep]
            if self.min_mask_region_area > 0 and low.shape[0]:
                low = remove_small_regions(low, self.min_mask_region_area)
            self._filter_full_res(low, iou, pts, (ch, cw), crop, image_hw, found)
        if not len(found):
            return found
        b, i, s, p = found.cat()
        keep = nms(b.float(), i, self.box_nms_thresh)
        return _Found([b[keep]], [found.pieces[k] for k in keep.tolist()], [i[keep]], [s[keep]], [p[keep]])

    def _filter_full_res(
        self,
        low: torch.Tensor,
        iou: torch.Tensor,
        pts: torch.Tensor,
        crop_hw: tuple[int, int],
        crop: list[int],
        image_hw: tuple[int, int],
        found: _Found,
    ) -> None:
        """Upsample candidates a few at a time; stability filter, threshold, box, edge filter."""
        t, off = self.mask_threshold, self.stability_score_offset
        crop_t = torch.tensor(crop, dtype=torch.float32)
        image_t = torch.tensor([0, 0, image_hw[1], image_hw[0]], dtype=torch.float32)
        offset = torch.tensor([crop[0], crop[1], crop[0], crop[1]])
        for start in range(0, low.shape[0], _UPSAMPLE_CHUNK):
            sl = slice(start, start + _UPSAMPLE_CHUNK)
            logits = F.interpolate(low[sl].float(), size=crop_hw, mode="bilinear", align_corners=False)[:, 0]
            stab = stability_score(logits, t, off).cpu()
            keep = torch.ones_like(stab, dtype=torch.bool)
            if self.stability_score_thresh > 0.0:
                keep = stab >= self.stability_score_thresh
            masks = (logits > t).cpu()[keep]
            boxes = mask_boxes(masks)
            page = (boxes + offset).float()
            near_crop = (page - crop_t).abs() <= CROP_EDGE_TOLERANCE
            near_image = (page - image_t).abs() <= CROP_EDGE_TOLERANCE
            inside = ~(near_crop & ~near_image).any(dim=1)
            boxes, masks = boxes[inside], masks[inside]
            masks_np = masks.numpy()
            for box, mask in zip(boxes.tolist(), masks_np):
                bx0, by0, bx1, by1 = box
                found.pieces.append(mask[by0 : by1 + 1, bx0 : bx1 + 1].copy())
            found.boxes.append(boxes)
            found.iou.append(iou[sl][keep][inside])
            found.stability.append(stab[keep][inside])
            found.points.append(pts[sl][keep][inside])


# ---------------------------------------------------------------------- building blocks
def point_grid(n: int) -> np.ndarray:
    """(n*n, 2) points (x, y) in [0, 1] at the centres of an n x n grid, x varying fastest."""
    half_step = 1 / (2 * n)
    centres = np.linspace(half_step, 1 - half_step, n)
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def crop_boxes(
    image_hw: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes [x0, y0, x1, y1] (x1, y1 exclusive) and their layers; the whole image first.

    Layer i >= 1 has 2**i x 2**i crops (x0 varying slowest) of side ceil((overlap * (n - 1) + L) / n)
    with overlap = int(overlap_ratio * short side * 2 / n), clipped to the image.
    """
    h, w = image_hw
    boxes, layers = [[0, 0, w, h]], [0]
    for layer in range(1, n_layers + 1):
        n = 2**layer
        overlap = int(overlap_ratio * min(h, w) * (2 / n))
        cw = int(math.ceil((overlap * (n - 1) + w) / n))
        ch = int(math.ceil((overlap * (n - 1) + h) / n))
        for x0 in (int((cw - overlap) * i) for i in range(n)):
            for y0 in (int((ch - overlap) * j) for j in range(n)):
                boxes.append([x0, y0, min(x0 + cw, w), min(y0 + ch, h)])
                layers.append(layer)
    return boxes, layers


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """(K, H, W) logits -> (K,) area(logit > t + o) / area(logit > t - o), float32 (NaN if 0/0)."""
    inner = (logits > threshold + offset).flatten(1).sum(1)
    outer = (logits > threshold - offset).flatten(1).sum(1)
    return inner.float() / outer.float()


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(K, H, W) bool -> (K, 4) int64 x0, y0, x1, y1 of the set pixels (inclusive); zeros if empty."""
    k, h, w = masks.shape
    if k == 0:
        return torch.zeros(0, 4, dtype=torch.long)
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # (K, H), (K, W)
    ar_h, ar_w = torch.arange(h), torch.arange(w)
    y0 = torch.where(rows, ar_h, h).min(dim=1).values
    y1 = torch.where(rows, ar_h, -1).max(dim=1).values
    x0 = torch.where(cols, ar_w, w).min(dim=1).values
    x1 = torch.where(cols, ar_w, -1).max(dim=1).values
    out = torch.stack([x0, y0, x1, y1], dim=1)
    return torch.where(rows.any(dim=1)[:, None], out, torch.zeros_like(out))


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) x0, y0, x1, y1 -> (N,) (x1 - x0) * (y1 - y0)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression; indices of the kept boxes by decreasing score.

    Boxes are visited by score (a stable sort: equal scores keep their order); a box is dropped
    when its IoU with an already kept box is above ``iou_threshold``. IoU is computed in the
    boxes' dtype with area (x1 - x0) * (y1 - y0) and compared in float64 (torchvision's CPU
    semantics). O(N^2) memory for the pairwise IoU, fine for the few thousand candidates of a crop.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order]
    area = box_area(b)
    top_left = torch.maximum(b[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    overlaps = (inter / (area[:, None] + area[None, :] - inter)).double() > iou_threshold
    alive = torch.ones(n, dtype=torch.bool)
    kept = []
    for i in range(n):  # over boxes, not pixels
        if alive[i]:
            kept.append(i)
            alive &= ~overlaps[i]
    return order[torch.tensor(kept, dtype=torch.long)]


def remove_small_regions(low: torch.Tensor, max_area: int) -> torch.Tensor:
    """Fill small holes and drop small specks of (K, 1, h, w) logits, 8-connected, at logit 0.

    Background components (logit <= 0) of at most ``max_area`` pixels get logit +10, foreground
    components (logit > 0) that small get -10; both are found on the input logits.
    """
    values = low.float().cpu().numpy()[:, 0]
    change = np.zeros(values.shape, dtype=np.int8)
    for sign, region in ((1, values <= 0), (-1, values > 0)):
        labels, n = ndimage.label(region, structure=_EIGHT_PER_MASK)
        if n == 0:
            continue
        small = np.bincount(labels.ravel()) <= max_area
        small[0] = False
        change[small[labels]] = sign
    if not change.any():
        return low
    change_t = torch.from_numpy(change)[:, None].to(low.device)
    fill = torch.tensor(REGION_FILL_LOGIT, dtype=low.dtype, device=low.device)
    out = torch.where(change_t > 0, fill, low)
    return torch.where(change_t < 0, -fill, out)


def label_image(records: Sequence[MaskRecord], shape: tuple[int, int] | None = None) -> np.ndarray:
    """An instance label image (uint32) from records; label ``i + 1`` is ``records[i]``, 0 is none.

    Overlap rule: smaller objects on top. Masks are painted from the largest area to the
    smallest, so a pixel covered by several masks takes the label of the smallest of them; of
    masks with equal area, the one earlier in ``records`` wins. A mask entirely covered by smaller
    ones does not appear.

    Parameters
    ----------
    records : sequence of MaskRecord
        As returned by :meth:`AutomaticMaskGenerator.generate`.
    shape : (H, W), optional
        Needed when ``records`` is empty; otherwise it must match the masks.
    """
    if shape is None:
        if not records:
            raise InputError("label_image needs a shape when there are no records")
        shape = records[0].mask.shape
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros((h, w), dtype=np.uint32)
    if not records:
        return out
    if any(r.mask.shape != (h, w) for r in records):
        raise InputError(f"label_image: every mask must have shape {(h, w)}")
    areas = np.array([r.area for r in records])
    index = np.arange(len(records))
    for i in np.lexsort((-index, -areas)):  # largest first; among equals the later record first
        out[records[i].mask] = i + 1
    return out


# ---------------------------------------------------------------------- validation
def _integer(name: str, value: Any, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise InputError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _real(name: str, value: Any, low: float, high: float, *, high_open: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < low or v > high or (high_open and v == high):
        if not math.isfinite(low):
            wanted = "a finite number"
        elif not math.isfinite(high):
            wanted = f"a finite number >= {low:g}"
        else:
            wanted = f"in [{low:g}, {high:g}{')' if high_open else ']'}"
        raise InputError(f"{name} must be {wanted}, got {value!r}")
    return v


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)
