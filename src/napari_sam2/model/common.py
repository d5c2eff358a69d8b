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
#: score-matrix elements per chunk of queries in the chunked kernel (~64 MiB in float32)
_CHUNK_ELEMENTS = 1 << 24


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention over the last two axes, (..., Nq, D) x (..., Nk, D) x (..., Nk, Dv).

    Three kernels, same maths:

    * few keys (prompt tokens): the scores are formed explicitly, laid out so the
      softmax runs along the long query axis;
    * values narrower than the keys, or bfloat16 inputs: queries in chunks, each a plain
      ``softmax(q k^T) v`` (the fused CPU kernel falls back to a slow unfused path for
      Dv != D, and is no faster in bfloat16);
    * otherwise PyTorch's fused ``scaled_dot_product_attention``.
    """
    n_q, n_k = q.shape[-2], k.shape[-2]
    scale = q.shape[-1] ** -0.5
    if n_k <= _FEW_KEYS and n_q > n_k:
        # scores laid out (..., Nk, Nq): the softmax then runs along a long axis
        scores_t = k @ (q * scale).transpose(-2, -1)
        return scores_t.softmax(dim=-2).transpose(-2, -1) @ v
    if v.shape[-1] != q.shape[-1] or q.dtype == torch.bfloat16:
        return _chunked_attention(q * scale, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def _chunked_attention(q_scaled: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T) v`` over chunks of queries; the softmax is computed in float32."""
    n_q, n_k = q_scaled.shape[-2], k.shape[-2]
    step = max(1, _CHUNK_ELEMENTS // max(n_k, 1))
    k_t = k.transpose(-2, -1)
    out = q_scaled.new_empty(*q_scaled.shape[:-1], v.shape[-1])
    for start in range(0, n_q, step):
        scores = q_scaled[..., start : start + step, :] @ k_t
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype)
        out[..., start : start + step, :] = weights @ v
    return out
