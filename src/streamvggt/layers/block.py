"""Pre-norm transformer block with LayerScale, as in DINOv2 and VGGT."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from streamvggt.layers.attention import Attention, KVCacheLayer


class Mlp(nn.Module):
    """Linear -> GELU (exact) -> Linear."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel learned residual scale ``gamma``."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """``x + ls1(attn(norm1(x)))`` then ``x + ls2(mlp(norm2(x)))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qk_norm: bool = False,
        init_value: float = 0.01,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm)
        self.ls1 = LayerScale(dim, init_value)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_value)

    def forward(
        self,
        x: Tensor,
        rope_tables: tuple[Tensor, Tensor] | None = None,
        frame_tokens: int | None = None,
        kv_cache: KVCacheLayer | None = None,
    ) -> Tensor:
        """x: [B, N, C] -> [B, N, C]; the optional arguments are passed to :class:`Attention`."""
        x = x + self.ls1(self.attn(self.norm1(x), rope_tables, frame_tokens, kv_cache))
        return x + self.ls2(self.mlp(self.norm2(x)))
