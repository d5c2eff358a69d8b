"""Image encoder: the Hiera trunk followed by an FPN neck."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import SAM2Config
from .hiera import Hiera
from .position_encoding import SineGridEncoding


class FpnNeck(nn.Module):
    """Feature pyramid without output convolutions.

    Each trunk level is projected to ``d_model`` channels by a 1x1 convolution; the
    levels listed in ``top_down_levels`` also receive the upsampled (nearest by
    default) sum from the level below them.

    Arguments:
        d_model: output channels of every level.
        channel_list: trunk channels per level, deepest first.
        top_down_levels: levels (0 = highest resolution) that take top-down features.
        interp_mode: interpolation used for the top-down path.
    """

    def __init__(
        self,
        *,
        d_model: int,
        channel_list: tuple[int, ...],
        top_down_levels: tuple[int, ...],
        interp_mode: str = "nearest",
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        for dim in channel_list:
            level = nn.Sequential()
            level.add_module("conv", nn.Conv2d(dim, d_model, kernel_size=1))
            self.convs.append(level)
        self.top_down_levels = set(top_down_levels)
        self.interp_mode = interp_mode
        self.position_encoding = SineGridEncoding(d_model)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Trunk maps (highest resolution first) -> neck maps in the same order."""
        n = len(xs) - 1
        out: list[torch.Tensor] = [xs[0]] * len(xs)
        prev = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                kwargs = {} if self.interp_mode == "nearest" else {"align_corners": False}
                top_down = F.interpolate(prev.float(), scale_factor=2.0, mode=self.interp_mode, **kwargs)
                prev = lateral + top_down
            else:
                prev = lateral
            out[i] = prev
        return out


class ImageEncoder(nn.Module):
    """Hiera trunk + FPN neck; keeps the ``len - scalp`` highest-resolution levels.

    Arguments:
        config: the network config.
    """

    def __init__(self, config: SAM2Config) -> None:
        super().__init__()
        self.trunk = Hiera(config.trunk)
        self.neck = FpnNeck(
            d_model=config.d_model,
            channel_list=config.trunk.channel_list,
            top_down_levels=config.fpn_top_down_levels,
            interp_mode=config.fpn_interp_mode,
        )
        self.scalp = config.scalp

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) normalised images -> feature maps, highest resolution first."""
        feats = self.neck(self.trunk(images))
        return feats[: len(feats) - self.scalp] if self.scalp > 0 else feats
