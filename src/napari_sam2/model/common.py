"""Small building blocks shared by several SAM 2 components."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """A stack of linear layers with an activation between them.

    Arguments:
        in_dim: input features.
        hidden_dim: features of every hidden layer.
        out_dim: output features.
        num_layers: number of linear layers (>= 1).
        activation: activation module class used between layers.
        sigmoid_output: apply a sigmoid to the output.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int,
        *,
        activation: type[nn.Module] = nn.ReLU,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise channels-last, then back: (B, C, H, W) -> (B, H, W, C) -> (B, C, H, W)
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


#: below this many keys, plain matmul-softmax-matmul beats the fused CPU kernel
_FEW_KEYS = 64


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention over the last two axes, (..., Nq, D) x (..., Nk, D).

    With only a few keys (prompt tokens) the scores are formed explicitly, laid out so
    the softmax runs along the long query axis (the fused kernel's blocking is wasted
    there); otherwise PyTorch's fused ``scaled_dot_product_attention``, which on this
    CPU beats an unfused chunked kernel in float32 and by far in bfloat16 (measured in
    benchmarks/bench_kernels.py).
    """
    n_q, n_k = q.shape[-2], k.shape[-2]
    if n_k <= _FEW_KEYS and n_q > n_k:
        scores_t = k @ (q * q.shape[-1] ** -0.5).transpose(-2, -1)  # (..., Nk, Nq)
        return scores_t.softmax(dim=-2).transpose(-2, -1) @ v
    if chunked_wins(q):
        return chunked_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


#: queries per block of :func:`chunked_attention` (one block's scores: 256 x keys)
_CHUNK = 256


def chunked_wins(q: torch.Tensor) -> bool:
    """Whether :func:`chunked_attention` beats the fused kernel for ``q``'s dtype and device.

    bfloat16 on a CPU without AMX (e.g. an AMD EPYC with AVX512-BF16): the fused kernel's
    bfloat16 path is no faster than its float32 one there, while oneDNN's bfloat16 matrix
    products use the CPU's bfloat16 instructions; one full-bank memory cross-attention took
    0.234 s chunked against 0.635 s fused (benchmarks/bench_kernels.py, AMD EPYC, 2 threads).
    With AMX the fused kernel was measured fast (issue 25: 3.4x the official) and stays.
    float32 always takes the fused kernel (the official numbers, and faster).
    """
    if q.dtype != torch.bfloat16 or q.device.type != "cpu":
        return False
    from ..runtime import cpu_flags

    return "amx_bf16" not in cpu_flags()


def chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(D)) v`` a block of queries at a time: (..., Nq, D) x (..., Nk, D)
    and (..., Nk, Dv) -> (..., Nq, Dv). ``v`` may be narrower than ``q`` and ``k``."""
    k_t = (k * q.shape[-1] ** -0.5).transpose(-2, -1)
    v = v.to(q.dtype)
    out = q.new_empty((*q.shape[:-1], v.shape[-1]))
    for start in range(0, q.shape[-2], _CHUNK):
        block = slice(start, start + _CHUNK)
        out[..., block, :] = torch.softmax(q[..., block, :] @ k_t, dim=-1) @ v
    return out
