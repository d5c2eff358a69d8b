"""Averaging the weights of models of one architecture (how napari-sam2-cells was made)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from factory.average import average_models, main
from napari_sam2 import load_model
from napari_sam2.errors import InputError
from napari_sam2.finetune.loop import export_model
from napari_sam2.model.sam2 import SAM2

from .parity import SMALL_CONFIG


def _model(seed: int, config=SMALL_CONFIG) -> SAM2:
    torch.manual_seed(seed)
    return SAM2(config).eval()


def test_the_average_is_the_mean_of_every_weight_and_loads(tmp_path):
    a, b = _model(0), _model(1)
    soup = average_models([a, b])
    sa, sb, ss = a.state_dict(), b.state_dict(), soup.state_dict()
    moved = 0
    for key, value in ss.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (sa[key] + sb[key]) / 2)
            moved += int(not torch.equal(value, sa[key]))
    assert moved > 10  # the two random models differ, so the mean is neither of them
    paths = [export_model(m, tmp_path / f"{n}.pt", dtype=torch.float32) for n, m in (("a", a), ("b", b))]
    out = tmp_path / "soup.pt"
    assert main([str(p) for p in paths] + ["-o", str(out)]) == 0
    loaded = load_model(out)
    for key, value in loaded.state_dict().items():
        if value.is_floating_point():  # stored in fp16
            torch.testing.assert_close(value, ss[key].half().float())
    assert "averaged_from" in torch.load(out, weights_only=True)


def test_models_of_different_configs_or_too_few_are_refused(tmp_path, capsys):
    other = dataclasses.replace(SMALL_CONFIG, num_maskmem=SMALL_CONFIG.num_maskmem - 1)
    with pytest.raises(InputError, match="different configs"):
        average_models([_model(0), _model(1, other)])
    with pytest.raises(InputError, match="at least two"):
        average_models([_model(0)])
    path = export_model(_model(0), tmp_path / "a.pt")
    assert main([str(path), "-o", str(tmp_path / "x.pt")]) == 2
    assert "at least two" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_a_calibration_is_not_averaged_into_the_mean():
    """A presence calibration belongs to the weights it was chosen for: the mean has none,
    and models that differ only in their calibration still average."""
    a = _model(0, dataclasses.replace(SMALL_CONFIG, presence_bias_t=1.0, presence_bias_z=-2.0))
    b = _model(1, dataclasses.replace(SMALL_CONFIG, presence_bias_t=0.5))
    soup = average_models([a, b])
    assert (soup.config.presence_bias_t, soup.config.presence_bias_z) == (0.0, 0.0)
    assert soup.config == SMALL_CONFIG.architecture() == SMALL_CONFIG
    assert a.config.architecture() == SMALL_CONFIG
    assert a.config.presence_bias("t") == 1.0 and a.config.presence_bias("z") == -2.0 and a.config.presence_bias(None) == 0.0
    with pytest.raises(ValueError, match="'t' \\(time-lapse\\) or 'z'"):
        a.config.presence_bias("c")
