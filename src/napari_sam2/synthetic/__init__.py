"""Seeded synthetic fluorescence microscopy with ground truth: images, time-lapses, z-stacks.

Small and fast (numpy + scipy only). Two families live here:

* the randomised generators the shipped model is trained and evaluated on
  (:mod:`~napari_sam2.synthetic.cells`): :func:`cells_image`, :func:`cell_timelapse`
  (drift, deformation, divisions, cells leaving and re-entering, occlusion, blinking) and
  :func:`nuclei_zstack` (anisotropic ellipsoids), each with a random or fixed
  :class:`Appearance`; :func:`divisions` reads a time-lapse's divisions back from its
  labels; the plugin's sample data uses them;
* :func:`fluorescence_timelapse` and :func:`nuclei_stack` (:mod:`~napari_sam2.synthetic.simple`):
  simpler fixed-look stacks the tests and benchmarks use.

Every function takes a ``seed`` and returns the same data for the same arguments.
"""

from .appearance import STYLES, TRAINING_STYLES, Appearance
from .cells import cell_timelapse, cells_image, divisions, nuclei_zstack
from .samples import SyntheticImage, SyntheticStack
from .simple import fluorescence_timelapse, nuclei_stack

__all__ = [
    "STYLES",
    "TRAINING_STYLES",
    "Appearance",
    "SyntheticImage",
    "SyntheticStack",
    "cell_timelapse",
    "cells_image",
    "divisions",
    "fluorescence_timelapse",
    "nuclei_stack",
    "nuclei_zstack",
]
