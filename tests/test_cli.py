"""``python -m napari_sam2 segment-image``: the README's first command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_sam2.__main__ import main
from napari_sam2.model.sam2 import SAM2

from .parity import SMALL_CONFIG as SMALL

EXAMPLE = Path(__file__).parents[1] / "examples" / "coins.png"



def test_readme_command_offline_segments_the_coin_with_the_bundled_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # conftest makes every hub download fail, as on an offline machine: the bundled model runs
    out = tmp_path / "mask.tif"
    code = main(["segment-image", str(EXAMPLE), "--point", "155", "50", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    mask = tifffile.imread(out) > 0
    rows, cols = np.nonzero(mask)
    # the coin under the click: about 45 px across, centred near (155, 52); nothing else
    assert 1200 < mask.sum() < 2400
    assert 125 <= cols.min() and cols.max() <= 185 and 22 <= rows.min() and rows.max() <= 80
    assert mask[50, 155]


def test_offline_without_official_weights_prints_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mask.tif"
    code = main(["segment-image", str(EXAMPLE), "--point", "155", "50", "--model", "sam2.1_hiera_tiny", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "sam2.1_hiera_tiny" in lines[0] and "--checkpoint FILE" in lines[0]
    assert "Traceback" not in captured.err
    assert not out.exists()


def test_segment_image_writes_the_best_mask(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    checkpoint = tmp_path / "small.pt"
    torch.save({"model": SAM2(SMALL).state_dict()}, checkpoint)
    config = tmp_path / "small.json"
    config.write_text(SMALL.to_json())
    out = tmp_path / "out" / "mask.tif"
    code = main(
        ["segment-image", str(EXAMPLE), "--point", "155", "50", "--negative", "20", "20",
         "--box", "120", "20", "190", "80", "--checkpoint", str(checkpoint), "--config", str(config),
         "-o", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    mask = tifffile.imread(out)
    assert mask.shape == (303, 384) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    assert "predicted IoU" in capsys.readouterr().out


def test_missing_prompt_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["segment-image", str(EXAMPLE), "-o", str(tmp_path / "m.tif")]) == 2
    assert "--point" in capsys.readouterr().err


def test_missing_image_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.png"
    code = main(["segment-image", str(missing), "--point", "1", "1", "-o", str(tmp_path / "m.tif")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "none.png" in err and "does not exist" in err


def test_importing_the_package_does_not_import_torch() -> None:
    # napari imports the package to read its manifest: keep that cheap.
    code = "import sys, napari_sam2; assert 'torch' not in sys.modules; print(napari_sam2.__version__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
