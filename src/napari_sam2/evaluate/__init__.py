"""How well a model segments and tracks labelled objects from the clicks a user would make.

Three measurements share one click rule, :func:`click_point` (the pixel deepest inside
the object, as a person clicks it), and one IoU rule, :func:`mask_iou`:

* :func:`evaluate_clicks` -- SAM's one-click protocol on 2-D images: one positive click
  per object, three candidates, the one with the highest predicted IoU is the answer;
* :func:`baseline_clicks` -- a classical pipeline on the same objects and clicks (Otsu
  threshold + distance-transform watershed, the region under the click);
* :func:`evaluate_tracking` -- one click on a stack, propagated both ways, per-frame IoU
  over every frame; then one correction click on the worst frame and a re-propagation.

All three return plain dicts of numbers and lists (JSON-ready)::

    >>> from napari_sam2.weights import load_model
    >>> model = load_model("napari-sam2-cells")
    >>> r = evaluate_clicks(model, images, labels)       # images, labels: lists of (H, W)
    >>> r["mean_iou"], r["share_085"], r["count"]
    >>> t = evaluate_tracking(model, [(stack, stack_labels)])
    >>> t["mean_before"], t["mean_after"]
"""

from .clicks import baseline_clicks, evaluate_clicks
from .metrics import GOOD_IOU, MIN_AREA, bootstrap_interval, click_point, correction_click, mask_iou
from .tracking import evaluate_tracking, frames_past_division, lost_frames, object_speed

__all__ = [
    "GOOD_IOU",
    "MIN_AREA",
    "baseline_clicks",
    "bootstrap_interval",
    "click_point",
    "correction_click",
    "evaluate_clicks",
    "evaluate_tracking",
    "frames_past_division",
    "lost_frames",
    "mask_iou",
    "object_speed",
]
