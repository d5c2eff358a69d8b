"""Attention layers and the two-way transformer of the SAM mask decoder."""

from __future__ import annotations

import torch
from torch import nn

from .common import MLP, attention, chunked_attention, chunked_wins
from .position_encoding import AxialRoPE


class Attention(nn.Module):
    """Multi-head attention with projections to an optionally narrower width.

    Arguments:
        embedding_dim: width of queries and of the output.
        num_heads: attention heads.
        downsample_rate: internal width is ``embedding_dim // downsample_rate``.
        kv_in_dim: width of keys and values (default: embedding_dim).
    """

    def __init__(
        self, embedding_dim: int, num_heads: int, downsample_rate: int = 1, kv_in_dim: int | None = None
    ) -> None:
        super().__init__()
        kv_in_dim = kv_in_dim or embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide the internal width")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)  # (B, nH, N, hd)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)  # (B, N, C)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self.split_heads(self.q_proj(q))
        k = self.split_heads(self.k_proj(k))
        v = self.split_heads(self.v_proj(v))
        return self.out_proj(self.merge_heads(attention(q, k, v)))


class RoPEAttention(Attention):
    """Attention with 2-D axial rotary position embedding on a square token grid.

    Queries are one S x S grid. Keys are one or more stacked S x S grids (memories
    of several frames, all rotated with the same tables when ``rope_k_repeat``),
    followed by ``num_k_exclude_rope`` tokens (object pointers) that are not rotated.

    Arguments:
        embedding_dim, num_heads, downsample_rate, kv_in_dim: as :class:`Attention`.
        rope_theta: RoPE frequency base.
        rope_k_repeat: allow keys to be several grids.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        kv_in_dim: int | None = None,
        *,
        rope_theta: float = 10000.0,
        rope_k_repeat: bool = False,
    ) -> None:
        super().__init__(embedding_dim, num_heads, downsample_rate, kv_in_dim)
        self.rope = AxialRoPE(self.internal_dim // num_heads, rope_theta)
        self.rope_k_repeat = rope_k_repeat

    def rotate_keys(self, k: torch.Tensor, num_k_exclude_rope: int, side: int) -> torch.Tensor:
        """Rotate the grid part of (B, nH, Nk, hd) keys; pointer tokens stay as they are."""
        n_grid_tokens = k.shape[-2] - num_k_exclude_rope
        n_q = side * side
        if n_grid_tokens != n_q and not self.rope_k_repeat:
            raise ValueError("keys must be one query-sized grid unless rope_k_repeat")
        if n_grid_tokens % n_q:
            raise ValueError("keys are not a whole number of grids")
        table = self.rope.table(side, k.device)
        # one grid at a time, written straight into the output: the float32 rotation
        # of a grid stays in cache, and the pointer tokens need no concatenation
        out = torch.empty_like(k)
        for start in range(0, n_grid_tokens, n_q):
            grid = slice(start, start + n_q)
            out[:, :, grid] = self.rope.apply(k[:, :, grid], table)
        out[:, :, n_grid_tokens:] = k[:, :, n_grid_tokens:]
        return out

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0
    ) -> torch.Tensor:
        q = self.split_heads(self.q_proj(q))
        k = self.split_heads(self.k_proj(k))
        side = int(round(q.shape[-2] ** 0.5))
        if side * side != q.shape[-2]:
            raise ValueError("RoPE attention needs a square query grid")
        q = self.rope.apply(q, self.rope.table(side, q.device)).to(k.dtype)
        k = self.rotate_keys(k, num_k_exclude_rope, side)
        if self.num_heads == 1 and v.shape[-1] < self.internal_dim and chunked_wins(q):
            # the softmax weights of a query sum to 1, so averaging the raw (narrower) memory
            # values and projecting after is the same sum as projecting every key's value
            # first: 4x less work for 64-wide memories into 256-wide attention
            return self.out_proj(self.v_proj(chunked_attention(q, k, v[:, None])[:, 0]))
        v = self.split_heads(self.v_proj(v))
        return self.out_proj(self.merge_heads(attention(q, k, v)))


class TwoWayAttentionBlock(nn.Module):
    """Tokens attend to themselves and to the image; then the image attends to tokens.

    Arguments:
        embedding_dim: width.
        num_heads: attention heads.
        mlp_dim: hidden width of the token MLP.
        attention_downsample_rate: internal width divisor of the cross-attentions.
        skip_first_layer_pe: the first block's self-attention sees no positional encoding.
    """

    def __init__(
        self,
        *,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, 2, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        k = keys + key_pe
        q = queries + query_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """The SAM decoder transformer: prompt tokens and image tokens update each other.

    Arguments:
        depth: number of two-way blocks.
        embedding_dim: width.
        num_heads: attention heads.
        mlp_dim: hidden width of the token MLPs.
    """

    def __init__(self, *, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=2)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, h, w) image, (B, C, h, w) its encoding, (B, N, C) tokens -> tokens, image (B, hw, C)."""
        keys = image.flatten(2).transpose(1, 2)  # (B, C, h, w) -> (B, hw, C)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        q = queries + tokens
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
