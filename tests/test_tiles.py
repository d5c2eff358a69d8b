"""Tiling of large 2-D images: the plan, stitched segment-everything, the tiled predictor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_sam2.engine.automatic import MaskRecord
from napari_sam2.engine.tiles import (
    TiledPredictor,
    plan_tiles,
    sample_window,
    segment_tiled,
    segment_tiled_steps,
)
from napari_sam2.errors import InputError


# ---------------------------------------------------------------- helpers
class ThresholdGenerator:
    """A deterministic stand-in for a mask generator: threshold, then connected components."""

    def __init__(self, threshold: float = 100) -> None:
        self.threshold = threshold
        self.seen: list[tuple[tuple[int, ...], np.dtype]] = []

    def generate(self, image: np.ndarray) -> list[MaskRecord]:
        arr = np.asarray(image)
        self.seen.append((arr.shape, arr.dtype))
        lab, _ = ndimage.label(arr > self.threshold)
        records = []
        for i, (ys, xs) in enumerate(ndimage.find_objects(lab), start=1):
            mask = lab == i
            records.append(
                MaskRecord(
                    mask=mask,
                    area=int(mask.sum()),
                    bbox=(xs.start, ys.start, xs.stop - 1 - xs.start, ys.stop - 1 - ys.start),
                    predicted_iou=1.0,
                    stability_score=1.0,
                    point_coords=np.array([[xs.start, ys.start]], dtype=float),
                    crop_box=(0, 0, arr.shape[1], arr.shape[0]),
                )
            )
        return records


class Recording:
    """A lazy image that records every read and refuses any read bigger than ``limit``."""

    def __init__(self, array: np.ndarray, limit: tuple[int, int]) -> None:
        self.array, self.limit = array, limit
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.reads: list[tuple[int, int, int, int]] = []

    def __getitem__(self, key):
        ys, xs = key[:2]
        y0, y1, _ = ys.indices(self.shape[0])
        x0, x1, _ = xs.indices(self.shape[1])
        if y1 - y0 > self.limit[0] or x1 - x0 > self.limit[1]:
            raise AssertionError(f"read of {y1 - y0} x {x1 - x0} pixels, more than a tile window {self.limit}")
        self.reads.append((y0, y1, x0, x1))
        return self.array[key]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole image was read")


def discs_image(shape, tile, halo, seed=0):
    """uint8 discs centred on tile borders and corners (some wider than the halo) and elsewhere."""
    plan = plan_tiles(shape, tile, halo)
    ys = sorted({t.core[0] for t in plan} - {0})
    xs = sorted({t.core[2] for t in plan} - {0})
    rng = np.random.default_rng(seed)
    centres = [(y, x) for y in ys for x in xs]  # corners of four tiles
    centres += [(y, int(rng.integers(20, shape[1] - 20))) for y in ys]  # on horizontal borders
    centres += [(int(rng.integers(20, shape[0] - 20)), x) for x in xs]  # on vertical borders
    centres += [tuple(int(v) for v in rng.integers(15, np.array(shape) - 15)) for _ in range(40)]
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape, dtype=np.uint8)
    placed: list[tuple[int, int, float]] = []
    for k, (cy, cx) in enumerate(centres):
        r = float(rng.uniform(halo + 4, 2 * halo)) if k % 3 == 0 else float(rng.uniform(4, halo - 2))
        if any(np.hypot(cy - py, cx - px) < r + pr + 3 for py, px, pr in placed):
            continue
        placed.append((cy, cx, r))
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 200
    return image, placed


def same_instances(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images have the same objects (the same pixel sets, ids aside)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    fg = a > 0
    pairs = np.unique(np.stack([a[fg].astype(np.int64), b[fg].astype(np.int64)]), axis=1)
    return pairs.shape[1] == len(np.unique(a[fg])) == len(np.unique(b[fg]))


def check_table(result, labels):
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64), minlength=result.n_objects + 1)
    assert len(counts) == result.n_objects + 1  # ids 1..N, no larger
    np.testing.assert_array_equal(counts[1:], result.area)
    assert (result.area > 0).all()  # no gaps
    for i, (y0, x0, y1, x1) in enumerate(result.bbox, start=1):
        ys, xs = np.nonzero(np.asarray(labels) == i)
        assert (y0, x0, y1, x1) == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)


# ---------------------------------------------------------------- the plan
@pytest.mark.parametrize("shape,tile,halo", [((600, 700), 128, 24), ((100, 37), 16, 0), ((5, 300), 64, 63), ((64, 64), 64, 8)])
def test_cores_partition_the_image_and_reads_are_clipped(shape, tile, halo):
    plan = plan_tiles(shape, tile, halo)
    cover = np.zeros(shape, dtype=int)
    for i, t in enumerate(plan):
        assert t.index == i
        y0, y1, x0, x1 = t.core
        assert 0 < y1 - y0 <= tile and 0 < x1 - x0 <= tile
        cover[t.core_slices] += 1
        ry0, ry1, rx0, rx1 = t.read
        assert (ry0, ry1, rx0, rx1) == (max(0, y0 - halo), min(shape[0], y1 + halo), max(0, x0 - halo), min(shape[1], x1 + halo))
        window = np.zeros(t.read_shape, dtype=bool)
        window[t.core_in_read] = True
        assert window.sum() == (y1 - y0) * (x1 - x0)
    assert (cover == 1).all()
    n_rows, n_cols = -(-shape[0] // tile), -(-shape[1] // tile)
    assert len(plan) == n_rows * n_cols
    assert [(t.row, t.col) for t in plan] == [(r, c) for r in range(n_rows) for c in range(n_cols)]


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(tile=16, halo=16), "larger than the halo"),
        (dict(tile=16, halo=40), "larger than the halo"),
        (dict(tile=600, halo=300, model_input=256), "larger than the model input"),
        (dict(tile=0, halo=0), "tile must be >= 1"),
        (dict(tile=32, halo=-1), "halo must be >= 0"),
        (dict(tile=32.0, halo=4), "tile must be an integer"),
    ],
)
def test_bad_plans_are_one_line_errors(kwargs, words):
    with pytest.raises(InputError, match=words) as info:
        plan_tiles((512, 512), **kwargs)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- segment everything
def test_discs_across_borders_and_corners_are_one_instance_each_as_untiled():
    shape, tile, halo = (600, 700), 128, 24
    image, placed = discs_image(shape, tile, halo)
    assert sum(r > halo for _, _, r in placed) >= 5  # some discs are wider than the halo
    gen = ThresholdGenerator()
    whole = Recording(image, (tile + 2 * halo, tile + 2 * halo))
    result = segment_tiled(gen, whole, tile=tile, halo=halo)
    labels = result.labels

    untiled = np.zeros(shape, dtype=np.int64)
    for i, r in enumerate(ThresholdGenerator().generate(image), start=1):
        untiled[r.mask] = i
    assert same_instances(labels, untiled)
    assert result.n_objects == len(placed) == untiled.max()
    for cy, cx, _ in placed:  # each disc one instance
        disc = untiled == untiled[cy, cx]
        assert len(np.unique(labels[disc])) == 1
    assert result.stitched > 0 and result.complete and result.n_tiles == len(plan_tiles(shape, tile, halo))
    check_table(result, labels)
    # the reader saw each tile's read region once, and nothing else
    assert whole.reads == [t.read for t in plan_tiles(shape, tile, halo)]


def test_halo_zero_leaves_cut_objects_split():
    shape, tile = (256, 256), 128
    image = np.zeros(shape, dtype=np.uint8)
    image[100:156, 100:156] = 200  # a square on the corner of four tiles
    result = segment_tiled(ThresholdGenerator(), image, tile=tile, halo=0)
    assert result.n_objects == 4 and result.stitched == 0
    result = segment_tiled(ThresholdGenerator(), image, tile=tile, halo=8)
    assert result.n_objects == 1 and result.stitched == 3
    assert result.bbox.tolist() == [[100, 100, 156, 156]] and result.area.tolist() == [56 * 56]


def test_zarr_output_and_generator_factory_give_the_same_labels(tmp_path):
    zarr = pytest.importorskip("zarr")
    shape, tile, halo = (300, 260), 96, 16
    image, _ = discs_image(shape, tile, halo, seed=3)
    expected = segment_tiled(ThresholdGenerator(), image, tile=tile, halo=halo)
    out = zarr.create_array(str(tmp_path / "labels.zarr"), shape=shape, chunks=(96, 96), dtype="uint32")
    got = segment_tiled(ThresholdGenerator, image, tile=tile, halo=halo, out=out)
    assert got.labels is out
    reopened = zarr.open_array(str(tmp_path / "labels.zarr"), mode="r")[:]
    np.testing.assert_array_equal(reopened, expected.labels)
    np.testing.assert_array_equal(got.area, expected.area)
    np.testing.assert_array_equal(got.bbox, expected.bbox)


def test_memmap_output(tmp_path):
    shape = (200, 210)
    image, _ = discs_image(shape, 64, 12, seed=5)
    out = np.lib.format.open_memmap(tmp_path / "labels.npy", mode="w+", dtype=np.uint32, shape=shape)
    result = segment_tiled(ThresholdGenerator(), image, tile=64, halo=12, out=out)
    out.flush()
    check_table(result, np.load(tmp_path / "labels.npy"))


def test_progress_and_cancel_leave_the_tiles_done_consistent():
    shape, tile, halo = (300, 300), 100, 16
    image, _ = discs_image(shape, tile, halo, seed=1)
    seen = []
    full = segment_tiled(ThresholdGenerator(), image, tile=tile, halo=halo, progress=lambda p: seen.append((p.done, p.total)))
    assert seen == [(i, 9) for i in range(1, 10)]

    steps = segment_tiled_steps(ThresholdGenerator(), image, tile=tile, halo=halo)
    for _ in range(4):
        p = next(steps)
    steps.close()
    partial = p.payload
    assert partial.tiles_done == 4 and not partial.complete
    done = np.zeros(shape, dtype=bool)
    for t in plan_tiles(shape, tile, halo)[:4]:
        done[t.core_slices] = True
    assert not partial.labels[~done].any()
    np.testing.assert_array_equal(partial.labels[done], full.labels[done])  # ids are final once written
    check_table(partial, partial.labels)


def test_non_uint8_tiles_share_one_window_unless_asked_per_tile():
    rng = np.random.default_rng(0)
    image = rng.integers(1000, 1100, (200, 200)).astype(np.uint16)
    image[50:90, 50:90] = 5000
    gen = ThresholdGenerator(threshold=128)
    result = segment_tiled(gen, image, tile=100, halo=10)
    assert {dt for _, dt in gen.seen} == {np.dtype(np.uint8)}
    assert result.n_objects == 1 and result.area.tolist() == [40 * 40]
    window = sample_window(image, 100)
    np.testing.assert_allclose(window, np.percentile(image.astype(float), (1, 99.8))[None], rtol=0.02)

    gen = ThresholdGenerator(threshold=1050)  # raw values, each tile scaled by the generator itself
    segment_tiled(gen, image, tile=100, halo=10, window="tile")
    assert {dt for _, dt in gen.seen} == {np.dtype(np.uint16)}


@pytest.mark.parametrize(
    "kwargs,words",
    [
        (dict(out=np.zeros((10, 10), np.uint32)), "out must have the image's shape"),
        (dict(out=np.zeros((64, 64), np.int32)), "unsigned integer"),
        (dict(window="global"), "window must be None, 'tile'"),
        (dict(stitch_iou=1.5), r"stitch_iou must be in \[0, 1\)"),
        (dict(tile=8, halo=8), "larger than the halo"),
    ],
)
def test_bad_segment_arguments_are_one_line_errors(kwargs, words):
    args = dict(tile=32, halo=4) | kwargs
    with pytest.raises(InputError, match=words) as info:
        segment_tiled(ThresholdGenerator(), np.zeros((64, 64), np.uint16), **args)
    assert "\n" not in str(info.value)


def test_a_mask_of_the_wrong_shape_is_refused():
    class Wrong:
        def generate(self, image):
            mask = np.ones((3, 3), bool)
            return [MaskRecord(mask, 9, (0, 0, 2, 2), 1.0, 1.0, np.zeros((1, 2)), (0, 0, 3, 3))]

    with pytest.raises(InputError, match="mask of shape"):
        segment_tiled(Wrong(), np.zeros((64, 64), np.uint8), tile=32, halo=4)


# ---------------------------------------------------------------- with the shipped model
@pytest.fixture(scope="module")
def cells_model():
    import napari_sam2

    return napari_sam2.load_model("napari-sam2-cells")


@pytest.fixture(scope="module")
def big_cells():
    from napari_sam2.synthetic import cells_image

    return cells_image((2048, 2048), 120, seed=4, radius=(14.0, 22.0), styles=("nucleus",))


def test_grid_generator_halo_larger_than_the_model_input_is_refused(cells_model):
    from napari_sam2.engine.automatic import AutomaticMaskGenerator

    gen = AutomaticMaskGenerator(cells_model, points_per_side=4)
    with pytest.raises(InputError, match=r"halo \(300 px\) is larger than the model input \(256 px\)"):
        segment_tiled(gen, np.zeros((1024, 1024), np.uint8), tile=512, halo=300)


def test_grid_generator_on_tiles_stays_consistent(cells_model, big_cells):
    from napari_sam2.engine.automatic import AutomaticMaskGenerator

    crop = big_cells.image[:448, :448]
    gen = AutomaticMaskGenerator(cells_model, points_per_side=8)
    reader = Recording(crop, (256, 256))
    result = segment_tiled(gen, reader, tile=224, halo=16)
    assert result.n_tiles == 4 and all(y1 - y0 <= 256 and x1 - x0 <= 256 for y0, y1, x0, x1 in reader.reads)
    check_table(result, result.labels)
    truth = big_cells.labels[:448, :448]
    found = result.labels > 0
    # the shipped model finds the nuclei: most foreground is labelled, little background is
    assert (found & (truth > 0)).sum() > 0.6 * (truth > 0).sum()
    assert (found & (truth == 0)).sum() < 0.2 * found.sum()


def test_tiled_predictor_encodes_the_tile_around_the_click(cells_model, big_cells):
    from napari_sam2.engine.image import ImagePredictor

    image, truth = big_cells.image, big_cells.labels
    reader = Recording(image, (256, 256))
    tp = TiledPredictor(cells_model, reader, tile=256, cache_size=2)
    assert tp.encodings == 0  # nothing encoded before a click
    # the nucleus nearest (y, x) = (1500, 600)
    ids = np.unique(truth[truth > 0])
    centres = np.array(ndimage.center_of_mass(truth > 0, truth, ids))
    k = int(np.argmin(np.hypot(centres[:, 0] - 1500, centres[:, 1] - 600)))
    cy, cx = (int(round(v)) for v in centres[k])
    assert truth[cy, cx] == ids[k]

    reader.reads.clear()
    pred = tp.predict(point_coords=[[cx, cy]], point_labels=[1])
    y0, y1, x0, x1 = pred.window
    assert (y1 - y0, x1 - x0) == (256, 256) and not pred.reused
    assert abs((y0 + y1) / 2 - cy) <= 1 and abs((x0 + x1) / 2 - cx) <= 1
    assert reader.reads == [pred.window]  # the only pixels read for the click
    best = pred.best
    dense = np.zeros(image.shape, dtype=bool)
    best.paste(dense, 1)
    assert dense[cy, cx]
    obj = truth == ids[k]
    assert (dense & obj).sum() / (dense | obj).sum() > 0.6

    # the same as ImagePredictor on that window, with the image-wide window
    direct = ImagePredictor(cells_model)
    direct.set_image(image[y0:y1, x0:x1], window=tp.window)
    masks, scores, _ = direct.predict(point_coords=[[cx - x0, cy - y0]], point_labels=[1])
    for m, s, sparse in zip(masks, scores, pred.masks):
        full = np.zeros(image.shape, dtype=bool)
        sparse.paste(full, 1)
        np.testing.assert_array_equal(full[y0:y1, x0:x1], m)
        assert not full.sum() - m.sum()  # nothing outside the window
        assert sparse.score == pytest.approx(float(s))

    # a click near the tile's centre re-uses it; far away encodes another; LRU of 2
    again = tp.predict(point_coords=[[cx + 20, cy - 30]], point_labels=[1], multimask_output=False)
    assert again.reused and again.window == pred.window and tp.encodings == 1 and len(again.masks) == 1
    far = tp.predict(box=[100, 100, 140, 150])
    assert not far.reused and tp.encodings == 2 and far.window == (0, 256, 0, 256)  # clipped at the corner
    tp.predict(point_coords=[[2000, 2040]], point_labels=[1])
    assert tp.encodings == 3 and pred.window not in tp.cached_windows and len(tp.cached_windows) == 2


def test_tiled_predictor_bad_prompts_are_one_line_errors(cells_model):
    tp = TiledPredictor(cells_model, np.zeros((512, 512), np.uint8))
    for kwargs, words in [
        (dict(point_coords=[[600, 10]], point_labels=[1]), "outside the image"),
        (dict(), "no prompts"),
        (dict(box=[10, 10, 5, 20]), "x0 < x1"),
    ]:
        with pytest.raises(InputError, match=words) as info:
            tp.predict(**kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="reuse_margin"):
        TiledPredictor(cells_model, np.zeros((512, 512), np.uint8), tile=64, reuse_margin=32)
