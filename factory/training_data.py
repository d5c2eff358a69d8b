"""The shipped model's training data: fresh synthetic images and clips at every step.

Each step's batch is drawn from a seed (``train``'s ``(seed, step)``), rendered by the
randomised generators (:mod:`napari_sam2.synthetic`) and cut into training batches by the
same code that cuts a user's labelled stacks (:mod:`napari_sam2.finetune.data`).
"""

from __future__ import annotations

import numpy as np

from napari_sam2.finetune.data import Clip, ImageBatch, clip_from_stack, image_batch_from
from napari_sam2.synthetic import cell_timelapse, cells_image, nuclei_zstack

__all__ = ["FAST_SPEED", "synthetic_clip", "synthetic_image_batch"]

#: the speed range (a share of the frame's side per frame, cell_timelapse's ``speed``) of the
#: fast time-lapses of ``synthetic_clip(p_fast=)``: the upper part of the generator's 0.003-0.02
FAST_SPEED = (0.012, 0.02)


def synthetic_image_batch(
    seed: int, size: int, images: int, objects_per_image: int, styles: tuple[str, ...] | None = None
) -> ImageBatch:
    """A batch of fresh synthetic 2-D images (seeded)."""
    rng = np.random.default_rng(seed)
    kw = {} if styles is None else {"styles": styles}
    pairs = []
    for i in range(images):
        s = int(rng.integers(2**31))
        im = cells_image((size, size), seed=s, **kw)
        pairs.append((im.image, im.labels))
    return image_batch_from(pairs, size, objects_per_image, rng)


def synthetic_clip(
    seed: int,
    size: int,
    length: int,
    max_objects: int,
    styles: tuple[str, ...] | None = None,
    *,
    p_end: float = 0.0,
    p_gap: float = 0.0,
    p_timelapse: float = 0.6,
    p_division: float = 0.0,
    timelapse_frames: int | None = None,
    p_fast: float = 0.0,
) -> Clip:
    """A fresh synthetic clip: a time-lapse (``p_timelapse``, 60%) or a z-stack, seeded.

    With probability ``p_end`` an ending clip (:func:`clip_from_stack`), from a stack drawn
    until one has an object that ends. Its time-lapse is as long as the z-stacks (``length
    + 8``), not ``length``: then about 3 in 4 have one (a cell leaving the field or hidden,
    or, tracked backwards, a daughter cell before its birth), against about 1 in 8; every
    z-stack has a nucleus ending in z.

    With probability ``p_gap`` a gap clip: always a time-lapse (a nucleus does not come
    back in z) of ``length + 24`` frames, redrawn until an object of a window's first frame
    is gone in between and back on its last frame (about 2 in 5 of them have one at 16
    frames). It teaches the tracker to find a cell again after losing sight of it, and
    that far from the prompt an object is not less likely to be there.

    With probability ``p_division`` a division clip: a time-lapse of ``length + 24`` frames,
    redrawn until a cell of a window's first frame divides later in it; the tracked cell is
    the mother, who keeps her place and her id (not the bud, nor both).

    ``timelapse_frames``: the other time-lapses (plain and ending clips) are drawn with at
    least this many frames and the clip is a window of them, so that training sees cells
    as they are late in a long time-lapse (moved further, divided, more crowded), not only
    on the first ``length`` frames. None keeps the clips (and the random stream) of before.

    ``p_fast``: that share of the time-lapses (of every kind of clip) is drawn with fast
    cells, a speed of :data:`FAST_SPEED` (a share of the side per frame) instead of the
    generator's whole range (0.003-0.02): there cells pass each other and leave the field
    most often, and there the tracker loses them (docs/model.md, by cell speed). 0 draws
    nothing more from ``rng`` than before it existed.
    """
    rng = np.random.default_rng(seed)
    kw = {} if styles is None else {"styles": styles}
    # drawn once: a stack without such an object is redrawn
    u = rng.uniform() if p_end > 0 or p_gap > 0 or p_division > 0 else 1.0
    end, gap = u < p_end, p_end <= u < p_end + p_gap
    division = p_end + p_gap <= u < p_end + p_gap + p_division
    tries = 40 if gap or division else 20
    for _ in range(tries):
        s = int(rng.integers(2**31))
        # a fast time-lapse: drawn only when asked for, so that p_fast = 0 keeps the stream
        tkw = dict(kw, speed=float(rng.uniform(*FAST_SPEED))) if p_fast > 0 and rng.uniform() < p_fast else kw
        if gap or division:
            stack = cell_timelapse(length + 24, (size, size), seed=s, **tkw)
        elif rng.uniform() < p_timelapse:
            frames = length + 8 if end else length
            stack = cell_timelapse(max(frames, timelapse_frames or 0), (size, size), seed=s, **tkw)
        else:
            stack = nuclei_zstack(length + 8, (size, size), seed=s, **kw)
        clip = clip_from_stack(
            stack.image, stack.labels, size, length, max_objects, rng,
            p_end=float(end), p_gap=float(gap), p_division=float(division),
        )  # fmt: skip
        if clip is not None:
            return clip
    what = (
        "ending" if end else "gone in between and back" if gap else "dividing" if division else "on its first frame"
    )
    raise RuntimeError(f"could not make a synthetic clip with an object {what}")
