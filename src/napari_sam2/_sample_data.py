"""napari sample data (``File > Open Sample > SAM 2``), from :mod:`napari_sam2.data.synthetic`.

Each sample is the image with its physical scale, plus the ground-truth labels (hidden) to
compare SAM 2's masks with.
"""

from __future__ import annotations

from typing import Any

from .data.synthetic import SyntheticStack, fluorescence_timelapse, nuclei_stack


def _layers(stack: SyntheticStack, name: str) -> list[tuple[Any, dict[str, Any], str]]:
    kind = "time" if stack.axes[0] == "t" else "z"
    return [
        (stack.image, {"name": name, "scale": stack.scale, "colormap": "gray", "metadata": {"axes": stack.axes}}, "image"),
        (stack.labels, {"name": f"{name} ground truth", "scale": stack.scale, "visible": False,
                        "metadata": {"axes": stack.axes, "note": f"synthetic ground truth along {kind}"}}, "labels"),
    ]  # fmt: skip


def timelapse() -> list[tuple[Any, dict[str, Any], str]]:
    """Fluorescent cells drifting over 16 time points (T, Y, X) uint16."""
    return _layers(fluorescence_timelapse(n_frames=16, shape=(128, 160), n_cells=6, seed=0), "cells time-lapse")


def zstack() -> list[tuple[Any, dict[str, Any], str]]:
    """Nuclei in a 24-slice anisotropic z-stack (Z, Y, X) uint16, z step 1.5 µm, pixels 0.5 µm."""
    return _layers(nuclei_stack(n_slices=24, shape=(128, 128), n_nuclei=8, seed=0), "nuclei z-stack")
