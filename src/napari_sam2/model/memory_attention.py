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
        """(B, N, d) tokens attend to (B, M, mem_dim) memories -> (B, N, d).

        ``x`` may have batch 1 for B objects on one frame: the self-attention then runs once
        and its result is shared (it sees only the frame), the rest runs per object.
        """
        return self.attend(self.self_attend(x), memory, memory_pos, num_obj_ptr_tokens)

    def self_attend(self, x: torch.Tensor) -> torch.Tensor:
        """The self-attention block: the frame tokens among themselves."""
        y = self.norm1(x)
        return x + self.self_attn(y, y, y)

    def attend(
        self, x: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor, num_obj_ptr_tokens: int
    ) -> torch.Tensor:
        """The cross-attention to memories and the feed-forward block."""
        if x.shape[0] != memory.shape[0]:
            x = x.expand(memory.shape[0], -1, -1)
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

    def start(self, curr: torch.Tensor, curr_pos: torch.Tensor) -> torch.Tensor:
        """What the first layer computes from the frame alone (before any memory): the
        same for every object tracked on the frame, so it can be computed once."""
        return self.layers[0].self_attend(curr + 0.1 * curr_pos)

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_obj_ptr_tokens: int = 0,
        *,
        started: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Condition frame tokens on memories (batch first).

        Arguments:
            curr: (B, E*E, d) frame tokens; curr_pos: their (B, E*E, d) encoding. B may
                be 1 for B objects of one frame: what the first layer computes from the
                frame alone (its self-attention) is then computed once for all of them.
            memory: (B, M, mem_dim) memory tokens, the last ``num_obj_ptr_tokens`` of
                which are object pointers; memory_pos: their (B, M, mem_dim) encoding.
            started: :meth:`start` of this frame, if already computed.
        """
        x = self.start(curr, curr_pos) if started is None else started
        x = self.layers[0].attend(x, memory, memory_pos, num_obj_ptr_tokens)
        for layer in self.layers[1:]:
            x = layer(x, memory, memory_pos, num_obj_ptr_tokens)
        return self.norm(x)
