"""Where the work runs: CPU cores, torch threads, device and dtype.

The one home of these settings for every driver (the napari widget, the CLI, dask batch,
fine-tuning, training): each calls :func:`configure_torch` in the thread that will run torch,
and :func:`pick_device` / :func:`pick_dtype` when it builds a model, and
:func:`choose_precision` for the precision it computes in (``auto``: by the hardware).
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, NamedTuple

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


# --------------------------------------------------------------------------- compute precision

#: the compute precisions a user can ask for; "auto" picks one of the other two per device
PRECISIONS = ("auto", "float32", "bfloat16")

#: CPU feature flags (as Linux names them in /proc/cpuinfo) that compute bfloat16 in hardware
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


class Precision(NamedTuple):
    """The precision a run computes in, and why: what the widget, the CLI and the labels say.

    ``slow`` marks a bfloat16 the device only emulates (asked for explicitly): slower than float32.
    """

    dtype: str  # "float32" or "bfloat16"
    reason: str
    slow: bool = False


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (Linux ``/proc/cpuinfo``, read once); empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16_flag(flags: frozenset[str] | set[str]) -> str | None:
    """The flag by which this CPU computes bfloat16 in hardware (AMX first), or None."""
    return next((f for f in NATIVE_BF16_FLAGS if f in flags), None)


def choose_precision(
    requested: str,
    device: str | torch.device,
    *,
    flags: frozenset[str] | set[str] | None = None,
    cuda_bf16: bool | None = None,
) -> Precision:
    """Resolve ``requested`` (``auto``, ``float32`` or ``bfloat16``) for ``device``.

    ``auto`` is bfloat16 only where the device computes it natively -- a CPU with AMX-BF16
    or AVX512-BF16, a CUDA GPU that supports it (Ampere and later) -- and float32 elsewhere:
    on a CPU without those instructions bfloat16 is emulated, and propagation was measured
    2.4x slower than float32 (issue 25, AMD EPYC with AVX2 only); on Apple's MPS bfloat16
    support depends on the macOS version and was never measured here. ``float32`` gives the
    official numbers. ``flags`` (CPU feature flags) and ``cuda_bf16`` replace what this
    machine reports (tests; another machine's flags).
    """
    if requested not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    kind = str(device).split(":")[0]
    if kind == "cpu":
        flag = native_bf16_flag(cpu_flags() if flags is None else flags)
        native = flag is not None
        why = f"this CPU computes bfloat16 in hardware ({flag})" if native else (
            "this CPU has no hardware bfloat16 (no AMX-BF16 or AVX512-BF16), so bfloat16 is emulated and "
            "slower than float32"
        )  # fmt: skip
    elif kind == "cuda":
        if cuda_bf16 is None:
            import torch

            cuda_bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        native = cuda_bf16
        why = "this GPU computes bfloat16" if native else "this GPU has no bfloat16 (before Ampere)"
    else:
        native = False
        why = f"bfloat16 on {kind} is not known to be faster"
    if requested == "float32":
        return Precision("float32", "float32 as asked (the official numbers)")
    if requested == "bfloat16":
        if native:
            return Precision("bfloat16", f"bfloat16 as asked; {why}")
        return Precision("bfloat16", f"bfloat16 as asked, but {why}", slow=True)
    if native:
        return Precision("bfloat16", f"auto: bfloat16 because {why}")
    return Precision("float32", f"auto: float32 because {why}")
