"""napari sample data (``File > Open Sample > SAM 2``), from :mod:`napari_sam2.synthetic`.

Each sample is the image with its physical scale, plus the ground-truth labels (hidden) to
compare SAM 2's masks with.
"""

from __future__ import annotations

from typing import Any

from .synthetic import Appearance, SyntheticStack, cell_timelapse, nuclei_zstack

#: the samples' fixed look: fluorescent nuclei, the shipped model's home ground
_LOOK = Appearance(style="nucleus", brightness=(350.0, 900.0), background=60.0, texture=0.15, blur=1.2)


_UNITS = {"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"}


def _layers(stack: SyntheticStack, name: str) -> list[tuple[Any, dict[str, Any], str]]:
    kind = "time" if stack.axes[0] == "t" else "z"
    # axis labels name the slider ("t" or "z", not "-3"); units make the scale bar physical
    where = {"scale": stack.scale, "axis_labels": tuple(stack.axes), "units": tuple(_UNITS[a] for a in stack.axes)}
    return [
        (stack.image, {"name": name, **where, "colormap": "gray", "metadata": {"axes": stack.axes}}, "image"),
        (stack.labels, {"name": f"{name} ground truth", **where, "visible": False,
                        "metadata": {"axes": stack.axes, "note": f"synthetic ground truth along {kind}"}}, "labels"),
    ]  # fmt: skip


def timelapse() -> list[tuple[Any, dict[str, Any], str]]:
    """Fluorescent cells moving, deforming and dividing over 30 time points, (T, Y, X) uint16."""
    stack = cell_timelapse(30, (256, 256), n_cells=7, seed=3, appearance=_LOOK, speed=0.008)
    return _layers(stack, "cells time-lapse")


def zstack() -> list[tuple[Any, dict[str, Any], str]]:
    """Nuclei in a 32-slice anisotropic z-stack (Z, Y, X) uint16, z step 1.5 µm, pixels 0.5 µm."""
    return _layers(nuclei_zstack(32, (256, 256), n_nuclei=14, seed=1, appearance=_LOOK, anisotropy=3.0), "nuclei z-stack")
