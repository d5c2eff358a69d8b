"""Precision chosen by the hardware (``runtime.choose_precision``) and the bfloat16 CPU kernel.

The choice is checked on the feature flags of the CPUs this project runs on (an Intel Xeon
with AMX, an AMD EPYC with AVX512-BF16, an AMD EPYC with AVX2 only), not only on this one.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_sam2 import load_model, runtime
from napari_sam2.engine.session import VideoSession
from napari_sam2.errors import InputError
from napari_sam2.model import common, transformer
from napari_sam2.model.transformer import RoPEAttention

from .parity import FIXTURES

# feature flags as /proc/cpuinfo lists them on the three kinds of machine seen
XEON_AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
EPYC_AVX512_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
EPYC_AVX2 = frozenset({"avx", "avx2", "fma"})


@pytest.mark.parametrize(
    ("flags", "dtype", "because"),
    [(XEON_AMX, "bfloat16", "amx_bf16"), (EPYC_AVX512_BF16, "bfloat16", "avx512_bf16"), (EPYC_AVX2, "float32", "emulated")],
)
def test_auto_uses_bfloat16_only_where_the_cpu_computes_it(flags, dtype, because):
    p = runtime.choose_precision("auto", "cpu", flags=flags)
    assert p.dtype == dtype
    assert because in p.reason and p.reason.startswith("auto:")
    assert not p.slow


def test_asking_for_bfloat16_on_a_cpu_without_it_is_marked_slow():
    slow = runtime.choose_precision("bfloat16", "cpu", flags=EPYC_AVX2)
    assert (slow.dtype, slow.slow) == ("bfloat16", True)
    assert "slower than float32" in slow.reason
    fast = runtime.choose_precision("bfloat16", "cpu", flags=EPYC_AVX512_BF16)
    assert (fast.dtype, fast.slow) == ("bfloat16", False)


def test_float32_is_float32_everywhere():
    for flags in (XEON_AMX, EPYC_AVX2):
        assert runtime.choose_precision("float32", "cpu", flags=flags).dtype == "float32"
    assert runtime.choose_precision("float32", "cuda", cuda_bf16=True).dtype == "float32"


def test_gpus_and_other_devices():
    assert runtime.choose_precision("auto", "cuda", cuda_bf16=True).dtype == "bfloat16"
    assert runtime.choose_precision("auto", "cuda:1", cuda_bf16=False).dtype == "float32"
    assert runtime.choose_precision("auto", "mps").dtype == "float32"
    assert runtime.choose_precision("bfloat16", "mps").slow


def test_unknown_precision_is_a_one_line_error():
    with pytest.raises(InputError, match="precision must be one of auto, float32, bfloat16, got 'half'"):
        runtime.choose_precision("half", "cpu")


def test_cpu_flags_are_read_from_this_machine():
    flags = runtime.cpu_flags()
    assert isinstance(flags, frozenset)
    try:
        with open("/proc/cpuinfo") as f:
            has_flags_line = any(line.startswith("flags") for line in f)
    except OSError:
        has_flags_line = False
    if has_flags_line:  # an x86 Linux machine always lists sse2
        assert "sse2" in flags


# ---------------------------------------------------------------- the chunked kernel
@pytest.mark.parametrize(("n_q", "n_k", "d_v"), [(600, 700, 32), (256, 65, 32), (1000, 300, 8)])
def test_chunked_attention_is_softmax_attention(n_q, n_k, d_v):
    g = torch.Generator().manual_seed(n_q)
    q, k = torch.randn(2, 1, n_q, 32, generator=g), torch.randn(2, 1, n_k, 32, generator=g)
    v = torch.randn(2, 1, n_k, d_v, generator=g)
    expected = torch.softmax(q @ k.transpose(-2, -1) / 32**0.5, dim=-1) @ v
    torch.testing.assert_close(common.chunked_attention(q, k, v), expected, rtol=1e-5, atol=1e-5)
    if d_v == 32:
        torch.testing.assert_close(common.chunked_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_chunked_kernel_is_taken_for_bfloat16_on_cpus_without_amx(monkeypatch):
    q32, q16 = torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 4, 8, dtype=torch.bfloat16)
    monkeypatch.setattr(runtime, "cpu_flags", lambda: EPYC_AVX512_BF16)
    assert common.chunked_wins(q16) and not common.chunked_wins(q32)
    monkeypatch.setattr(runtime, "cpu_flags", lambda: XEON_AMX)
    assert not common.chunked_wins(q16)


def test_memory_cross_attention_on_raw_values_is_the_same_sum(monkeypatch):
    """Averaging the 64-wide memories and projecting after equals projecting every value first."""
    torch.manual_seed(0)
    attn = RoPEAttention(64, 1, kv_in_dim=16, rope_k_repeat=True).eval()
    q, memory = torch.randn(2, 64, 64), torch.randn(2, 3 * 64 + 5, 16)
    with torch.inference_mode():
        monkeypatch.setattr(transformer, "chunked_wins", lambda q: False)
        projected_first = attn(q, memory, memory, num_k_exclude_rope=5)
        monkeypatch.setattr(transformer, "chunked_wins", lambda q: True)
        raw_values = attn(q, memory, memory, num_k_exclude_rope=5)
    torch.testing.assert_close(raw_values, projected_first, rtol=1e-5, atol=1e-6)
    assert not torch.equal(raw_values, attn(q, memory.flip(1), memory.flip(1), num_k_exclude_rope=5))


# ---------------------------------------------------------------- the session
@pytest.fixture(scope="module")
def model():
    d = FIXTURES / "small_sam2.1"
    return load_model(d / "checkpoint.pt", config=d / "config.json")


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return np.load(FIXTURES / "small_sam2.1" / "video.npz")["frames"][:6]


@pytest.fixture(scope="module")
def cells():
    """The shipped model and a synthetic time-lapse it tracks (random weights are too fragile
    to compare precisions on: their masks flip with any rounding)."""
    from napari_sam2.synthetic.cells import cell_timelapse

    return load_model("napari-sam2-cells"), cell_timelapse(8, (128, 128), 6, seed=3)


def _track(model, stack, compute_dtype: str) -> tuple[VideoSession, list[np.ndarray], list[int]]:
    first = stack.labels[0]
    ids = [int(i) for i in np.unique(first) if i][:4]
    with VideoSession(model, stack.image, compute_dtype=compute_dtype) as s:
        for i in ids:
            yy, xx = np.nonzero(first == i)
            s.add_prompt(0, i, points=[[xx.mean(), yy.mean()]], labels=[1])
        return s, [r.label_image() for r in s.propagate()], ids


@pytest.mark.parametrize("chunked", [True, False])
def test_bfloat16_tracks_like_float32(cells, monkeypatch, chunked):
    """Both bfloat16 kernels (chunked, and fused as with AMX) give the float32 masks within IoU 0.95."""
    model, stack = cells
    monkeypatch.setattr(runtime, "cpu_flags", lambda: EPYC_AVX512_BF16 if chunked else XEON_AMX)
    _, exact, ids = _track(model, stack, "float32")
    session, fast, _ = _track(model, stack, "bfloat16")
    assert session.compute_dtype == torch.bfloat16
    ious = []
    for a, b in zip(exact, fast):
        for i in ids:
            union = ((a == i) | (b == i)).sum()
            if union:
                ious.append(((a == i) & (b == i)).sum() / union)
    assert len(ious) >= 3 * len(exact)  # the cells are tracked, not lost
    assert min(ious) >= 0.95


def test_auto_session_says_what_it_chose(model, clip, monkeypatch):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: EPYC_AVX2)
    with VideoSession(model, clip, compute_dtype="auto") as s:
        assert s.compute_dtype == torch.float32 and s.precision.dtype == "float32"
        assert "no hardware bfloat16" in s.precision.reason
    monkeypatch.setattr(runtime, "cpu_flags", lambda: XEON_AMX)
    with VideoSession(model, clip, compute_dtype="auto") as s:
        assert s.compute_dtype == torch.bfloat16 and "amx_bf16" in s.precision.reason
    with pytest.raises(InputError, match="compute_dtype must be one of auto, float32, bfloat16"):
        VideoSession(model, clip, compute_dtype="float16")


def test_the_cli_warns_before_work_about_emulated_bfloat16(monkeypatch, capsys):
    from napari_sam2.cli.segment import _warn_if_slow

    args = argparse.Namespace(device="cpu", compute_dtype="bfloat16", scheduler="local")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: EPYC_AVX2)
    _warn_if_slow(args)
    assert "warning: bfloat16 as asked, but this CPU has no hardware bfloat16" in capsys.readouterr().err
    monkeypatch.setattr(runtime, "cpu_flags", lambda: EPYC_AVX512_BF16)
    _warn_if_slow(args)
    _warn_if_slow(argparse.Namespace(device="cpu", compute_dtype="auto"))
    assert capsys.readouterr().err == ""
