"""Pre-norm transformer block with LayerScale, as in DINOv2 and VGGT."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from streamvggt.layers.attention import Attention
from streamvggt.layers.kv_cache import KVCacheLayer

# Block.forward(block, x, rope_tables, frame_tokens, kv_cache) as an installed compiled version runs it.
BlockForward = Callable[["Block", Tensor, "tuple[Tensor, Tensor] | None", "int | None", "KVCacheLayer | None"], Tensor]


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
        # A hook for the runtime (streamvggt.runtime.regional_compile): when set, forward runs through it, a compiled
        # version of this forward shared by every Block. Not saved with the weights; None or False: eager.
        self.compiled_regions: BlockForward | None = None

    def forward(
        self,
        x: Tensor,
        rope_tables: tuple[Tensor, Tensor] | None = None,
        frame_tokens: int | None = None,
        kv_cache: KVCacheLayer | None = None,
    ) -> Tensor:
        """x: [B, N, C] -> [B, N, C]; the optional arguments are passed to :class:`Attention`."""
        if self.compiled_regions and not torch.compiler.is_compiling():  # a compiled step traces the plain code
            return self.compiled_regions(self, x, rope_tables, frame_tokens, kv_cache)
        q, k, v = self.attention_inputs(x, rope_tables)
        return self.finish(x, self.attn.attend_with_cache(q, k, v, frame_tokens, kv_cache))

    def attention_inputs(
        self, x: Tensor, rope_tables: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values [B, heads, N, d] of ``norm1(x)``; x: [B, N, C]."""
        return self.attn.heads(self.norm1(x), rope_tables)

    def finish(self, x: Tensor, attended: Tensor) -> Tensor:
        """The block's output [B, N, C] from its input x and the attention output [B, heads, N, d]."""
        x = x + self.ls1(self.attn.merge(attended))
        return x + self.ls2(self.mlp(self.norm2(x)))

    def forward_uncached(self, x: Tensor, rope_tables: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """forward without a cache or causal frames (frame attention, the patch embed): one compilable graph."""
        q, k, v = self.attention_inputs(x, rope_tables)
        return self.finish(x, self.attn.attend_with_cache(q, k, v))
