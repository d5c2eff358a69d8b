"""The napari plugin manifest ships in the package and is valid npe2."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")

PACKAGE_MANIFEST = Path(__file__).parents[1] / "src" / "napari_sam2" / "napari.yaml"


def test_manifest_is_valid_and_every_command_resolves_to_a_callable() -> None:
    # npe2 imports a command only when napari first uses it: a renamed module or function
    # would otherwise surface as a menu entry that fails on click
    manifest = npe2.PluginManifest.from_file(PACKAGE_MANIFEST)
    assert manifest.name == "napari-sam2"
    assert manifest.contributions.commands
    for command in manifest.contributions.commands:
        module, _, name = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), command.python_name


def test_installed_distribution_exposes_the_manifest() -> None:
    manifest = npe2.PluginManifest.from_distribution("napari-sam2")
    assert manifest.name == "napari-sam2"
