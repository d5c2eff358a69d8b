"""Shared helpers for the benchmarks: machine description, timing, the official reference."""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _cpuinfo_fields(names: tuple[str, ...]) -> dict[str, str]:
    """The first value of each named field of /proc/cpuinfo (empty where it cannot be read)."""
    found: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in names and key.strip() not in found:
                found[key.strip()] = value.strip()
    except OSError:
        pass
    return found


def machine() -> dict:
    """CPU model, core and torch thread counts, versions."""
    import torch

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from napari_sam2.runtime import choose_precision, cpu_flags, native_bf16_flag

    family = {k: v for k, v in _cpuinfo_fields(("cpu family", "model")).items()}
    return {
        "cpu": cpu,
        "cpu_family_model": family,
        "native_bf16": native_bf16_flag(cpu_flags()),  # amx_bf16, avx512_bf16 or None
        "auto_precision": choose_precision("auto", "cpu").dtype,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def timeit(fn: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def load_fixture_script(stem: str = "make_fixtures"):
    """tests/fixtures/<stem>.py as a module (the official builders, from our configs).

    Needs the official ``sam2`` package importable (the side venv of tests/fixtures/README.md).
    """
    path = REPO / "tests" / "fixtures" / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(f"_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"_{stem}"] = module
    spec.loader.exec_module(module)
    return module


def have_reference() -> bool:
    return importlib.util.find_spec("sam2") is not None


def official_video_state(tools, official, frames, image_size: int):
    """The official predictor's inference state on (T, H, W, 3) uint8 ``frames``, loaded as
    the video parity fixtures load them (``tools``: tests/fixtures/make_video_fixtures.py),
    with its bfloat16 memory read patched so that backward runs do not crash on CPU."""
    tools.patch_bf16_memory_read(official)
    images = tools.preprocess(frames, image_size, tools.mf.DEFAULT_SHIM)
    with tools.frames_loader(images, *frames.shape[1:3]):
        return official.init_state(video_path="<bench>")
