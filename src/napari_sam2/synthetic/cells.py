"""Randomised synthetic microscopy with ground truth, for training and evaluating SAM 2.

Three generators share one renderer (:mod:`~napari_sam2.synthetic.render`):

* :func:`cells_image` -- one 2-D field of cells or nuclei,
* :func:`cell_timelapse` -- cells moving in time: drift, deformation, divisions, cells
  leaving the field and coming back, passing under each other, blinking,
* :func:`nuclei_zstack` -- ellipsoidal nuclei sampled with anisotropic voxels.

Every call is seeded: the same arguments give the same pixels. The *look* of a sample is
an :class:`Appearance` (object style, brightness, texture, blur, noise, background); the
default draws one at random from the families the shipped model is trained on, and a
caller can fix one (``Appearance.sample(rng, styles=("membrane",))``) to make data of a
new look, e.g. for fine-tuning experiments.

Object styles:
``nucleus``   filled, brighter towards the centre, chromatin texture;
``cell``      a dim cytoplasm with a bright nucleus inside (the label is the whole cell);
``membrane``  a bright rim and a dark inside (membrane stain);
``inverted``  dark filled objects on a bright background (absorbing / phase-like).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from .appearance import TRAINING_STYLES, Appearance
from .render import _Blob, _camera, _harmonics, _illumination, _place, _random_blob, _render, _spots, _texture
from .samples import SyntheticImage, SyntheticStack

__all__ = ["cell_timelapse", "cells_image", "divisions", "nuclei_zstack"]


# --------------------------------------------------------------------------- 2-D


def cells_image(
    shape: tuple[int, int] = (256, 256),
    n_cells: int | None = None,
    *,
    seed: int = 0,
    appearance: Appearance | None = None,
    styles: tuple[str, ...] = TRAINING_STYLES,
    radius: tuple[float, float] | None = None,
) -> SyntheticImage:
    """One field of cells or nuclei with its instance labels.

    Parameters
    ----------
    shape : (int, int)
        Image size (Y, X).
    n_cells : int, optional
        Number of objects (default: random, 4-30 depending on their size).
    seed : int
        Seed of everything random.
    appearance : Appearance, optional
        A fixed look; default: ``Appearance.sample(rng, styles)``.
    radius : (float, float), optional
        Range of object radii in pixels (default: random, 4-12% of the image side).
    """
    if min(shape) < 16:
        raise ValueError("images must be at least 16 x 16 pixels")
    rng = np.random.default_rng(seed)
    look = appearance or Appearance.sample(rng, styles)
    side = min(shape)
    if radius is None:
        r0 = float(rng.uniform(0.035, 0.09)) * side
        radius = (r0 * 0.7, r0 * 1.4)
    if n_cells is None:
        density = rng.uniform(0.15, 0.55)
        n_cells = int(np.clip(density * shape[0] * shape[1] / (np.pi * np.mean(radius) ** 2), 2, 40))
    placed = _place(rng, n_cells, shape, radius, touching=float(rng.uniform(0, 1)))
    blobs = [(i + 1, _random_blob(rng, cy, cx, r, look)) for i, (cy, cx, r) in enumerate(placed)]
    texture = _texture(rng, shape, look.texture)
    spots = _spots(rng, shape, look.spots)
    clean, labels = _render(blobs, shape, look, texture, spots)
    image = _camera(rng, clean, look, _illumination(rng, shape, look.unevenness), labels > 0)
    return SyntheticImage(image=image, labels=labels)


# --------------------------------------------------------------------------- time


def cell_timelapse(
    n_frames: int = 32,
    shape: tuple[int, int] = (256, 256),
    n_cells: int | None = None,
    *,
    seed: int = 0,
    appearance: Appearance | None = None,
    styles: tuple[str, ...] = TRAINING_STYLES,
    divisions: bool = True,
    leave: bool = True,
    blinking: bool = True,
    speed: float | None = None,
) -> SyntheticStack:
    """Cells moving through time with their tracks as labels.

    Each cell drifts with a persistent random velocity, rotates and deforms (its axes and
    boundary harmonics change smoothly). With ``divisions`` a cell may split: the daughter
    that keeps the mother's id stays in place (shrunk), the other buds off beside her
    with a new id, and the two drift apart. With ``leave``
    some cells head out of the field and come back (bouncing off a margin outside it).
    Cells are drawn in a fixed depth order, so one passing over another hides it. With
    ``blinking`` a cell may dim to 20-50% for a few frames.

    Returns a :class:`~napari_sam2.synthetic.SyntheticStack` with ``axes = "tyx"``.
    """
    if n_frames < 1 or min(shape) < 16:
        raise ValueError("need n_frames >= 1 and frames of at least 16 x 16 pixels")
    rng = np.random.default_rng(seed)
    look = appearance or Appearance.sample(rng, styles)
    h, w = shape
    side = min(shape)
    r0 = float(rng.uniform(0.045, 0.09)) * side
    if n_cells is None:
        n_cells = int(rng.integers(3, 12))
    placed = _place(rng, n_cells, shape, (0.7 * r0, 1.3 * r0), touching=float(rng.uniform(0, 0.8)))
    speed = float(rng.uniform(0.003, 0.02)) * side if speed is None else speed * side

    cells: list[dict] = []
    for cy, cx, r in placed:
        cells.append(
            {
                "id": len(cells) + 1,
                "blob": _random_blob(rng, cy, cx, r, look),
                "v": rng.normal(0, speed, size=2),
                "spin": float(rng.normal(0, 0.04)),
                "phase": float(rng.uniform(0, 2 * np.pi)),
                "born": 0,
                "depth": float(rng.uniform()),
            }
        )
    margin = 0.25 * side if leave else -0.5 * r0
    texture = _texture(rng, shape, look.texture)
    spots = _spots(rng, shape, look.spots)
    illumination = _illumination(rng, shape, look.unevenness)
    image = np.empty((n_frames, h, w), dtype=np.float32)
    labels = np.zeros((n_frames, h, w), dtype=np.uint16)
    dim: dict[int, int] = {}
    for t in range(n_frames):
        drawn = []
        for c in sorted(cells, key=lambda c: c["depth"]):
            b: _Blob = c["blob"]
            breathe = 1.0 + 0.06 * np.sin(c["phase"] + 0.4 * t)
            shown = replace(b, ry=b.ry * breathe, rx=b.rx / breathe)
            if dim.get(c["id"], 0) > 0:
                shown = replace(shown, brightness=shown.brightness * float(rng.uniform(0.2, 0.5)))
            drawn.append((c["id"], shown))
        image[t], labels[t] = _render(drawn, shape, look, texture, spots)
        # move and deform for the next frame
        for c in list(cells):
            b = c["blob"]
            c["v"] = 0.85 * c["v"] + rng.normal(0, 0.5 * speed, size=2)
            b.cy += float(c["v"][0])
            b.cx += float(c["v"][1])
            for axis, lo, hi in ((0, -margin, h + margin), (1, -margin, w + margin)):
                pos = b.cy if axis == 0 else b.cx
                if pos < lo or pos > hi:
                    c["v"][axis] = -c["v"][axis]
            b.cy = float(np.clip(b.cy, -margin, h + margin))
            b.cx = float(np.clip(b.cx, -margin, w + margin))
            b.angle += c["spin"]
            if b.harm.size:
                b.harm[:, 2] += rng.normal(0, 0.15, size=len(b.harm))
            if divisions and t - c["born"] > 6 and rng.uniform() < 0.03 and len(cells) < 40:
                axis = float(rng.uniform(0, np.pi))
                off = 0.55 * max(b.ry, b.rx)
                new_r = 0.75
                dy, dx = off * np.sin(axis), off * np.cos(axis)
                # the mother (she keeps her id) stays where she is and the daughter buds off
                # beside her: had both moved apart symmetrically, which of the two keeps the
                # id would be a coin flip that no tracker can call, in training or evaluation
                child = _random_blob(rng, b.cy - 2 * dy, b.cx - 2 * dx, 0.0 + new_r * np.sqrt(b.ry * b.rx), look)
                child.brightness = b.brightness
                b.ry, b.rx = new_r * b.ry, new_r * b.rx
                kick = rng.normal(0, speed, size=2)
                c["v"] = c["v"] + kick
                c["born"] = t
                cells.append(
                    {"id": 1 + max(x["id"] for x in cells), "blob": child, "v": -kick, "spin": c["spin"],
                     "phase": c["phase"], "born": t, "depth": c["depth"] + 1e-3}
                )  # fmt: skip
        if blinking:
            for c in cells:
                left = dim.get(c["id"], 0)
                if left > 0:
                    dim[c["id"]] = left - 1
                elif rng.uniform() < 0.02:
                    dim[c["id"]] = int(rng.integers(1, 4))
    stack = _camera(rng, image, look, illumination[None], labels > 0)
    return SyntheticStack(image=stack, labels=labels, scale=(1.0, 0.5, 0.5), axes="tyx")


def divisions(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(frame, daughter, mother) of every division in a (T, H, W) label stack, read as
    :func:`cell_timelapse` writes them: a new id (absent on frame 0) born touching an
    existing cell, the mother, who keeps her id. A cell entering the field from outside
    without touching another is not a division.
    """
    labels = np.asarray(labels)
    n_ids = int(labels.max()) + 1
    present = np.stack([np.bincount(f.ravel(), minlength=n_ids) > 0 for f in labels])  # (T, ids)
    found = []
    for child in range(1, n_ids):
        on = np.nonzero(present[:, child])[0]
        if on.size == 0 or on[0] == 0:
            continue
        b = int(on[0])
        ring = ndimage.binary_dilation(labels[b] == child, iterations=2) & (labels[b] != child) & (labels[b] > 0)
        if ring.any():
            found.append((b, child, int(np.bincount(labels[b][ring]).argmax())))
    return found


