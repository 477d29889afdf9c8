"""Pre-norm transformer block with LayerScale, as in DINOv2 and VGGT."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

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
        # True: forward runs through torch.compile'd regions that every Block shares (set by
        # streamvggt.runtime.regional_compile.compile_regions; a runtime switch, not saved with the weights).
        self.compiled_regions = False

    def forward(
        self,
        x: Tensor,
        rope_tables: tuple[Tensor, Tensor] | None = None,
        frame_tokens: int | None = None,
        kv_cache: KVCacheLayer | None = None,
    ) -> Tensor:
        """x: [B, N, C] -> [B, N, C]; the optional arguments are passed to :class:`Attention`."""
        if self.compiled_regions and not torch.compiler.is_compiling():  # a compiled step traces the plain code
            return _compiled_forward(self, x, rope_tables, frame_tokens, kv_cache)
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


class _Regions(NamedTuple):
    whole: Callable[..., Tensor]
    inputs: Callable[..., tuple[Tensor, Tensor, Tensor]]
    finish: Callable[..., Tensor]


@functools.cache
def _regions() -> _Regions:
    """torch.compile'd Block functions, made once and shared by every Block ("regional compilation"): the module
    is an argument, so its weights are graph inputs and the trunk's 48 blocks and the patch embed's 24 reuse the
    same few graphs instead of compiling one each."""
    return _Regions(
        whole=torch.compile(Block.forward_uncached, fullgraph=True),
        inputs=torch.compile(Block.attention_inputs, fullgraph=True),
        finish=torch.compile(Block.finish, fullgraph=True),
    )


def _compiled_forward(
    block: Block,
    x: Tensor,
    rope_tables: tuple[Tensor, Tensor] | None,
    frame_tokens: int | None,
    kv_cache: KVCacheLayer | None,
) -> Tensor:
    """Block.forward through the compiled regions. A cache's update (Python control, lengths that grow) and the
    causal attention stay eager between the two regions; without them the whole block is one graph."""
    regions = _regions()
    if kv_cache is None and frame_tokens is None:
        return regions.whole(block, x, rope_tables)
    q, k, v = regions.inputs(block, x, rope_tables)
    return regions.finish(block, x, block.attn.attend_with_cache(q, k, v, frame_tokens, kv_cache))
