"""Large 2-D images in tiles: segment everything tile by tile, and clicks that encode one tile.

A lazy image (numpy, ``np.memmap``/``tifffile.memmap``, zarr, dask, or anything with ``shape``,
``dtype`` and slice indexing) is only ever read one window at a time, ``image[y0:y1, x0:x1]``;
it is never turned into one whole array. Memory is bounded by the tile, not by the image.

**The plan** (:func:`plan_tiles`). Each axis is split into ``ceil(length / tile)`` cores of
nearly equal size (none longer than ``tile``); the cores partition the image. A tile's *read
region* is its core grown by ``halo`` pixels on every side, clipped to the image. Tiles are
numbered in raster order (row by row).

**Segment everything** (:func:`segment_tiled`, :func:`segment_tiled_steps`). Tiles are visited
in raster order; each read region is read once and given once to the mask generator (anything
with ``.generate(image) -> list[MaskRecord]``, e.g.
:class:`~napari_sam2.engine.automatic.AutomaticMaskGenerator`). The stitching rule:

1. The tile's records become one label image of the read region with
   :func:`~napari_sam2.engine.automatic.label_image`'s overlap rule (smaller objects on top);
   an object is what remains visible of its record there.
2. **Every pixel is decided by the one tile whose core holds it**: a tile writes its core and
   nothing else. An object with no pixel in the tile's core is dropped by that tile (an object
   entirely inside the halo is left to the tile that owns those pixels).
3. **Stitching across a border**: the halo of a tile overlaps the cores of the tiles visited
   before it, which already hold final labels. In that overlap, an object of the tile and an
   already labelled object are the same instance when their intersection over union there is
   above ``stitch_iou`` (default 0.5); each labelled object is matched to at most one object of
   the tile (the best) and vice versa. A matched object writes its core pixels with the id it
   matched, so a nucleus cut by a border (or by a corner of four tiles) is one instance; an
   unmatched object with pixels in the core gets a fresh id.

Because ids are only ever *continued* from tiles already written (with IoU above 0.5 an object
can match at most one labelled object, as those are disjoint), no label is ever renamed: the
output is final as soon as a tile is written, ids are 1..N with no gaps, and a cancelled run
(closing the generator) leaves exactly the tiles done so far, consistent. What the rule cannot
join: an object that two tiles see differently enough (IoU <= ``stitch_iou`` in the overlap, e.g.
one tile split it in two), and with ``halo=0`` nothing is stitched.

**Interactive** (:class:`TiledPredictor`). A click (or box) encodes only the tile around it,
centred on the prompts and clipped to the image; the few most recent encodings are kept (LRU),
and a prompt that lies near an encoded tile's centre re-uses it. Masks come back in full-image
coordinates as :class:`SparseMask` (box + crop).

**Contrast.** Non-uint8 images are scaled by ONE intensity window for the whole image (percentiles
of up to 64 evenly spread tile-sized blocks, or a ``window`` given), so that every tile has the
same contrast, as the slices of a stack do (``engine.frames``). The mask generator gets each
window as uint8 scaled by it (the official 8-bit path; ``window="tile"`` passes the raw window
instead, so each tile is scaled by its own percentiles); the predictor passes it to
:meth:`ImagePredictor.set_image`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..progress import Progress
from .automatic import MaskRecord, label_image
from .preprocess import DEFAULT_PERCENTILES, _PERCENTILE_SAMPLE

__all__ = [
    "SparseMask",
    "Tile",
    "TiledPrediction",
    "TiledPredictor",
    "TiledResult",
    "plan_tiles",
    "sample_window",
    "segment_tiled",
    "segment_tiled_steps",
]

#: default IoU (within the overlap of a halo and the cores already written) above which two
#: objects of neighbouring tiles are one instance
STITCH_IOU = 0.5
#: at most this many evenly spread blocks are read to choose the image-wide intensity window
WINDOW_SAMPLE_BLOCKS = 64


class MaskGenerator(Protocol):
    """Anything that finds the masks of one 2-D image (the grid generator, a seeded one, ...)."""

    def generate(self, image: Any) -> list[MaskRecord]: ...


# ---------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Tile:
    """One tile of a :func:`plan_tiles` plan (pixel indices, end exclusive).

    Attributes
    ----------
    index : int
        Position in the plan (raster order).
    row, col : int
        Position in the grid of tiles.
    core : (y0, y1, x0, x1)
        The pixels this tile decides; the cores of a plan partition the image.
    read : (y0, y1, x0, x1)
        The core grown by the halo on every side, clipped to the image: what is read.
    """

    index: int
    row: int
    col: int
    core: tuple[int, int, int, int]
    read: tuple[int, int, int, int]

    @property
    def core_slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the core in the image."""
        y0, y1, x0, x1 = self.core
        return slice(y0, y1), slice(x0, x1)

    @property
    def read_slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the read region in the image."""
        y0, y1, x0, x1 = self.read
        return slice(y0, y1), slice(x0, x1)

    @property
    def core_in_read(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the core within the read region."""
        (cy0, cy1, cx0, cx1), (ry0, _, rx0, _) = self.core, self.read
        return slice(cy0 - ry0, cy1 - ry0), slice(cx0 - rx0, cx1 - rx0)

    @property
    def read_shape(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.read
        return y1 - y0, x1 - x0


def plan_tiles(
    shape_hw: Sequence[int], tile: int, halo: int, *, model_input: int | None = None
) -> list[Tile]:
    """Split an image into tiles whose cores partition it, each read with a halo.

    Parameters
    ----------
    shape_hw : (H, W)
        Image size (a channel axis after them is ignored).
    tile : int
        Longest core side; each axis gets ``ceil(length / tile)`` cores of nearly equal size.
    halo : int
        Pixels read beyond the core on every side (clipped to the image), ``0 <= halo < tile``.
    model_input : int, optional
        The model's input side; a halo larger than it is refused.

    Returns
    -------
    list of Tile
        In raster order (row by row).
    """
    if len(shape_hw) < 2:
        raise InputError(f"plan_tiles needs an image shape (H, W), got {tuple(shape_hw)}")
    h, w = (int(n) for n in tuple(shape_hw)[:2])
    if h < 1 or w < 1:
        raise InputError(f"image is empty (shape {h} x {w})")
    tile = _int("tile", tile, 1)
    halo = _int("halo", halo, 0)
    if halo >= tile:
        raise InputError(f"tile ({tile} px) must be larger than the halo ({halo} px)")
    if model_input is not None and halo > model_input:
        raise InputError(f"halo ({halo} px) is larger than the model input ({model_input} px)")
    ys, xs = _cuts(h, tile), _cuts(w, tile)
    tiles = []
    for r, (y0, y1) in enumerate(zip(ys[:-1], ys[1:])):
        for c, (x0, x1) in enumerate(zip(xs[:-1], xs[1:])):
            read = (max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(w, x1 + halo))
            tiles.append(Tile(len(tiles), r, c, (y0, y1, x0, x1), read))
    return tiles


def _cuts(length: int, tile: int) -> list[int]:
    n = -(-length // tile)
    return [(i * length) // n for i in range(n + 1)]


# ---------------------------------------------------------------------- reading
class _Lazy:
    """A lazy (H, W) or (H, W, C) image read one window at a time (never as a whole)."""

    def __init__(self, image: Any) -> None:
        for attr in ("shape", "dtype", "__getitem__"):
            if not hasattr(image, attr):
                raise InputError(f"image must be an array-like with .{attr}, got {type(image).__name__}")
        shape = tuple(int(n) for n in image.shape)
        if len(shape) not in (2, 3):
            raise InputError(f"image must be 2-D (H, W) or (H, W, C), got {len(shape)}-D with shape {shape}")
        if len(shape) == 3 and not 1 <= shape[2] <= 4:
            raise InputError(f"image has {shape[2]} channels in its last axis (shape {shape}); expected 1-4")
        if shape[0] == 0 or shape[1] == 0:
            raise InputError(f"image is empty (shape {shape})")
        try:
            dtype = np.dtype(image.dtype)
        except TypeError:
            raise InputError(f"image must have a numpy dtype, got {image.dtype!r}") from None
        if not (dtype == np.bool_ or (np.issubdtype(dtype, np.number) and dtype.kind != "c")):
            raise InputError(f"image must be numeric (integer, float or bool), got dtype {dtype}")
        self.image, self.shape, self.dtype = image, shape, dtype
        self.hw = shape[0], shape[1]
        self.channels = shape[2] if len(shape) == 3 else 1

    def read(self, region: tuple[int, int, int, int]) -> np.ndarray:
        y0, y1, x0, x1 = region
        arr = np.asarray(self.image[y0:y1, x0:x1])
        want = (y1 - y0, x1 - x0) + self.shape[2:]
        if arr.shape != want:
            raise InputError(f"reading image[{y0}:{y1}, {x0}:{x1}] gave shape {arr.shape}, expected {want}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InputError(f"image[{y0}:{y1}, {x0}:{x1}] contains NaN or infinite values")
        return arr


def sample_window(
    image: Any,
    block: int = 1024,
    *,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    max_blocks: int = WINDOW_SAMPLE_BLOCKS,
) -> np.ndarray | None:
    """One (C, 2) intensity window for a large image, from a few of its blocks.

    Reads at most ``max_blocks`` evenly spread ``block`` x ``block`` regions (each sub-sampled on
    a regular grid, about 4 M pixels in all) and takes the ``percentiles`` per channel. None for
    uint8 data (the official preprocessing needs no window); ``(0, 1)`` for bool.
    """
    lazy = image if isinstance(image, _Lazy) else _Lazy(image)
    if lazy.dtype == np.uint8:
        return None
    if lazy.dtype == np.bool_:
        return np.tile([0.0, 1.0], (lazy.channels, 1))
    lo, hi = (float(p) for p in percentiles)
    if not 0.0 <= lo < hi <= 100.0:
        raise InputError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    blocks = plan_tiles(lazy.hw, max(1, int(block)), 0)
    picks = sorted({int(i) for i in np.linspace(0, len(blocks) - 1, min(len(blocks), max_blocks)).round()})
    per_block = max(1, _PERCENTILE_SAMPLE // len(picks))
    samples = []
    for i in picks:
        arr = lazy.read(blocks[i].core)
        arr = arr if arr.ndim == 3 else arr[..., None]
        step = int(np.ceil(np.sqrt(arr.shape[0] * arr.shape[1] / per_block)))
        samples.append(arr[::step, ::step].reshape(-1, arr.shape[-1]))
    flat = np.concatenate(samples).astype(np.float64)
    return np.percentile(flat, (lo, hi), axis=0).T


def _check_window(window: Any, channels: int) -> np.ndarray:
    w = np.asarray(window, dtype=np.float64)
    if w.shape not in ((2,), (1, 2), (channels, 2)):
        raise InputError(f"window must have shape (2,) or ({channels}, 2), got {w.shape}")
    if not np.isfinite(w).all():
        raise InputError("window contains NaN or infinite values")
    return np.array(np.broadcast_to(w.reshape(-1, 2), (channels, 2)))


def _image_window(lazy: _Lazy, window: Any, block: int) -> np.ndarray | None:
    """The shared window: None for uint8 (or ``"tile"``), else the given or sampled one."""
    if isinstance(window, str):
        if window != "tile":
            raise InputError(f"window must be None, 'tile' or a (low, high) window, got {window!r}")
        return None
    if lazy.dtype == np.uint8:
        return None
    if window is None:
        return sample_window(lazy, block)
    return _check_window(window, lazy.channels)


def _to_uint8(arr: np.ndarray, window: np.ndarray) -> np.ndarray:
    """``arr`` scaled by the (C, 2) window into [0, 255], rounded (a constant channel: 0)."""
    a = arr if arr.ndim == 3 else arr[..., None]
    lo, hi = window[:, 0], window[:, 1]
    with np.errstate(over="ignore", invalid="ignore"):
        span = np.where(hi > lo, hi - lo, 1.0)
        unit = np.clip((a.astype(np.float64) - lo) / span, 0.0, 1.0)
    unit[..., hi <= lo] = 0.0
    out = np.rint(unit * 255.0).astype(np.uint8)
    return out if arr.ndim == 3 else out[..., 0]


# ---------------------------------------------------------------------- segment everything
class TiledResult:
    """What :func:`segment_tiled` wrote: the label image, and one row per object.

    Attributes
    ----------
    labels : array-like
        The (H, W) label image (the ``out`` given, or a new uint32 numpy array); 0 is background,
        objects are 1..``n_objects``. Only the cores of the tiles done are written.
    n_tiles : int
        Tiles in the plan.
    tiles_done : int
        Tiles written so far (``n_tiles`` once finished; fewer if the run was cancelled).
    stitched : int
        Matches made across tile borders (an object continued in another tile counts once per
        tile it is continued in).
    """

    def __init__(self, labels: Any, n_tiles: int) -> None:
        self.labels = labels
        self.n_tiles = n_tiles
        self.tiles_done = 0
        self.stitched = 0
        self._area: list[int] = []
        self._box: list[list[int]] = []  # y0, x0, y1, x1

    @property
    def n_objects(self) -> int:
        return len(self._area)

    @property
    def area(self) -> np.ndarray:
        """(N,) int64 pixels of object ``i + 1``."""
        return np.asarray(self._area, dtype=np.int64)

    @property
    def bbox(self) -> np.ndarray:
        """(N, 4) int64 ``(y0, x0, y1, x1)`` of object ``i + 1``, end exclusive (``labels[y0:y1, x0:x1]``)."""
        return np.asarray(self._box, dtype=np.int64).reshape(-1, 4)

    @property
    def complete(self) -> bool:
        return self.tiles_done == self.n_tiles

    def __repr__(self) -> str:
        return f"TiledResult(objects={self.n_objects}, tiles={self.tiles_done}/{self.n_tiles}, stitched={self.stitched})"


def segment_tiled(
    generator: MaskGenerator | Callable[[], MaskGenerator],
    image: Any,
    *,
    tile: int,
    halo: int,
    out: Any = None,
    progress: Callable[[Progress], Any] | None = None,
    window: Any = None,
    stitch_iou: float = STITCH_IOU,
) -> TiledResult:
    """Segment everything in a large 2-D image tile by tile, objects cut by borders stitched.

    Parameters
    ----------
    generator : MaskGenerator or callable
        Anything with ``.generate(image) -> list[MaskRecord]``, or a no-argument factory that
        makes one (called once).
    image : array-like
        (H, W) or (H, W, C) lazy array; only ``image[y0:y1, x0:x1]`` of one tile's read region
        is read at a time.
    tile, halo : int
        See :func:`plan_tiles`; ``halo`` should be at least the radius of the objects.
    out : array-like, optional
        (H, W) unsigned-integer array to write the labels into (numpy, ``np.memmap``, zarr), so
        that a large label image need not be in RAM; default a new uint32 numpy array.
    progress : callable, optional
        Called with ``Progress(done, total, payload=result)`` after each tile.
    window : None, "tile" or array, optional
        Intensity window of non-uint8 images (see the module docstring).
    stitch_iou : float, default 0.5
        IoU in the halo above which objects of neighbouring tiles are one instance.

    Returns
    -------
    TiledResult
    """
    steps = segment_tiled_steps(generator, image, tile=tile, halo=halo, out=out, window=window, stitch_iou=stitch_iou)
    while True:
        try:
            p = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(p)


def segment_tiled_steps(
    generator: MaskGenerator | Callable[[], MaskGenerator],
    image: Any,
    *,
    tile: int,
    halo: int,
    out: Any = None,
    window: Any = None,
    stitch_iou: float = STITCH_IOU,
) -> Generator[Progress, None, TiledResult]:
    """:func:`segment_tiled` as a generator: yields ``Progress(done, total, payload=result)``
    after each tile written and returns the :class:`TiledResult`.

    Closing the generator stops after the current tile; ``out`` then holds the tiles done, every
    one final (ids are never renamed), and the result's table describes exactly them.
    """
    lazy = _Lazy(image)
    stitch_iou = _real01("stitch_iou", stitch_iou)
    gen = _generator(generator)
    plan = plan_tiles(lazy.hw, tile, halo, model_input=_model_input(gen))
    labels = _check_out(out, lazy.hw)
    shared = _image_window(lazy, window, tile)
    result = TiledResult(labels, len(plan))
    grid = _Grid(plan)
    max_id = np.iinfo(np.dtype(labels.dtype)).max
    for t in plan:
        arr = lazy.read(t.read)
        if shared is not None:
            arr = _to_uint8(arr, shared)
        elif arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * np.uint8(255)
        records = list(gen.generate(arr))
        _write_tile(t, records, labels, grid, result, stitch_iou, max_id)
        grid.done[t.index] = True
        result.tiles_done += 1
        yield Progress(result.tiles_done, len(plan), payload=result)
    return result


class _Grid:
    """Which cores lie in a read region, and which tiles are written."""

    def __init__(self, plan: list[Tile]) -> None:
        self.plan = plan
        self.n_cols = max(t.col for t in plan) + 1
        self.y_cuts = np.array([t.core[0] for t in plan if t.col == 0] + [plan[-1].core[1]])
        self.x_cuts = np.array([t.core[2] for t in plan[: self.n_cols]] + [plan[-1].core[3]])
        self.done = np.zeros(len(plan), dtype=bool)

    def written_in(self, t: Tile) -> np.ndarray:
        """(h, w) bool of ``t``'s read region: the pixels of cores already written."""
        ry0, ry1, rx0, rx1 = t.read
        written = np.zeros((ry1 - ry0, rx1 - rx0), dtype=bool)
        r0, r1 = np.searchsorted(self.y_cuts, [ry0, ry1 - 1], side="right") - 1
        c0, c1 = np.searchsorted(self.x_cuts, [rx0, rx1 - 1], side="right") - 1
        for r in range(r0, r1 + 1):
            for c in range(c0, c1 + 1):
                other = self.plan[r * self.n_cols + c]
                if self.done[other.index]:
                    y0, y1, x0, x1 = other.core
                    written[max(y0, ry0) - ry0 : min(y1, ry1) - ry0, max(x0, rx0) - rx0 : min(x1, rx1) - rx0] = True
        return written


def _write_tile(
    t: Tile,
    records: list[MaskRecord],
    labels: Any,
    grid: _Grid,
    result: TiledResult,
    stitch_iou: float,
    max_id: int,
) -> None:
    """Label ``t``'s core from its records, continuing the ids of matching written objects."""
    shape = t.read_shape
    for r in records:
        if getattr(r.mask, "shape", None) != shape:
            raise InputError(
                f"the mask generator returned a mask of shape {getattr(r.mask, 'shape', None)} "
                f"for a window of shape {shape}"
            )
    k = len(records)
    local = label_image(records, shape) if k else np.zeros(shape, dtype=np.uint32)
    gid = np.zeros(k + 1, dtype=np.int64)  # local id -> global id (0: none yet)

    written = grid.written_in(t)
    if k and written.any():
        old = np.asarray(labels[t.read_slices]).astype(np.int64)[written]
        new = local[written].astype(np.int64)
        for b, r in _matches(new, old, stitch_iou):
            gid[b] = r
            result.stitched += 1

    core = local[t.core_in_read]
    count = np.bincount(core.ravel(), minlength=k + 1)
    boxes = ndimage.find_objects(core, max_label=k) if k else []
    cy0, _, cx0, _ = t.core
    for b in range(1, k + 1):
        if count[b] == 0:
            continue  # nothing of it in this core: left to the tile that owns its pixels
        y, x = boxes[b - 1]
        box = [cy0 + y.start, cx0 + x.start, cy0 + y.stop, cx0 + x.stop]
        if gid[b] == 0:
            if result.n_objects + 1 > max_id:
                raise InputError(f"the output's dtype {np.dtype(labels.dtype)} cannot hold label {result.n_objects + 1}")
            result._area.append(0)
            result._box.append(box)
            gid[b] = result.n_objects
        i = gid[b] - 1
        result._area[i] += int(count[b])
        old_box = result._box[i]
        result._box[i] = [min(old_box[0], box[0]), min(old_box[1], box[1]), max(old_box[2], box[2]), max(old_box[3], box[3])]
    labels[t.core_slices] = gid.astype(np.dtype(labels.dtype))[core]


def _matches(new: np.ndarray, old: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one (new id, old id) pairs whose IoU over these pixels is above ``threshold``, best first."""
    new_area = np.bincount(new)
    old_ids, old_inv = np.unique(old, return_inverse=True)
    old_area = np.bincount(old_inv)
    both = (new > 0) & (old > 0)
    if not both.any():
        return []
    n_old = len(old_ids)
    pair, overlap = np.unique(new[both] * n_old + old_inv[both], return_counts=True)
    b, o = pair // n_old, pair % n_old
    iou = overlap / (new_area[b] + old_area[o] - overlap)
    taken_new, taken_old, out = set(), set(), []
    for j in np.lexsort((b, -iou)):  # best IoU first; ties by the new object's order
        if iou[j] <= threshold:
            break
        if b[j] in taken_new or o[j] in taken_old:
            continue
        taken_new.add(b[j])
        taken_old.add(o[j])
        out.append((int(b[j]), int(old_ids[o[j]])))
    return out


def _check_out(out: Any, hw: tuple[int, int]) -> Any:
    if out is None:
        return np.zeros(hw, dtype=np.uint32)
    for attr in ("shape", "dtype", "__getitem__", "__setitem__"):
        if not hasattr(out, attr):
            raise InputError(f"out must be a writable array-like with .{attr}, got {type(out).__name__}")
    if tuple(int(n) for n in out.shape) != tuple(hw):
        raise InputError(f"out must have the image's shape {tuple(hw)}, got {tuple(out.shape)}")
    if np.dtype(out.dtype).kind != "u":
        raise InputError(f"out must have an unsigned integer dtype (uint32 recommended), got {np.dtype(out.dtype)}")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise InputError("out is read-only")
    return out


def _generator(generator: Any) -> MaskGenerator:
    if hasattr(generator, "generate") and not isinstance(generator, type):
        return generator
    if callable(generator):
        made = generator()
        if hasattr(made, "generate"):
            return made
        raise InputError(f"the generator factory returned {type(made).__name__}, which has no .generate(image)")
    raise InputError(f"generator must have .generate(image) or be a factory of one, got {type(generator).__name__}")


def _model_input(generator: Any) -> int | None:
    """The side of the model input of a generator built on our model, if it has one."""
    for path in (("predictor", "model"), ("model",)):
        obj = generator
        for name in path:
            obj = getattr(obj, name, None)
        size = getattr(getattr(obj, "config", None), "image_size", None)
        if isinstance(size, int):
            return size
    return None


# ---------------------------------------------------------------------- interactive
@dataclass(frozen=True)
class SparseMask:
    """A mask on a large image stored as its bounding box and the crop inside it.

    Attributes
    ----------
    bbox : (y0, x0, y1, x1)
        Full-image pixel box of the mask, end exclusive; ``y0 == y1`` for an empty mask.
    mask : np.ndarray
        (y1 - y0, x1 - x0) bool.
    score : float
        The model's predicted IoU.
    """

    bbox: tuple[int, int, int, int]
    mask: np.ndarray
    score: float

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the box in the full image."""
        y0, x0, y1, x1 = self.bbox
        return slice(y0, y1), slice(x0, x1)

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def paste(self, out: Any, value: int = 1) -> None:
        """Write ``value`` where the mask is set into ``out`` (the full-image array), box only."""
        if self.mask.size:
            region = np.asarray(out[self.slices])
            region = np.where(self.mask, value, region).astype(region.dtype)
            out[self.slices] = region


@dataclass(frozen=True)
class TiledPrediction:
    """What :meth:`TiledPredictor.predict` returns.

    Attributes
    ----------
    masks : list of SparseMask
        The candidates in the model's order (3 with ``multimask_output``, else 1).
    window : (y0, y1, x0, x1)
        The encoded region of the image (end exclusive).
    reused : bool
        Whether the region's encoding came from the cache.
    """

    masks: list[SparseMask]
    window: tuple[int, int, int, int]
    reused: bool

    @property
    def best(self) -> SparseMask:
        """The candidate with the highest predicted IoU (the first of equals)."""
        return max(self.masks, key=lambda m: m.score)


class TiledPredictor:
    """Clicks and boxes on a huge 2-D image, each encoding only the tile around it.

    Wraps :class:`~napari_sam2.engine.image.ImagePredictor`: a prompt is answered on a
    ``tile`` x ``tile`` window centred on the prompts and clipped to the image (larger when
    the prompts spread wider than ``tile - 2 * reuse_margin``), read from the lazy image and
    encoded once. The ``cache_size`` most recent windows stay encoded; a prompt whose points
    (and box) all lie at least ``reuse_margin`` pixels inside a cached window (image edges
    excepted) re-uses the nearest such window instead of encoding a new one.

    Parameters
    ----------
    model : SAM2
        A loaded model (``load_model``).
    image : array-like
        (H, W) or (H, W, C) lazy array (numpy, memmap, zarr, dask).
    tile : int, optional
        Window side; default the model's input side (objects are seen at their native scale).
    cache_size : int, default 4
        Encoded windows kept.
    reuse_margin : int, optional
        Default ``tile // 4``: a prompt in the central half of a cached window re-uses it.
    window : array, "tile" or None
        Intensity window of non-uint8 data; default sampled once from the image (see the module
        docstring); ``"tile"`` scales each window by its own percentiles.
    mask_threshold : float, default 0.0
        Logit threshold of the masks.

    Examples
    --------
    >>> tp = TiledPredictor(load_model("napari-sam2-cells"), zarr.open_array("big.zarr", mode="r"))
    >>> pred = tp.predict(point_coords=[[5120, 7300]], point_labels=[1])
    >>> m = pred.best
    >>> labels[m.slices][m.mask] = 1
    """

    def __init__(
        self,
        model: Any,
        image: Any,
        *,
        tile: int | None = None,
        cache_size: int = 4,
        reuse_margin: int | None = None,
        window: Any = None,
        mask_threshold: float = 0.0,
    ) -> None:
        self.model = model
        self.lazy = _Lazy(image)
        self.tile = _int("tile", model.config.image_size if tile is None else tile, 1)
        self.cache_size = _int("cache_size", cache_size, 1)
        margin = self.tile // 4 if reuse_margin is None else reuse_margin
        self.reuse_margin = _int("reuse_margin", margin, 0)
        if 2 * self.reuse_margin >= self.tile:
            raise InputError(f"reuse_margin ({self.reuse_margin} px) must be less than half the tile ({self.tile} px)")
        self.mask_threshold = mask_threshold
        self.window = _image_window(self.lazy, window, self.tile)
        self._cache: OrderedDict[tuple[int, int, int, int], Any] = OrderedDict()
        self.encodings = 0  # windows encoded so far

    @property
    def shape(self) -> tuple[int, int]:
        return self.lazy.hw

    @property
    def cached_windows(self) -> list[tuple[int, int, int, int]]:
        """The encoded windows (y0, y1, x0, x1), least recently used first."""
        return list(self._cache)

    def predict(
        self,
        point_coords: Any = None,
        point_labels: Any = None,
        box: Any = None,
        multimask_output: bool = True,
    ) -> TiledPrediction:
        """Masks for prompts given in full-image (x, y) pixels, as :meth:`ImagePredictor.predict`.

        Parameters
        ----------
        point_coords : array-like, optional
            (N, 2) points as (x, y) pixels of the whole image.
        point_labels : array-like, optional
            (N,) 1 = object, 0 = background.
        box : array-like, optional
            (4,) x0, y0, x1, y1 in pixels of the whole image.
        multimask_output : bool, default True
            Three candidates (best for one click) instead of one.

        Returns
        -------
        TiledPrediction
        """
        from .prompts import check_box, check_points

        coords, labels = check_points(point_coords, point_labels, self.shape)
        box_xyxy = check_box(box, self.shape)
        if coords is None and box_xyxy is None:
            raise InputError("no prompts: give point_coords/point_labels or a box")
        xs, ys = [], []
        if coords is not None:
            xs.append(coords[:, 0])
            ys.append(coords[:, 1])
        if box_xyxy is not None:
            xs.append(box_xyxy[[0, 2]].astype(np.float64))
            ys.append(box_xyxy[[1, 3]].astype(np.float64))
        span = _pixel_span(np.concatenate(ys), self.shape[0]), _pixel_span(np.concatenate(xs), self.shape[1])
        key, reused = self._window_for(span)
        predictor = self._predictor(key)
        y0, _, x0, _ = key
        local_pts = None if coords is None else coords - np.array([x0, y0])
        local_box = None if box_xyxy is None else box_xyxy - np.array([x0, y0, x0, y0], dtype=np.float32)
        masks, scores, _ = predictor.predict(
            point_coords=local_pts, point_labels=labels, box=local_box, multimask_output=multimask_output
        )
        sparse = [_sparse(m, float(s), (y0, x0)) for m, s in zip(masks, scores)]
        return TiledPrediction(sparse, key, reused)

    # ---------------------------------------------------------------- windows
    def _window_for(self, span: tuple[tuple[int, int], tuple[int, int]]) -> tuple[tuple[int, int, int, int], bool]:
        if any(self._covers(key, span) for key in self._cache):
            key = self._nearest(span)
            self._cache.move_to_end(key)
            return key, True
        return self._new_window(span), False

    def _covers(self, key: tuple[int, int, int, int], span: tuple[tuple[int, int], tuple[int, int]]) -> bool:
        m = self.reuse_margin
        for (lo, hi), (w0, w1), n in zip(span, (key[:2], key[2:]), self.shape):
            inner0 = w0 if w0 == 0 else w0 + m
            inner1 = w1 if w1 == n else w1 - m
            if lo < inner0 or hi >= inner1:
                return False
        return True

    def _nearest(self, span: tuple[tuple[int, int], tuple[int, int]]) -> tuple[int, int, int, int]:
        cy, cx = (sum(span[0]) / 2, sum(span[1]) / 2)
        fits = [k for k in self._cache if self._covers(k, span)]
        return min(fits, key=lambda k: ((k[0] + k[1]) / 2 - cy) ** 2 + ((k[2] + k[3]) / 2 - cx) ** 2)

    def _new_window(self, span: tuple[tuple[int, int], tuple[int, int]]) -> tuple[int, int, int, int]:
        out = []
        for (lo, hi), n in zip(span, self.shape):
            size = min(n, max(self.tile, hi - lo + 1 + 2 * self.reuse_margin))
            start = (lo + hi + 1) // 2 - size // 2
            start = min(max(0, start), n - size)
            out += [start, start + size]
        return out[0], out[1], out[2], out[3]

    def _predictor(self, key: tuple[int, int, int, int]) -> Any:
        if key in self._cache:
            return self._cache[key]
        from .image import ImagePredictor

        arr = self.lazy.read(key)
        predictor = ImagePredictor(self.model, mask_threshold=self.mask_threshold)
        predictor.set_image(arr, window=self.window)
        self.encodings += 1
        self._cache[key] = predictor
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return predictor


def _pixel_span(coords: np.ndarray, n: int) -> tuple[int, int]:
    """The first and last pixel index (inclusive) that coordinates fall on (pixel i covers [i-0.5, i+0.5])."""
    px = np.clip(np.floor(coords + 0.5).astype(np.int64), 0, n - 1)
    return int(px.min()), int(px.max())


def _sparse(mask: np.ndarray, score: float, origin: tuple[int, int]) -> SparseMask:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    oy, ox = origin
    if rows.size == 0:
        return SparseMask((oy, ox, oy, ox), np.zeros((0, 0), dtype=bool), score)
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return SparseMask((oy + y0, ox + x0, oy + y1, ox + x1), np.ascontiguousarray(mask[y0:y1, x0:x1]), score)


# ---------------------------------------------------------------------- validation
def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise InputError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _real01(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number in [0, 1), got {value!r}")
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise InputError(f"{name} must be in [0, 1), got {value!r}")
    return v