# --------------------------------------------------------------------------- z


def nuclei_zstack(
    n_slices: int = 32,
    shape: tuple[int, int] = (256, 256),
    n_nuclei: int | None = None,
    *,
    seed: int = 0,
    appearance: Appearance | None = None,
    styles: tuple[str, ...] = ("nucleus", "inverted"),
    anisotropy: float | None = None,
) -> SyntheticStack:
    """Ellipsoidal nuclei in a z-stack sampled with anisotropic voxels.

    ``anisotropy`` is the z step over the pixel size (default: random in 1-4). Nuclei are
    randomly oriented, irregular ellipsoids, some touching; out-of-focus light blurs along
    z. Returns a :class:`~napari_sam2.synthetic.SyntheticStack` (``axes = "zyx"``).
    """
    if n_slices < 1 or min(shape) < 16:
        raise ValueError("need n_slices >= 1 and slices of at least 16 x 16 pixels")
    rng = np.random.default_rng(seed)
    look = appearance or Appearance.sample(rng, styles)
    aniso = float(rng.uniform(1.0, 4.0)) if anisotropy is None else float(anisotropy)
    h, w = shape
    side = min(shape)
    r0 = float(rng.uniform(0.05, 0.1)) * side  # in-plane radius, pixels
    if n_nuclei is None:
        n_nuclei = int(rng.integers(8, 30))
    depth_px = n_slices * aniso
    nuclei = []
    for _ in range(n_nuclei):
        r = r0 * float(np.exp(rng.normal(0, 0.2)))
        semi = np.array([r * rng.uniform(0.6, 1.1), r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2)])
        center = rng.uniform(0.0, 1.0, size=3) * (depth_px, h, w)
        center[0] = rng.uniform(0.15, 0.85) * depth_px
        nuclei.append((center, semi, float(rng.uniform(0, np.pi)), _harmonics(rng, look.irregularity),
                       float(rng.uniform(*look.brightness))))  # fmt: skip
    order = rng.permutation(n_nuclei)
    texture = _texture(rng, (n_slices, h, w), look.texture)
    spots = _spots(rng, (n_slices, h, w), look.spots)
    clean = np.zeros((n_slices, h, w), dtype=np.float32)
    labels = np.zeros((n_slices, h, w), dtype=np.uint16)
    for z in range(n_slices):
        zc = (z + 0.5) * aniso
        drawn = []
        for k in order:
            center, semi, angle, harm, bright = nuclei[k]
            dz = (zc - center[0]) / semi[0]
            if abs(dz) >= 1.0:
                continue
            s = np.sqrt(1.0 - dz * dz)
            blob = _Blob(center[1], center[2], semi[1] * s, semi[2] * s, angle, harm, bright)
            drawn.append((int(k) + 1, blob))
        clean[z], labels[z] = _render(drawn, shape, look, texture[z], spots[z])
    blurred = ndimage.gaussian_filter(clean, sigma=(0.6 * aniso / 2.0, 0, 0))
    image = _camera(rng, blurred, look, _illumination(rng, shape, look.unevenness)[None], labels > 0)
    return SyntheticStack(image=image, labels=labels, scale=(0.5 * aniso, 0.5, 0.5), axes="zyx")
