"""Prompt encoder: points, box corners and mask prompts -> decoder embeddings."""

from __future__ import annotations

import torch
from torch import nn

from .common import LayerNorm2d
from .position_encoding import RandomFourierEncoding

#: point label values understood by the prompt encoder
PAD, NEGATIVE, POSITIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = -1, 0, 1, 2, 3


class PromptEncoder(nn.Module):
    """Encodes sparse (points, box corners) and dense (mask) prompts.

    Arguments:
        embed_dim: embedding width (the decoder's).
        embedding_size: side of the image embedding grid.
        image_size: side of the (square) model input.
        mask_in_chans: hidden channels of the mask downscaler.
    """

    def __init__(self, *, embed_dim: int, embedding_size: int, image_size: int, mask_in_chans: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.embedding_size = embedding_size
        self.image_size = image_size
        self.mask_input_size = 4 * embedding_size
        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        # one embedding per label 0..3: negative, positive, box top-left, box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self._dense_pe: torch.Tensor | None = None

    def dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid, (1, C, E, E); cached."""
        pe = self._dense_pe
        device = self.pe_layer.positional_encoding_gaussian_matrix.device
        if pe is None or pe.device != device or self.training:
            pe = self.pe_layer.grid(self.embedding_size, self.embedding_size)[None]
            self._dense_pe = None if self.training else pe
        return pe

    def _apply(self, fn, *args, **kwargs):  # noqa: ANN001 - nn.Module hook
        self._dense_pe = None  # device/dtype moves and load_state_dict invalidate the cache
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self._dense_pe = None
        super()._load_from_state_dict(*args, **kwargs)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """(B, N, 2) model-input pixel coords (x, y) and (B, N) labels -> (B, N', C).

        With ``pad`` a "not a point" token is appended, as SAM does when no box is given.
        """
        coords = coords + 0.5  # pixel centres
        if pad:
            b = coords.shape[0]
            coords = torch.cat([coords, coords.new_zeros(b, 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((b, 1), PAD)], dim=1)
        emb = self.pe_layer.points(coords, (self.image_size, self.image_size))
        labels = labels[..., None]
        emb = torch.where(labels == PAD, self.not_a_point_embed.weight.to(emb.dtype), emb)
        for value, table in enumerate(self.point_embeddings):
            emb = torch.where(labels == value, emb + table.weight, emb)
        return emb

    def embed_mask(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """(B, 1, 4E, 4E) mask logits -> (B, C, E, E) dense embedding."""
        return self.mask_downscaling(mask_logits)

    def forward(
        self,
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_logits: torch.Tensor | None = None,
        *,
        pad: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse (B, N, C) and dense (B, C, E, E) embeddings of the prompts."""
        if coords is not None:
            b = coords.shape[0]
        elif mask_logits is not None:
            b = mask_logits.shape[0]
        else:
            b = 1
        weight = self.no_mask_embed.weight
        if coords is not None and labels is not None:
            sparse = self.embed_points(coords, labels, pad=pad)
        else:
            sparse = weight.new_empty(b, 0, self.embed_dim)
        if mask_logits is not None:
            dense = self.embed_mask(mask_logits)
        else:
            e = self.embedding_size
            dense = weight.reshape(1, -1, 1, 1).expand(b, -1, e, e)
        return sparse, dense
