"""napari prompt layers <-> :class:`~napari_sam2.io.Prompt`: the one path of a click.

* a Points layer with features ``object`` (int >= 1) and ``positive`` (bool): each point is
  a click on its slice; negative clicks (``positive = False``) mark background;
* a Shapes layer of rectangles with the feature ``object``: each rectangle is a box prompt on
  its slice (one per object and slice).

:func:`collect_prompts` turns both layers into one :class:`Prompt` per (frame, object), in
image pixels as (x, y) (through ``io.napari_to_xy``, the only place x and y are swapped),
plus a list of human-readable problems for prompts it had to skip. Skipped prompts are left in
the layers: nothing the user drew is ever deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..prompt import Prompt, PromptSet, clip_box, inside, napari_to_xy, xy_to_napari
from .stack import StackSpec
from .viewer_layers import unique_name

OBJECT, POSITIVE = "object", "positive"
POINTS_NAME, BOXES_NAME = "SAM2 prompts", "SAM2 boxes"
POSITIVE_SYMBOL, NEGATIVE_SYMBOL = "disc", "x"


@dataclass
class Collected:
    """What the layers hold: one prompt per (frame, object), and what had to be skipped."""

    prompts: PromptSet = field(default_factory=PromptSet)
    problems: list[str] = field(default_factory=list)


def _empty_features(with_positive: bool) -> pd.DataFrame:
    cols = {OBJECT: pd.Series([], dtype=int)}
    if with_positive:
        cols[POSITIVE] = pd.Series([], dtype=bool)
    return pd.DataFrame(cols)


def layer_fits(layer: Any, spec: StackSpec) -> str | None:
    """Why a prompt layer cannot hold prompts for ``spec``'s image, or None if it can."""
    if layer.ndim != spec.ndim:
        return (
            f"layer {layer.name!r} is {layer.ndim}-D but the image {spec.layer_name!r} is {spec.ndim}-D "
            f"{spec.shape}; its prompts were left as they are and a new prompt layer is used"
        )
    if not np.allclose(np.asarray(layer.scale), spec.scale):
        return (
            f"layer {layer.name!r} has scale {tuple(layer.scale)} but the image {spec.layer_name!r} has "
            f"{spec.scale}; its prompts were left as they are and a new prompt layer is used"
        )
    return None


def _adopt_features(layer: Any, with_positive: bool) -> None:
    """Give an adopted layer the feature columns we need, keeping the ones it has."""
    features = layer.features
    changed = False
    if OBJECT not in features:
        features[OBJECT] = np.ones(len(features), dtype=int)
        changed = True
    if with_positive and POSITIVE not in features:
        features[POSITIVE] = np.ones(len(features), dtype=bool)
        changed = True
    if changed:
        layer.features = features
    defaults = {OBJECT: 1, POSITIVE: True} if with_positive else {OBJECT: 1}
    layer.feature_defaults = defaults


def ensure_prompt_layers(viewer: Any, spec: StackSpec, image_layer: Any) -> tuple[Any, Any, list[str]]:
    """Adopt the viewer's prompt layers for this image, or add new ones.

    A layer named ``"SAM2 prompts"`` / ``"SAM2 boxes"`` (or with the image's name in brackets)
    of the right dimensionality and scale is adopted; one that does not fit is left untouched
    and a new layer with a free name is added. Returns (points, shapes, messages).
    """
    messages: list[str] = []
    found: dict[str, Any] = {}
    for kind, base, layer_type in ((POINTS_NAME, POINTS_NAME, "Points"), (BOXES_NAME, BOXES_NAME, "Shapes")):
        wanted = (f"{base} [{spec.layer_name}]", base)
        for name in wanted:
            if name in viewer.layers and type(viewer.layers[name]).__name__ == layer_type:
                why = layer_fits(viewer.layers[name], spec)
                if why is None:
                    found[kind] = viewer.layers[name]
                    break
                messages.append(why)
        if kind in found:
            _adopt_features(found[kind], with_positive=kind == POINTS_NAME)
            continue
        common = dict(
            ndim=spec.ndim,
            scale=spec.scale,
            translate=tuple(np.asarray(image_layer.translate)[-spec.ndim :]),
            name=unique_name(viewer, f"{base} [{spec.layer_name}]"),
        )
        if kind == POINTS_NAME:
            found[kind] = viewer.add_points(
                features=_empty_features(True),
                feature_defaults={OBJECT: 1, POSITIVE: True},
                size=max(3.0, min(spec.hw) / 40),
                border_color="white",
                border_width=0.15,
                **common,
            )
        else:
            found[kind] = viewer.add_shapes(
                features=_empty_features(False),
                feature_defaults={OBJECT: 1},
                face_color="transparent",
                edge_width=max(1.0, min(spec.hw) / 150),
                **common,
            )
    return found[POINTS_NAME], found[BOXES_NAME], messages


