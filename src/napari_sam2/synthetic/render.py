"""The renderer the randomised generators share (:mod:`napari_sam2.synthetic.cells`).

Objects are deformed ellipses (:class:`_Blob`) drawn in list order (later ones cover
earlier ones) with a style's intensity profile, then the camera adds background, uneven
illumination, blur, shot and read noise. Internal to the package: the names keep their
leading underscore.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from .appearance import Appearance

@dataclass
class _Blob:
    """One object's 2-D shape at one instant (a deformed ellipse)."""

    cy: float
    cx: float
    ry: float
    rx: float
    angle: float
    harm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # rows: (k, amplitude, phase)
    brightness: float = 1.0
    nucleus: tuple[float, float, float] = (0.0, 0.0, 0.5)  # (dy, dx, size) of the inner nucleus


def _harmonics(rng: np.random.Generator, amount: float) -> np.ndarray:
    ks = np.arange(2, 6, dtype=np.float64)
    amp = amount * rng.uniform(0, 1, size=ks.size) / ks
    return np.stack([ks, amp, rng.uniform(0, 2 * np.pi, size=ks.size)], axis=1)


def _radius2(blob: _Blob, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Normalised squared radius (1 on the boundary) of ``blob`` at the given pixel grids."""
    dy, dx = yy - blob.cy, xx - blob.cx
    c, s = np.cos(blob.angle), np.sin(blob.angle)
    u = (dy * c + dx * s) / blob.ry
    v = (-dy * s + dx * c) / blob.rx
    r2 = u * u + v * v
    if blob.harm.size:
        theta = np.arctan2(v, u)
        scale = 1.0 + sum(a * np.cos(k * theta + p) for k, a, p in blob.harm)
        r2 = r2 / np.maximum(scale, 0.3) ** 2
    return r2


def _render(
    blobs: list[tuple[int, _Blob]],
    shape: tuple[int, int],
    look: Appearance,
    texture: np.ndarray,
    spots: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw objects in list order (later ones cover earlier ones): clean float image, labels."""
    h, w = shape
    clean = np.zeros(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint16)
    for label, b in blobs:
        reach = 1.4 * max(b.ry, b.rx) + 2
        y0, y1 = max(int(b.cy - reach), 0), min(int(b.cy + reach) + 1, h)
        x0, x1 = max(int(b.cx - reach), 0), min(int(b.cx + reach) + 1, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        r2 = _radius2(b, yy, xx)
        inside = r2 <= 1.0
        if not inside.any():
            continue
        tex = texture[y0:y1, x0:x1]
        spot = spots[y0:y1, x0:x1]
        if look.style == "membrane":
            profile = 0.12 + 0.88 * np.exp(-(((1.0 - np.sqrt(r2)) / 0.12) ** 2))
        elif look.style == "cell":
            ny, nx, ns = b.nucleus
            nucleus = _radius2(replace(b, cy=b.cy + ny * b.ry, cx=b.cx + nx * b.rx, ry=ns * b.ry, rx=ns * b.rx), yy, xx)
            profile = 0.35 * (1.0 - 0.2 * r2) + 0.65 * np.clip(1.2 - nucleus, 0, 1)
        else:  # nucleus / inverted: filled, brighter in the middle, darker at the rim
            profile = 1.0 - 0.35 * r2
        value = b.brightness * profile * tex * (1.0 + spot)
        region_c = clean[y0:y1, x0:x1]
        region_l = labels[y0:y1, x0:x1]
        region_c[inside] = value[inside]
        region_l[inside] = label
    return clean, labels


def _illumination(rng: np.random.Generator, shape: tuple[int, int], unevenness: float) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gy, gx = rng.uniform(-0.5, 0.5, size=2) * unevenness
    plane = 1.0 + gy * (yy / h - 0.5) + gx * (xx / w - 0.5)
    cy, cx = rng.uniform(0.0, 1.0, size=2) * (h, w)
    blob = np.exp(-(((yy - cy) / (0.7 * h)) ** 2 + ((xx - cx) / (0.7 * w)) ** 2))
    return np.clip(plane + unevenness * (blob - 0.5), 0.2, None).astype(np.float32)


def _texture(rng: np.random.Generator, shape: tuple[int, ...], amount: float) -> np.ndarray:
    sigma = float(rng.uniform(0.8, 2.5))
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    noise /= noise.std() + 1e-6
    return np.clip(1.0 + amount * noise, 0.2, None)


def _spots(rng: np.random.Generator, shape: tuple[int, ...], amount: float) -> np.ndarray:
    if amount <= 0:
        return np.zeros(shape, dtype=np.float32)
    size = int(np.prod(shape))
    field_ = np.zeros(size, dtype=np.float32)
    n = max(1, size // 400)
    field_[rng.integers(0, size, n)] = 1.0
    field_ = ndimage.gaussian_filter(field_.reshape(shape), 1.5)
    return amount * field_ / (field_.max() + 1e-6)


def _camera(
    rng: np.random.Generator, clean: np.ndarray, look: Appearance, illumination: np.ndarray, foreground: np.ndarray
) -> np.ndarray:
    """Background, blur, shot and read noise -> uint16 (works on (Y, X) and (N, Y, X))."""
    if look.style == "inverted":  # absorbing objects: dark on a bright field
        lit = (look.background + look.brightness[1] - clean * foreground) * illumination
    else:
        lit = (look.background + clean) * illumination
    sigma = (0,) * (clean.ndim - 2) + (look.blur, look.blur)
    blurred = ndimage.gaussian_filter(lit, sigma=sigma)
    counts = rng.poisson(np.clip(blurred * look.gain, 0, 1e7)).astype(np.float32) / look.gain
    counts += rng.normal(0.0, look.read_noise, size=counts.shape).astype(np.float32)
    return np.clip(counts, 0, 65535).astype(np.uint16)


def _random_blob(rng: np.random.Generator, cy: float, cx: float, radius: float, look: Appearance) -> _Blob:
    elong = float(np.exp(rng.normal(0.0, 0.25)))
    return _Blob(
        cy=cy,
        cx=cx,
        ry=radius * elong,
        rx=radius / elong,
        angle=float(rng.uniform(0, np.pi)),
        harm=_harmonics(rng, look.irregularity),
        brightness=float(rng.uniform(*look.brightness)),
        nucleus=(float(rng.uniform(-0.25, 0.25)), float(rng.uniform(-0.25, 0.25)), float(rng.uniform(0.35, 0.6))),
    )


def _place(
    rng: np.random.Generator, n: int, shape: tuple[int, int], radius: tuple[float, float], touching: float
) -> list[tuple[float, float, float]]:
    """(cy, cx, radius) of up to ``n`` objects; ``touching`` in [0, 1] lets neighbours overlap more."""
    h, w = shape
    out: list[tuple[float, float, float]] = []
    for _ in range(20 * n):
        if len(out) == n:
            break
        r = float(np.exp(rng.uniform(np.log(radius[0]), np.log(radius[1]))))
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ok = all(np.hypot(cy - y, cx - x) > (1.0 - 0.35 * touching) * (r + q) for y, x, q in out)
        if ok:
            out.append((cy, cx, r))
    return out
