"""The randomised synthetic microscopy generators (training, evaluation, sample data)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_sam2.synthetic import Appearance, cell_timelapse, cells_image, divisions, nuclei_zstack


def test_images_are_seeded_and_labelled():
    a, b = cells_image((96, 112), seed=5), cells_image((96, 112), seed=5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, cells_image((96, 112), seed=6).image)
    assert a.image.shape == a.labels.shape == (96, 112) and a.image.dtype == np.uint16
    assert a.labels.max() >= 2


@pytest.mark.parametrize("style, brighter", [("nucleus", True), ("cell", True), ("inverted", False)])
def test_styles_set_the_contrast(style, brighter):
    look = Appearance(style=style, read_noise=1.0, unevenness=0.0)
    im = cells_image((128, 128), n_cells=6, seed=2, appearance=look)
    inside, outside = im.image[im.labels > 0].mean(), im.image[im.labels == 0].mean()
    assert (inside > 1.5 * outside) if brighter else (inside < 0.8 * outside)


def test_membrane_style_has_a_bright_rim_and_a_dark_inside():
    im = cells_image((128, 128), n_cells=5, seed=4, appearance=Appearance(style="membrane", blur=0.5), radius=(12, 14))
    obj = im.labels == np.bincount(im.labels.ravel())[1:].argmax() + 1
    depth = ndimage.distance_transform_edt(obj)
    rim, core = im.image[obj & (depth <= 2)].mean(), im.image[obj & (depth >= 6)].mean()
    assert rim > 1.5 * core


def test_timelapse_has_divisions_exits_and_returns():
    divided = returned = False
    for seed in range(6):
        st = cell_timelapse(40, (96, 96), n_cells=5, seed=seed, speed=0.03)
        present = np.array([[k in np.unique(f) for k in range(1, st.labels.max() + 1)] for f in st.labels])
        divided |= st.labels.max() > 5 and not present[0, 5:].any()  # new ids appear later
        for track in present.T:  # present, then absent, then present again
            on = np.nonzero(track)[0]
            returned |= on.size > 0 and (np.diff(on) > 1).any()
    assert divided and returned


def test_zstack_is_anisotropic():
    flat = nuclei_zstack(24, (96, 96), n_nuclei=6, seed=1, anisotropy=4.0)
    round_ = nuclei_zstack(24, (96, 96), n_nuclei=6, seed=1, anisotropy=1.0)
    assert flat.scale == (2.0, 0.5, 0.5) and round_.scale == (0.5, 0.5, 0.5)

    def slices_per_nucleus(st):
        return np.mean([len(np.unique(np.nonzero(st.labels == k)[0])) for k in np.unique(st.labels) if k])

    assert slices_per_nucleus(flat) < 0.5 * slices_per_nucleus(round_)


def test_division_mother_keeps_her_place_and_id():
    """At a division the cell that keeps the id is the one where the mother was; the new id
    buds off beside her (otherwise which daughter keeps the id is a coin flip)."""
    shifts, gaps = [], []
    for seed in range(6):
        st = cell_timelapse(40, (96, 96), n_cells=5, seed=seed, speed=0.01, leave=False)
        lab = st.labels
        for t, child, mother in divisions(lab):  # the mother: the old id the child touches at birth
            if not (lab[t - 1] == mother).any():
                continue
            before = np.array(ndimage.center_of_mass(lab[t - 1] == mother))
            shifts.append(np.linalg.norm(np.array(ndimage.center_of_mass(lab[t] == mother)) - before))
            gaps.append(np.linalg.norm(np.array(ndimage.center_of_mass(lab[t] == child)) - before))
    assert len(shifts) >= 3
    ratio = np.asarray(shifts) / np.asarray(gaps)
    assert np.median(ratio) < 0.25 and np.mean(ratio < 0.5) > 0.85, ratio  # symmetric split: ~1
