"""Shared test setup: fast deterministic CPU torch, and where the fixtures live."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Random-weight models produce denormal floats that slow CPU math by 10-20x; flush them
# (before set_num_threads, see shared/design/ENVIRONMENT.md). Two threads = this machine.
torch.set_flush_denormal(True)
torch.set_num_threads(2)

FIXTURES_DIR = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    """The folder of generated parity fixtures (see tests/fixtures/README.md)."""
    return FIXTURES_DIR


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never download: every hub call napari_sam2 makes fails (a test may patch it again)."""
    import huggingface_hub

    def refuse(*args: object, **kwargs: object) -> str:
        raise OSError("tests must not touch the network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", refuse)
