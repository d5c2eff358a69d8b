"""Hiera: the hierarchical vision transformer trunk of SAM 2's image encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, attention
from .config import HieraConfig


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution from RGB to tokens, channels-last output."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a channels-last input makes the convolution write channels-last, so the
        # (B, C, H, W) -> (B, H, W, C) permute below is a free, contiguous view
        return self.proj(x.contiguous(memory_format=torch.channels_last)).permute(0, 2, 3, 1)


def _pad_to_multiple(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad a (B, H, W, C) tensor at the bottom/right to multiples of ``size``."""
    pad_h = -x.shape[1] % size
    pad_w = -x.shape[2] % size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    return x


def to_windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of size -> (B * nWin, size, size, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // size, size, w // size, size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, size, size, c)


def from_windows(windows: torch.Tensor, size: int, hp: int, wp: int) -> torch.Tensor:
    """Inverse of :func:`to_windows` for a padded (hp, wp) grid -> (B, hp, wp, C)."""
    b = windows.shape[0] // ((hp // size) * (wp // size))
    x = windows.view(b, hp // size, wp // size, size, size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)


def _max_pool(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Max-pool a channels-last (B, H, W, C) tensor by ``stride``."""
    y = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride)
    return y.permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention whose queries are optionally max-pooled.

    Arguments:
        dim: input channels.
        dim_out: output channels.
        num_heads: attention heads.
        q_stride: pooling stride for the queries, or None.
    """

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).view(b, h * w, 3, self.num_heads, -1)  # (B, HW, 3, nH, hd)
        q, k, v = qkv.unbind(2)
        if self.q_stride is not None:
            q = _max_pool(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, nH, N, hd)
        out = out.transpose(1, 2).reshape(b, h, w, -1)
        return self.proj(out)


class MultiScaleBlock(nn.Module):
    """A Hiera block: (windowed) attention and an MLP, each with a residual.

    The first block of a stage widens the channels (``proj`` on the shortcut) and
    pools the queries, halving the resolution.

    Arguments:
        dim: input channels.
        dim_out: output channels.
        num_heads: attention heads.
        q_stride: query pooling stride, or None.
        window_size: attention window side at the input resolution (0: global).
    """

    def __init__(
        self,
        *,
        dim: int,
        dim_out: int,
        num_heads: int,
        q_stride: tuple[int, int] | None,
        window_size: int,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x  # (B, H, W, C)
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.q_stride is not None:
                shortcut = _max_pool(shortcut, self.q_stride)
        out_h, out_w = shortcut.shape[1:3]
        win = self.window_size
        if win > 0:
            x = to_windows(_pad_to_multiple(x, win), win)
        x = self.attn(x)
        if win > 0:
            if self.q_stride is not None:
                win //= self.q_stride[0]
            hp, wp = out_h + (-out_h % win), out_w + (-out_w % win)
            x = from_windows(x, win, hp, wp)[:, :out_h, :out_w]
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class Hiera(nn.Module):
    """The Hiera trunk; returns one (B, C_i, H_i, W_i) feature map per stage.

    Arguments:
        config: trunk sizes (see :class:`HieraConfig`).
    """

    def __init__(self, config: HieraConfig) -> None:
        super().__init__()
        c = config
        if len(c.stages) != len(c.window_spec):
            raise ValueError("stages and window_spec must have the same length")
        self.stage_ends = [sum(c.stages[: i + 1]) - 1 for i in range(len(c.stages))]
        pool_blocks = {end + 1 for end in self.stage_ends[:-1][: c.q_pool]}
        self.patch_embed = PatchEmbed(c.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.embed_dim, *c.window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, c.embed_dim, c.window_spec[0], c.window_spec[0]))
        self._pos_cache: dict[tuple[int, int], torch.Tensor] = {}

        self.blocks = nn.ModuleList()
        dim, heads, stage = c.embed_dim, c.num_heads, 0
        for i in range(sum(c.stages)):
            # A stage's first block still attends at the previous stage's window size
            # (its queries are pooled into the new stage's windows).
            window = 0 if i in c.global_att_blocks else c.window_spec[stage]
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out = int(dim * c.dim_mul)
                heads = int(heads * c.head_mul)
                stage += 1
            self.blocks.append(
                MultiScaleBlock(
                    dim=dim,
                    dim_out=dim_out,
                    num_heads=heads,
                    q_stride=tuple(c.q_stride) if i in pool_blocks else None,
                    window_size=window,
                )
            )
            dim = dim_out

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Background embedding resized to (h, w) plus the tiled window embedding.

        It depends only on the weights and the grid size, so outside training it is
        computed once per size (a bicubic resize of a 7x7 grid to 256x256 is not free).
        """
        key = (h, w)
        cacheable = not self.training and not torch.is_grad_enabled()
        if cacheable and key in self._pos_cache:
            return self._pos_cache[key]
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win = self.pos_embed_window
        pos = pos + win.tile(1, 1, h // win.shape[-2], w // win.shape[-1])
        pos = pos.permute(0, 2, 3, 1).contiguous()  # (1, C, h, w) -> (1, h, w, C), stored channels-last
        if cacheable:
            self._pos_cache[key] = pos
        return pos

    def _apply(self, fn, *args, **kwargs):  # noqa: ANN001 - nn.Module hook
        self._pos_cache.clear()  # moves and dtype casts invalidate the cache
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self._pos_cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self._pos_embed(x.shape[1], x.shape[2])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))  # (B, H, W, C) -> (B, C, H, W)
        return outputs
