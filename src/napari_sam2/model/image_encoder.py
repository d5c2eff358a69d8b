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

    def forward(self, xs: list[torch.Tensor], project: dict[int, nn.Conv2d] | None = None) -> list[torch.Tensor]:
        """Trunk maps (highest resolution first) -> neck maps in the same order.

        ``project`` maps a level to a 1x1 convolution applied after the neck (SAM's
        high-resolution projections). A level that neither takes nor gives top-down
        features is then computed as one composed 1x1 map from the trunk channels to
        the projection's: the same linear function, without ever forming the
        ``d_model``-wide map (at stride 4 that is 256 x 256 x 256 values per image).
        """
        n = len(xs) - 1
        project = project or {}
        out: list[torch.Tensor] = [xs[0]] * len(xs)
        prev = None
        for i in range(n, -1, -1):
            conv = self.convs[n - i].conv
            gives_top_down = i - 1 >= 0 and (i - 1) in self.top_down_levels
            if i in project and i not in self.top_down_levels and not gives_top_down:
                out[i] = _composed_1x1(xs[i], conv, project[i])
                prev = None
                continue
            lateral = conv(xs[i])
            if i in self.top_down_levels and prev is not None:
                kwargs = {} if self.interp_mode == "nearest" else {"align_corners": False}
                top_down = F.interpolate(prev.float(), scale_factor=2.0, mode=self.interp_mode, **kwargs)
                prev = lateral + top_down
            else:
                prev = lateral
            out[i] = project[i](prev) if i in project else prev
        return out


def _composed_1x1(x: torch.Tensor, first: nn.Conv2d, second: nn.Conv2d) -> torch.Tensor:
    """``second(first(x))`` for two 1x1 convolutions, as one linear map over channels.

    (B, C, H, W) -> (B, C2, H, W). Computed channels-last, which is how the trunk
    stores its maps (``x`` is usually a permuted view of a (B, H, W, C) tensor).
    """
    w1, w2 = first.weight[:, :, 0, 0], second.weight[:, :, 0, 0]  # (C1, C), (C2, C1)
    weight = w2 @ w1
    bias = w2 @ first.bias + second.bias
    y = F.linear(x.permute(0, 2, 3, 1), weight, bias)  # (B, H, W, C2)
    return y.permute(0, 3, 1, 2)


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

    def forward(self, images: torch.Tensor, project: dict[int, nn.Conv2d] | None = None) -> list[torch.Tensor]:
        """(B, 3, S, S) normalised images -> feature maps, highest resolution first
        (``project``: see :meth:`FpnNeck.forward`)."""
        feats = self.neck(self.trunk(images), project)
        return feats[: len(feats) - self.scalp] if self.scalp > 0 else feats