# --------------------------------------------------------------------------- layers -> prompts
def _column(layer: Any, name: str, default: Any, dtype: Any) -> np.ndarray:
    if name in layer.features:
        return np.asarray(layer.features[name]).astype(dtype)
    return np.full(len(layer.data), default, dtype=dtype)


def max_object_id(layer: Any) -> int:
    """The highest object id in a prompt layer's features (0 if it has none)."""
    if len(layer.data) and OBJECT in layer.features:
        return int(np.max(layer.features[OBJECT]))
    return 0


def collect_prompts(points: Any, shapes: Any, spec: StackSpec) -> Collected:
    """All prompts of the Points and Shapes layers, one per (frame, object); see the module doc."""
    problems: list[str] = []
    clicks: dict[tuple[int, int], tuple[list[np.ndarray], list[int]]] = {}
    if points is not None and len(points.data):
        coords = np.asarray(points.data, dtype=np.float64)  # (N, ndim) napari data coordinates
        frames = spec.frame_of(coords)
        xy = napari_to_xy(spec.plane_rc(coords))  # (N, 2) (x, y)
        objs = _column(points, OBJECT, 1, int)
        positive = _column(points, POSITIVE, True, bool)
        for i in range(len(coords)):
            where = f"point {i} ({points.name!r})"
            if objs[i] < 1:
                problems.append(f"{where} has object id {objs[i]}; ids start at 1 (skipped)")
                continue
            if not 0 <= frames[i] < spec.n_frames or not inside(*xy[i], spec.hw):
                problems.append(f"{where} lies outside the image {spec.layer_name!r} (skipped)")
                continue
            pts, labs = clicks.setdefault((int(frames[i]), int(objs[i])), ([], []))
            pts.append(xy[i])
            labs.append(int(positive[i]))
    boxes: dict[tuple[int, int], np.ndarray] = {}
    if shapes is not None and len(shapes.data):
        objs = _column(shapes, OBJECT, 1, int)
        for i, (verts, kind) in enumerate(zip(shapes.data, shapes.shape_type, strict=True)):
            where = f"shape {i} ({shapes.name!r})"
            if kind != "rectangle":
                problems.append(f"{where} is a {kind}; only rectangles are box prompts (skipped)")
                continue
            if objs[i] < 1:
                problems.append(f"{where} has object id {objs[i]}; ids start at 1 (skipped)")
                continue
            verts = np.asarray(verts, dtype=np.float64)  # (4, ndim)
            fr = np.unique(spec.frame_of(verts))
            if len(fr) != 1 or not 0 <= fr[0] < spec.n_frames:
                problems.append(f"{where} is not on one slice of the image (skipped)")
                continue
            corners = napari_to_xy(spec.plane_rc(verts))  # (4, 2) (x, y)
            box = clip_box([*corners.min(axis=0), *corners.max(axis=0)], spec.hw)
            if box is None:
                problems.append(f"{where} lies outside the image (skipped)")
                continue
            key = (int(fr[0]), int(objs[i]))
            if key in boxes:
                problems.append(
                    f"{where}: a second box for object {key[1]} on slice {key[0]}; the last one is used"
                )
            boxes[key] = box
    prompts = {}
    for key in sorted(set(clicks) | set(boxes)):
        pts, labs = clicks.get(key, ([], []))
        prompts[key] = Prompt(
            frame=key[0],
            obj_id=key[1],
            points_xy=np.array(pts, dtype=np.float32) if pts else None,
            labels=np.array(labs, dtype=np.int32) if labs else None,
            box=boxes.get(key),
        )
    return Collected(PromptSet(prompts), problems)


# --------------------------------------------------------------------------- prompts -> layers
#: two clicks (or box corners) closer than this, in pixels, are the same (prompt files store float32)
SAME_PLACE = 1e-3


