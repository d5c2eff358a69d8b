"""Which SAM 2 to load and where: the model and device pickers, and the loading job."""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, FileEdit, SpinBox

from ..runtime import PRECISIONS, default_threads  # all cores but one: the one left keeps napari's UI responsive
from ..errors import InputError
from .tasks import Progress

#: the model-picker entry that shows the checkpoint and config file fields
FROM_FILE = "load checkpoint file…"

PRECISION_HELP = (
    "auto: bfloat16 where this machine computes it in hardware (a CPU with AMX-BF16 or AVX512-BF16, a "
    "GPU from Ampere on), float32 elsewhere. float32: the official numbers. bfloat16: about 2x faster "
    "where native, but slower than float32 where the CPU only emulates it. Takes effect at Start."
)


@dataclass(frozen=True)
class ModelChoice:
    """A model to load: an official registry name, or a checkpoint file (+ optional config JSON)."""

    name: str | None = None
    checkpoint: Path | None = None
    config: Path | None = None
    device: str = "cpu"
    precision: str = "auto"  # runtime.PRECISIONS: auto picks bfloat16 only where the hardware has it

    @property
    def weights(self) -> tuple[Any, ...]:
        """What the loaded network depends on (not the precision: one network computes in both)."""
        return self.name, self.checkpoint, self.config, self.device

    @property
    def label(self) -> str:
        return self.name if self.name is not None else str(self.checkpoint)

    def check(self) -> None:
        if self.name is None and (self.checkpoint is None or str(self.checkpoint) in ("", ".")):
            raise InputError("no checkpoint file chosen: pick a .pt file under 'checkpoint', or a model name")


def available_devices() -> list[str]:
    """cpu, plus cuda and mps when this torch build and machine have them."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.insert(0, "cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.insert(0, "mps")
    return devices


def load_job(choice: ModelChoice) -> Generator[Progress, None, Any]:
    """Load the model (a worker job): one step, returns the SAM2 network."""
    from ..weights import load_model

    choice.check()
    yield Progress(0, 1)
    source = choice.name if choice.name is not None else choice.checkpoint
    model = load_model(source, device=choice.device, config=choice.config)
    yield Progress(1, 1)
    return model


class ModelPicker(Container):
    """Model name or checkpoint file (+ config JSON), the device and the CPU thread count."""

    def __init__(self) -> None:
        from ..weights import BUNDLED, REGISTRY, default_model

        self.model = ComboBox(label="model", choices=[*BUNDLED, *REGISTRY, FROM_FILE], value=default_model())
        self.model.tooltip = (
            "napari-sam2-cells: our small model, shipped with the plugin, for fluorescence-like cells "
            "and nuclei (works offline); an official SAM 2 model (downloaded once from the Hugging Face "
            "Hub, then cached) for everything else; or a checkpoint file of your own (e.g. fine-tuned)"
        )
        self.checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.pt *.pth *.ckpt *.bin *.safetensors")
        self.config = FileEdit(label="config (optional)", mode="r", filter="*.json")
        self.config.tooltip = "SAM2Config JSON, needed only for checkpoints that are not an official variant"
        self.device = ComboBox(label="device", choices=available_devices())
        self.threads = SpinBox(label="CPU threads", min=1, max=max(1, os.cpu_count() or 1), value=default_threads())
        self.threads.tooltip = (
            "torch threads for the whole napari process; the default leaves one core to napari's UI "
            "(using every core made clicks up to 100x slower on a busy machine)"
        )
        self.precision = ComboBox(label="precision", choices=list(PRECISIONS), value="auto")
        self.precision.tooltip = PRECISION_HELP
        super().__init__(widgets=[self.model, self.checkpoint, self.config, self.device, self.precision, self.threads])
        self.model.changed.connect(self._show_file_fields)
        self._show_file_fields()

    def _show_file_fields(self, *_: Any) -> None:
        from_file = self.model.value == FROM_FILE
        self.checkpoint.visible = from_file
        self.config.visible = from_file

    def choice(self) -> ModelChoice:
        device, precision = str(self.device.value), str(self.precision.value)
        if self.model.value != FROM_FILE:
            return ModelChoice(name=str(self.model.value), device=device, precision=precision)
        ckpt = Path(self.checkpoint.value) if self.checkpoint.value else None
        cfg = Path(self.config.value) if self.config.value and str(self.config.value) not in ("", ".") else None
        return ModelChoice(checkpoint=ckpt, config=cfg, device=device, precision=precision)

    def show_precision(self, reason: str) -> None:
        """Say in the precision tooltip what the running session computes in, and why."""
        self.precision.tooltip = f"{PRECISION_HELP}\n\nNow: {reason}."

    def set_checkpoint(self, checkpoint: str | Path, config: str | Path | None = None) -> None:
        """Select "load checkpoint file…" with these files (scripts and tests)."""
        self.model.value = FROM_FILE
        self.checkpoint.value = Path(checkpoint)
        if config is not None:
            self.config.value = Path(config)
