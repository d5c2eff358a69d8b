"""The napari plugin manifest ships in the package and is valid npe2."""

from __future__ import annotations

from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")

PACKAGE_MANIFEST = Path(__file__).parents[1] / "src" / "napari_sam2" / "napari.yaml"


def test_manifest_is_valid() -> None:
    manifest = npe2.PluginManifest.from_file(PACKAGE_MANIFEST)
    assert manifest.name == "napari-sam2"
    assert manifest.display_name == "SAM 2"


def test_installed_distribution_exposes_the_manifest() -> None:
    manifest = npe2.PluginManifest.from_distribution("napari-sam2")
    assert manifest.name == "napari-sam2"
