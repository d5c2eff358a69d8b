"""Memory encoder: fuses a frame's features with its predicted mask into a memory."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d
from .config import SAM2Config
from .position_encoding import SineGridEncoding


class MaskDownSampler(nn.Module):
    """Strided convolutions that bring a full-size mask down to the feature grid.

    Each step multiplies the channels by stride**2; a final 1x1 convolution maps to
    ``embed_dim``.

    Arguments:
        embed_dim: output channels.
        kernel_size, stride, padding: of each step.
        total_stride: overall downsampling factor.
    """

    def __init__(self, *, embed_dim: int, kernel_size: int, stride: int, padding: int, total_stride: int) -> None:
        super().__init__()
        steps = int(round(math.log(total_stride) / math.log(stride)))
        if stride**steps != total_stride:
            raise ValueError("total_stride must be a power of stride")
        self.encoder = nn.Sequential()
        chans = 1
        for _ in range(steps):
            out = chans * stride**2
            self.encoder.append(nn.Conv2d(chans, out, kernel_size=kernel_size, stride=stride, padding=padding))
            self.encoder.append(LayerNorm2d(out))
            self.encoder.append(nn.GELU())
            chans = out
        self.encoder.append(nn.Conv2d(chans, embed_dim, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv, LayerNorm, pointwise MLP, layer scale, residual.

    Arguments:
        dim: channels.
        kernel_size: depthwise kernel side.
    """

    def __init__(self, dim: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """A stack of ConvNeXt blocks."""

    def __init__(self, dim: int, num_layers: int, kernel_size: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim, kernel_size) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Encodes (frame features, mask) into a memory map and its position encoding.

    Arguments:
        config: the network config (d_model in, mem_dim out).
    """

    def __init__(self, config: SAM2Config) -> None:
        super().__init__()
        c = config
        self.mask_downsampler = MaskDownSampler(
            embed_dim=c.d_model,
            kernel_size=c.mask_downsampler_kernel_size,
            stride=c.mask_downsampler_stride,
            padding=c.mask_downsampler_padding,
            total_stride=c.mask_downsampler_total_stride,
        )
        self.pix_feat_proj = nn.Conv2d(c.d_model, c.d_model, kernel_size=1)
        self.fuser = Fuser(c.d_model, c.fuser_layers, c.fuser_kernel_size)
        self.out_proj = nn.Conv2d(c.d_model, c.mem_dim, kernel_size=1) if c.mem_dim != c.d_model else nn.Identity()
        self.position_encoding = SineGridEncoding(c.mem_dim)

    def forward(
        self, pix_feat: torch.Tensor, masks: torch.Tensor, *, skip_mask_sigmoid: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, E, E) features and (B, 1, S, S) mask (logits unless skip_mask_sigmoid).

        Returns the (B, mem_dim, E, E) memory and its (B, mem_dim, E, E) position encoding.
        """
        if not skip_mask_sigmoid:
            masks = F.sigmoid(masks)
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(masks)
        x = self.out_proj(self.fuser(x))
        return x, self.position_encoding(x)
