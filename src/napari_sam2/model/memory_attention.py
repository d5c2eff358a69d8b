"""Memory attention: conditions the current frame's features on the memory bank."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import SAM2Config
from .transformer import RoPEAttention


class MemoryAttentionLayer(nn.Module):
    """Self-attention, cross-attention to memories, and a feed-forward block (pre-norm).

    Arguments:
        d_model: width of the frame tokens.
        mem_dim: width of the memory tokens.
        num_heads: attention heads.
        dim_feedforward: hidden width of the feed-forward block.
        rope_theta: RoPE frequency base.
    """

    def __init__(self, *, d_model: int, mem_dim: int, num_heads: int, dim_feedforward: int, rope_theta: float) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model, num_heads, rope_theta=rope_theta)
        self.cross_attn_image = RoPEAttention(
            d_model, num_heads, kv_in_dim=mem_dim, rope_theta=rope_theta, rope_k_repeat=True
        )
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, num_obj_ptr_tokens: int
    ) -> torch.Tensor:
        """(B, N, d) tokens attend to (B, M, mem_dim) memories -> (B, N, d)."""
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y)
        y = self.norm2(x)
        x = x + self.cross_attn_image(y, memory + memory_pos, memory, num_k_exclude_rope=num_obj_ptr_tokens)
        y = self.norm3(x)
        return x + self.linear2(F.relu(self.linear1(y)))


class MemoryAttention(nn.Module):
    """A stack of :class:`MemoryAttentionLayer` with a final LayerNorm.

    Arguments:
        config: the network config.
    """

    def __init__(self, config: SAM2Config) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(
                d_model=config.d_model,
                mem_dim=config.mem_dim,
                num_heads=config.memory_attention_heads,
                dim_feedforward=config.memory_attention_ffn_dim,
                rope_theta=config.rope_theta,
            )
            for _ in range(config.memory_attention_layers)
        )
        self.norm = nn.LayerNorm(config.d_model)

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_obj_ptr_tokens: int = 0,
    ) -> torch.Tensor:
        """Condition frame tokens on memories (batch first).

        Arguments:
            curr: (B, E*E, d) frame tokens; curr_pos: their (B, E*E, d) encoding.
            memory: (B, M, mem_dim) memory tokens, the last ``num_obj_ptr_tokens`` of
                which are object pointers; memory_pos: their (B, M, mem_dim) encoding.
        """
        x = curr + 0.1 * curr_pos
        for layer in self.layers:
            x = layer(x, memory, memory_pos, num_obj_ptr_tokens)
        return self.norm(x)
