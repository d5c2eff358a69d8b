"""Two simple fixed-look stacks the tests and benchmarks use.

:func:`fluorescence_timelapse` (cells drifting and deforming) and :func:`nuclei_stack`
(ellipsoidal nuclei in a z-stack): one look each, few knobs, cheap to make. The randomised
generators the shipped model is trained and evaluated on are in
:mod:`napari_sam2.synthetic.cells`. Every function takes a ``seed`` and returns the same
data for the same arguments.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .samples import SyntheticStack

__all__ = ["fluorescence_timelapse", "nuclei_stack"]


def _background(rng: np.random.Generator, shape: tuple[int, int], level: float) -> np.ndarray:
    """Smooth uneven illumination: a tilted plane plus a broad Gaussian blob, (Y, X) float."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gy, gx = rng.uniform(-0.3, 0.3, size=2)
    plane = 1.0 + gy * (yy / h - 0.5) + gx * (xx / w - 0.5)
    cy, cx = rng.uniform(0.2, 0.8, size=2) * (h, w)
    blob = np.exp(-(((yy - cy) / (0.6 * h)) ** 2 + ((xx - cx) / (0.6 * w)) ** 2))
    return level * (plane + 0.5 * blob)


def _texture(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Smooth multiplicative texture around 1 (chromatin-like), float32."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    noise /= noise.std() + 1e-6
    return 1.0 + 0.15 * noise


def _camera(rng: np.random.Generator, clean: np.ndarray, blur: float, read_noise: float) -> np.ndarray:
    """Optical blur, Poisson shot noise and Gaussian read noise -> uint16."""
    blurred = ndimage.gaussian_filter(clean, sigma=(0,) * (clean.ndim - 2) + (blur, blur))
    counts = rng.poisson(np.clip(blurred, 0, None)).astype(np.float32)
    counts += rng.normal(0.0, read_noise, size=counts.shape).astype(np.float32)
    return np.clip(counts, 0, 65535).astype(np.uint16)


def fluorescence_timelapse(
    n_frames: int = 16,
    shape: tuple[int, int] = (128, 160),
    n_cells: int = 6,
    *,
    seed: int = 0,
    pixel_size: float = 0.5,
    frame_interval: float = 1.0,
) -> SyntheticStack:
    """Fluorescent cells drifting and deforming over time, with their tracks as labels.

    Each cell is an ellipse with its own brightness and texture that moves with a constant
    drift plus a small random walk, rotates slowly and breathes (its axes oscillate).
    Cells are drawn in id order, so a later cell covers an earlier one where they touch.

    Parameters
    ----------
    n_frames : int
        Number of time points.
    shape : (int, int)
        Frame size (Y, X) in pixels.
    n_cells : int
        Number of cells (label ids 1..n_cells).
    seed : int
        Seed of everything random.
    pixel_size, frame_interval : float
        Become ``scale = (frame_interval, pixel_size, pixel_size)``.

    Returns
    -------
    SyntheticStack
        ``image`` (T, Y, X) uint16, ``labels`` (T, Y, X) uint16, ``axes = "tyx"``.
    """
    if n_frames < 1 or n_cells < 0 or min(shape) < 16:
        raise ValueError("need n_frames >= 1, n_cells >= 0 and frames of at least 16 x 16 pixels")
    rng = np.random.default_rng(seed)
    h, w = shape
    size = min(h, w)
    radii = rng.uniform(0.06, 0.11, size=(n_cells, 2)) * size  # (cells, 2) semi-axes
    centers = rng.uniform(0.2, 0.8, size=(n_cells, 2)) * (h, w)
    drift = rng.normal(0.0, 0.012 * size, size=(n_cells, 2))  # pixels per frame
    angle0 = rng.uniform(0, np.pi, size=n_cells)
    spin = rng.normal(0.0, 0.05, size=n_cells)
    phase = rng.uniform(0, 2 * np.pi, size=n_cells)
    brightness = rng.uniform(300.0, 900.0, size=n_cells)
    background = _background(rng, shape, 60.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    image = np.empty((n_frames, h, w), dtype=np.float32)
    labels = np.zeros((n_frames, h, w), dtype=np.uint16)
    pos = centers.copy()
    for t in range(n_frames):
        frame = background.copy()
        texture = _texture(rng, shape, sigma=1.5)
        for k in range(n_cells):
            breathe = 1.0 + 0.08 * np.sin(phase[k] + 0.5 * t)
            ry, rx = radii[k] * (breathe, 2.0 - breathe)
            a = angle0[k] + spin[k] * t
            dy, dx = yy - pos[k, 0], xx - pos[k, 1]
            u = (dy * np.cos(a) + dx * np.sin(a)) / ry
            v = (-dy * np.sin(a) + dx * np.cos(a)) / rx
            r2 = u * u + v * v
            inside = r2 <= 1.0
            frame[inside] = background[inside] + brightness[k] * (1.0 - 0.3 * r2[inside]) * texture[inside]
            labels[t][inside] = k + 1
        image[t] = frame
        pos += drift + rng.normal(0.0, 0.004 * size, size=pos.shape)
        pos = np.clip(pos, 0.05 * np.array(shape), 0.95 * np.array(shape))
    return SyntheticStack(
        image=_camera(rng, image, blur=1.2, read_noise=6.0),
        labels=labels,
        scale=(float(frame_interval), float(pixel_size), float(pixel_size)),
        axes="tyx",
    )


def nuclei_stack(
    n_slices: int = 24,
    shape: tuple[int, int] = (128, 128),
    n_nuclei: int = 8,
    *,
    seed: int = 0,
    pixel_size: float = 0.5,
    z_step: float = 1.5,
) -> SyntheticStack:
    """A z-stack of fluorescent nuclei: ellipsoids sampled with anisotropic voxels.

    Nuclei are ellipsoids of a physical size (about 4-7 µm semi-axes in xy) placed in a
    volume; slices are ``z_step`` apart and pixels ``pixel_size`` wide, so with the defaults
    a nucleus spans 3x fewer slices than pixels. Out-of-focus light blurs more along z.

    Parameters
    ----------
    n_slices : int
        Number of z slices.
    shape : (int, int)
        Slice size (Y, X) in pixels.
    n_nuclei : int
        Number of nuclei (label ids 1..n_nuclei).
    seed : int
        Seed of everything random.
    pixel_size, z_step : float
        Voxel size in µm; ``scale = (z_step, pixel_size, pixel_size)``.

    Returns
    -------
    SyntheticStack
        ``image`` (Z, Y, X) uint16, ``labels`` (Z, Y, X) uint16, ``axes = "zyx"``.
    """
    if n_slices < 1 or n_nuclei < 0 or min(shape) < 16:
        raise ValueError("need n_slices >= 1, n_nuclei >= 0 and slices of at least 16 x 16 pixels")
    rng = np.random.default_rng(seed)
    h, w = shape
    depth = n_slices * z_step
    zz, yy, xx = np.meshgrid(
        (np.arange(n_slices) + 0.5) * z_step,
        np.arange(h) * pixel_size,
        np.arange(w) * pixel_size,
        indexing="ij",
    )  # (Z, Y, X) physical coordinates, float64
    clean = np.zeros((n_slices, h, w), dtype=np.float32)
    labels = np.zeros((n_slices, h, w), dtype=np.uint16)
    texture = _texture(rng, (n_slices, h, w), sigma=1.2)
    extent = np.array([depth, h * pixel_size, w * pixel_size])
    for k in range(n_nuclei):
        semi = rng.uniform(4.0, 7.0, size=3) * (0.8, 1.0, 1.0)  # (z, y, x) µm
        center = rng.uniform(0.15, 0.85, size=3) * extent
        a = rng.uniform(0, np.pi)
        dz, dy, dx = zz - center[0], yy - center[1], xx - center[2]
        u = (dy * np.cos(a) + dx * np.sin(a)) / semi[1]
        v = (-dy * np.sin(a) + dx * np.cos(a)) / semi[2]
        r2 = (dz / semi[0]) ** 2 + u * u + v * v
        inside = r2 <= 1.0
        clean[inside] = rng.uniform(400.0, 1000.0) * (1.0 - 0.25 * r2[inside]) * texture[inside]
        labels[inside] = k + 1
    clean += _background(rng, shape, 40.0)[None]
    clean = ndimage.gaussian_filter(clean, sigma=(0.8, 0, 0))  # axial blur (out-of-focus light)
    return SyntheticStack(
        image=_camera(rng, clean, blur=1.0, read_noise=5.0),
        labels=labels,
        scale=(float(z_step), float(pixel_size), float(pixel_size)),
        axes="zyx",
    )

