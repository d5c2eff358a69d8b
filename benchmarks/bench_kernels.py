"""Attention kernels for one full-bank memory cross-attention layer, float32 and bfloat16.

4096 queries (a 64x64 frame) against 7 memories x 4096 + 64 pointer tokens, width 256,
one head -- the shape that dominates SAM 2 tracking. Compares PyTorch's fused
``scaled_dot_product_attention`` with an unfused query-chunked ``softmax(q k^T) v``
on 64-wide raw values (the "average raw memories, project after" algebra)::

    .venv/bin/python benchmarks/bench_kernels.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from common import machine


def bench(fn, repeat: int = 3) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    n_q, n_k, d, d_raw = 4096, 7 * 4096 + 64, 256, 64
    info = machine()
    print(f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['torch_threads']} threads")
    print(f"# one attention: {n_q} queries x {n_k} keys, width {d}")
    for dtype in (torch.float32, torch.bfloat16):
        g = torch.Generator().manual_seed(0)
        q = torch.randn(1, 1, n_q, d, generator=g).to(dtype) * d**-0.5
        k = torch.randn(1, 1, n_k, d, generator=g).to(dtype)
        v = torch.randn(1, 1, n_k, d, generator=g).to(dtype)
        v_raw = torch.randn(1, 1, n_k, d_raw, generator=g).to(dtype)

        def chunked(step: int = 512) -> torch.Tensor:
            out = []
            for s in range(0, n_q, step):
                scores = q[..., s : s + step, :] @ k.transpose(-2, -1)
                out.append(torch.softmax(scores, -1) @ v_raw)
            return torch.cat(out, -2)

        fused = bench(lambda: F.scaled_dot_product_attention(q, k, v, scale=1.0))
        unfused = bench(chunked)
        name = str(dtype).replace("torch.", "")
        print(f"{name:9s} fused SDPA (values 256): {fused:6.3f} s   chunked (raw values 64): {unfused:6.3f} s")


if __name__ == "__main__":
    main()
