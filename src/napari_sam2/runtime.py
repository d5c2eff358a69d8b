"""Where the work runs: CPU cores, torch threads, device and dtype.

The one home of these settings for every driver (the napari widget, the CLI, dask batch,
fine-tuning, training): each calls :func:`configure_torch` in the thread that will run torch,
and :func:`pick_device` / :func:`pick_dtype` when it builds a model.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:
    import torch


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a cluster job's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads(workers: int = 1) -> int:
    """Torch threads per process when the user names none: all cores but one, shared by ``workers``.

    The core left free is what keeps torch fast on a busy machine: with every core in its
    thread team, OpenMP's spin-waiting threads fight whatever else runs (napari's UI, another
    job); issue 22 reported ``segment`` 6x slower that way on a busy 2-core machine.
    """
    return max(1, (cpu_cores() - 1) // max(1, workers))


def configure_torch(threads: int | None = None) -> None:
    """Flush denormal floats in this thread, then use ``threads`` intra-op threads (process-wide).

    Call it in the thread that runs torch: OpenMP reads the thread count per thread, and
    napari re-uses its worker threads. The flush comes before ``set_num_threads``, as the
    shared ENVIRONMENT notes say; denormals slowed one training step 20x (8.4 s to 0.40 s).
    ``None`` keeps the thread count.
    """
    import torch

    torch.set_flush_denormal(True)
    if threads is not None and int(threads) >= 1 and int(threads) != torch.get_num_threads():
        torch.set_num_threads(int(threads))


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA if present, else Apple's MPS, else the CPU; anything else as torch names it."""
    import torch

    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A torch dtype from its name (``"float32"``, ``"torch.bfloat16"``); None stays None."""
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(value, torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}; use e.g. 'float32' or 'bfloat16'")
    return value
