"""Position encodings: 2-D sine grids, random Fourier features, 1-D sine and axial RoPE."""

from __future__ import annotations

import math

import torch
from torch import nn


def _sine_features(pos: torch.Tensor, num_feats: int, temperature: float) -> torch.Tensor:
    """Sine/cosine features of positions ``pos`` (N,) -> (N, num_feats).

    Even feature slots hold sines and odd slots cosines of the same frequency.
    """
    idx = torch.arange(num_feats, dtype=torch.float32, device=pos.device)
    freq = temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / num_feats)
    angles = pos[:, None] / freq  # (N, num_feats)
    out = torch.empty_like(angles)
    out[:, 0::2] = angles[:, 0::2].sin()
    out[:, 1::2] = angles[:, 1::2].cos()
    return out


class SineGridEncoding(nn.Module):
    """The DETR-style 2-D sine encoding of a feature grid (normalised coordinates).

    Channels ``[0, C/2)`` encode the row and ``[C/2, C)`` the column. Grids are cached
    per size; the module has no parameters and no state-dict entries.

    Arguments:
        num_pos_feats: output channels C (even).
        temperature: frequency base.
    """

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError("num_pos_feats must be even")
        self.half = num_pos_feats // 2
        self.temperature = temperature
        self.scale = 2 * math.pi
        self._cache: dict[tuple[int, int, str], torch.Tensor] = {}

    def grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """Encoding of an (h, w) grid, shape (C, h, w), float32."""
        key = (h, w, str(device))
        if _stale(self._cache.get(key)):
            eps = 1e-6
            ys = torch.arange(1, h + 1, dtype=torch.float32, device=device)
            xs = torch.arange(1, w + 1, dtype=torch.float32, device=device)
            ys = ys / (ys[-1] + eps) * self.scale
            xs = xs / (xs[-1] + eps) * self.scale
            fy = _sine_features(ys, self.half, self.temperature)  # (h, C/2)
            fx = _sine_features(xs, self.half, self.temperature)  # (w, C/2)
            pos = torch.cat(
                [fy.T[:, :, None].expand(-1, h, w), fx.T[:, None, :].expand(-1, h, w)], dim=0
            )  # (C, h, w)
            self._cache[key] = pos.contiguous()
        return self._cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encoding for a (B, C', H, W) feature map, shape (B, C, H, W), x's dtype."""
        pos = self.grid(x.shape[-2], x.shape[-1], x.device)
        return pos.to(x.dtype)[None].expand(x.shape[0], -1, -1, -1)


class RandomFourierEncoding(nn.Module):
    """Positional encoding with random spatial frequencies (the SAM prompt encoder's).

    Arguments:
        num_pos_feats: number of frequencies F; the output has 2F channels.
    """

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, num_pos_feats)))

    def encode(self, coords01: torch.Tensor) -> torch.Tensor:
        """Encode (..., 2) coordinates in [0, 1] as (..., 2F) features."""
        proj = (2 * coords01 - 1) @ self.positional_encoding_gaussian_matrix
        proj = 2 * math.pi * proj
        return torch.cat([proj.sin(), proj.cos()], dim=-1)

    def grid(self, h: int, w: int) -> torch.Tensor:
        """Encoding of the centres of an (h, w) grid, shape (2F, h, w)."""
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        coords = torch.stack(
            [xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1
        )  # (h, w, 2) as (x, y)
        return self.encode(coords).permute(2, 0, 1)

    def points(self, coords: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """Encode (B, N, 2) pixel coordinates (x, y) of an image of size ``image_hw``."""
        scale = torch.tensor([image_hw[1], image_hw[0]], dtype=torch.float32, device=coords.device)
        return self.encode(coords.float() / scale)


def _stale(cached: torch.Tensor | None) -> bool:
    """True when a cached table must be (re)computed: missing, or made under
    ``torch.inference_mode`` while autograd now runs (such a tensor cannot be saved for
    backward, e.g. when a model is trained after being evaluated)."""
    return cached is None or (cached.is_inference() and not torch.is_inference_mode_enabled())


def sine_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sine encoding of (N,) positions, shape (N, dim): sines then cosines."""
    half = dim // 2
    idx = torch.arange(half, dtype=torch.float32, device=positions.device)
    freq = temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / half)
    angles = positions[:, None] / freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class AxialRoPE:
    """2-D axial rotary position embedding for a square token grid.

    The head dimension D is split in two halves: the first rotates with the column
    (x) index, the second with the row (y) index. Each consecutive channel pair
    (2i, 2i+1), read as a complex number, is multiplied by ``exp(1j * pos * f_i)``
    with frequencies ``theta**(-4i/D)``. (One complex multiply is ~6x faster on CPU
    than the same rotation spelled out with cos/sin in real arithmetic.)

    Arguments:
        head_dim: channels per attention head (divisible by 4).
        theta: frequency base.
    """

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        if head_dim % 4:
            raise ValueError("RoPE head_dim must be divisible by 4")
        self.head_dim = head_dim
        self.theta = theta
        self._cache: dict[tuple[int, str], torch.Tensor] = {}

    def table(self, side: int, device: torch.device) -> torch.Tensor:
        """Complex rotations, shape (side*side, D/2), for a side x side grid."""
        key = (side, str(device))
        if _stale(self._cache.get(key)):
            d = self.head_dim
            inv_freq = 1.0 / (self.theta ** (torch.arange(0, d, 4, device=device)[: d // 4].float() / d))
            t = torch.arange(side * side, dtype=torch.float32, device=device)
            tx, ty = t % side, torch.div(t, side, rounding_mode="floor")
            angles = torch.cat([torch.outer(tx, inv_freq), torch.outer(ty, inv_freq)], dim=-1)
            self._cache[key] = torch.polar(torch.ones_like(angles), angles)
        return self._cache[key]

    @staticmethod
    def apply(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Rotate (..., N, D) tokens (computed in float32) by a (N, D/2) table; float32 out."""
        pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (..., N, D/2)
        return torch.view_as_real(pairs * table).flatten(-2)