def _drawn(prompts: list[Prompt], spec: StackSpec) -> tuple[list[tuple[np.ndarray, int, bool]], list[tuple[np.ndarray, int]]]:
    """What prompts look like in the layers: (coords, object, positive) per click and
    (4 corners, object) per box, in the layers' data coordinates."""
    clicks, rects = [], []
    for p in prompts:
        if p.points_xy is not None:
            for rc, lab in zip(xy_to_napari(p.points_xy), p.labels, strict=True):
                clicks.append((spec.full_coords(p.frame, rc), p.obj_id, bool(lab)))
        if p.box is not None:
            x0, y0, x1, y1 = (float(v) for v in p.box)
            corners = xy_to_napari([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
            rects.append((np.array([spec.full_coords(p.frame, rc) for rc in corners]), p.obj_id))
    return clicks, rects


def _in_layers(points: Any, shapes: Any) -> tuple[list[tuple[np.ndarray, int, bool]], list[tuple[np.ndarray, int]]]:
    clicks, rects = [], []
    if len(points.data):
        objs, positive = _column(points, OBJECT, 1, int), _column(points, POSITIVE, True, bool)
        clicks = [(np.asarray(c, dtype=float), int(o), bool(p)) for c, o, p in zip(points.data, objs, positive, strict=True)]
    if len(shapes.data):
        objs = _column(shapes, OBJECT, 1, int)
        rects = [
            (np.asarray(v, dtype=float), int(o))
            for v, kind, o in zip(shapes.data, shapes.shape_type, objs, strict=True)
            if kind == "rectangle"
        ]
    return clicks, rects


def _same_click(a: tuple[np.ndarray, int, bool], b: tuple[np.ndarray, int, bool]) -> bool:
    return a[1:] == b[1:] and a[0].shape == b[0].shape and bool(np.all(np.abs(a[0] - b[0]) < SAME_PLACE))


def _same_rect(a: tuple[np.ndarray, int], b: tuple[np.ndarray, int]) -> bool:
    if a[1] != b[1] or a[0].shape != b[0].shape:
        return False
    lo, hi = (a[0].min(axis=0), a[0].max(axis=0)), (b[0].min(axis=0), b[0].max(axis=0))
    return bool(np.all(np.abs(lo[0] - hi[0]) < SAME_PLACE) and np.all(np.abs(lo[1] - hi[1]) < SAME_PLACE))


def prompts_not_in(points: Any, shapes: Any, prompts: list[Prompt], spec: StackSpec) -> tuple[int, int]:
    """How many clicks and boxes of the layers are not among ``prompts`` (what replacing drops)."""
    want_clicks, want_rects = _drawn(prompts, spec)
    have_clicks, have_rects = _in_layers(points, shapes)
    clicks = sum(not any(_same_click(h, w) for w in want_clicks) for h in have_clicks)
    rects = sum(not any(_same_rect(h, w) for w in want_rects) for h in have_rects)
    return clicks, rects


def _blocked(points: Any, shapes: Any) -> Any:
    from contextlib import ExitStack

    stack = ExitStack()
    for layer in (points, shapes):
        stack.enter_context(layer.events.data.blocker())
        stack.enter_context(layer.events.features.blocker())
    return stack


def clear_prompts(points: Any, shapes: Any) -> None:
    """Remove every click and shape from the prompt layers (events blocked; sync afterwards)."""
    with _blocked(points, shapes):
        if len(points.data):
            points.data = np.zeros((0, points.ndim))
            points.features = _empty_features(True)
        if len(shapes.data):
            shapes.selected_data = set(range(len(shapes.data)))
            shapes.remove_selected()


def add_prompts(
    points: Any, shapes: Any, prompts: list[Prompt], spec: StackSpec, current_object: int, *, skip_existing: bool = False
) -> int:
    """Append prompts (e.g. read from a JSON file) to the layers as points and rectangles.

    ``skip_existing``: a click or box that is already in the layers (same slice, place,
    object and sign) is not added again. Data events are blocked while adding; call the
    segmenter's ``sync`` afterwards. Returns the number of points and rectangles added.
    """
    clicks, rects = _drawn(prompts, spec)
    if skip_existing:
        have_clicks, have_rects = _in_layers(points, shapes)
        clicks = [c for c in clicks if not any(_same_click(c, h) for h in have_clicks)]
        rects = [r for r in rects if not any(_same_rect(r, h) for h in have_rects)]
    with _blocked(points, shapes):
        if clicks:
            new = pd.DataFrame({OBJECT: [o for _, o, _ in clicks], POSITIVE: [p for *_, p in clicks]})
            features = pd.concat([points.features, new], ignore_index=True) if len(points.data) else new
            points.data = np.concatenate([np.asarray(points.data).reshape(-1, spec.ndim), [c for c, _, _ in clicks]])
            points.features = features
        for rect, obj in rects:
            shapes.feature_defaults = {OBJECT: obj}
            shapes.add_rectangles(rect)
        shapes.feature_defaults = {OBJECT: current_object}
    return len(clicks) + len(rects)


# --------------------------------------------------------------------------- style
def style_points(points: Any, color_of: Any) -> None:
    """Colour each point like its object's label and draw negative clicks as crosses."""
    n = len(points.data)
    if n == 0:
        return
    objs = _column(points, OBJECT, 1, int)
    positive = _column(points, POSITIVE, True, bool)
    colors = np.array([color_of(int(o)) for o in objs], dtype=np.float32).reshape(n, 4)
    colors[:, 3] = 1.0
    symbols = np.where(positive, POSITIVE_SYMBOL, NEGATIVE_SYMBOL)
    points.face_color = colors
    points.symbol = symbols


def style_boxes(shapes: Any, color_of: Any) -> None:
    n = len(shapes.data)
    if n == 0:
        return
    objs = _column(shapes, OBJECT, 1, int)
    colors = np.array([color_of(int(o)) for o in objs], dtype=np.float32).reshape(n, 4)
    colors[:, 3] = 1.0
    shapes.edge_color = colors
