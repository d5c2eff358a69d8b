"""How a synthetic sample looks: the object styles and a random or fixed :class:`Appearance`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["STYLES", "TRAINING_STYLES", "Appearance"]

STYLES = ("nucleus", "cell", "membrane", "inverted")
#: the styles the shipped model is trained on (``membrane`` is kept back as a "new look")
TRAINING_STYLES = ("nucleus", "cell", "inverted")
_STYLE_WEIGHT = {"nucleus": 0.45, "cell": 0.3, "membrane": 0.3, "inverted": 0.2}


@dataclass(frozen=True)
class Appearance:
    """How a synthetic sample looks (all intensities in photon counts)."""

    style: str = "nucleus"
    brightness: tuple[float, float] = (300.0, 900.0)  # range of per-object brightness
    background: float = 60.0  # mean background level
    unevenness: float = 0.5  # strength of the uneven illumination
    texture: float = 0.15  # multiplicative texture amplitude
    spots: float = 0.3  # bright spots (nucleoli, vesicles) amplitude
    blur: float = 1.2  # optical blur sigma, pixels
    read_noise: float = 6.0  # Gaussian read noise, counts
    gain: float = 1.0  # photons per count: > 1 means less shot noise
    irregularity: float = 0.08  # boundary roughness (radial harmonics amplitude)

    @staticmethod
    def sample(rng: np.random.Generator, styles: tuple[str, ...] = TRAINING_STYLES) -> "Appearance":
        """A random appearance of one of ``styles``."""
        bad = sorted(set(styles) - set(STYLES))
        if bad or not styles:
            raise ValueError(f"unknown styles {bad}; known: {', '.join(STYLES)}")
        weights = np.array([_STYLE_WEIGHT[s] for s in styles])
        style = styles[int(rng.choice(len(styles), p=weights / weights.sum()))]
        low = float(np.exp(rng.uniform(np.log(40.0), np.log(1500.0))))
        contrast = float(np.exp(rng.uniform(np.log(1.3), np.log(4.0))))
        return Appearance(
            style=style,
            brightness=(low * 0.6, low * 1.4),
            background=float(low / contrast),
            unevenness=float(rng.uniform(0.0, 0.9)),
            texture=float(rng.uniform(0.03, 0.35)),
            spots=float(rng.uniform(0.0, 0.6)),
            blur=float(rng.uniform(0.5, 2.2)),
            read_noise=float(rng.uniform(0.5, 0.15 * low)),
            gain=float(np.exp(rng.uniform(np.log(0.3), np.log(8.0)))),
            irregularity=float(rng.uniform(0.0, 0.18)),
        )
