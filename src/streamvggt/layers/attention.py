"""Multi-head self-attention with optional qk-norm, 2D RoPE, block-causal masking and a KV cache."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamvggt.layers.kv_cache import KVCacheLayer
from streamvggt.layers.rope import RotaryEmbedding2D


def attend(q: Tensor, k: Tensor, v: Tensor, frame_tokens: int | None, key_mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention; block-causal over frames when ``frame_tokens`` is given.

    q: [B, h, Nq, d] holds whole frames of ``frame_tokens`` tokens each; k, v: [B, h, Nk, d] with Nk >= Nq, the
    last Nq keys belonging to the same frames as the queries and any earlier keys to past frames. Query frame t
    sees every past key and the current keys of frames 0..t.

    The block-causal case runs one SDPA call per query frame rather than materialising an (Nq x Nk) mask: no
    mask memory, the fused kernels stay eligible, and it is exactly the computation a streaming step performs.
    key_mask: [B, 1, 1, Nk] keys each batch element may see (a cache's streams of different lengths), or None.
    """
    if frame_tokens is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
    num_q, num_k = q.shape[-2], k.shape[-2]
    if num_q % frame_tokens:
        raise ValueError(f"{num_q} query tokens are not whole frames of {frame_tokens} tokens")
    past = num_k - num_q
    outputs = []
    for start in range(0, num_q, frame_tokens):
        end = start + frame_tokens
        visible = past + end
        mask = None if key_mask is None else key_mask[..., :visible]
        query, keys, values = q[..., start:end, :], k[..., :visible, :], v[..., :visible, :]
        outputs.append(F.scaled_dot_product_attention(query, keys, values, attn_mask=mask))
    return torch.cat(outputs, dim=-2)


class Attention(nn.Module):
    """qkv projection -> (qk LayerNorm) -> (2D RoPE) -> SDPA -> output projection."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        rope_tables: tuple[Tensor, Tensor] | None = None,
        frame_tokens: int | None = None,
        kv_cache: KVCacheLayer | None = None,
    ) -> Tensor:
        """x: [B, N, C] -> [B, N, C].

        rope_tables: cos/sin [P, head_dim] for one frame of P tokens (N must be a multiple of P).
        frame_tokens: tokens per frame for block-causal attention; None attends to everything.
        kv_cache: past keys/values to attend to; this call's keys/values are appended to it.
        """
        q, k, v = self.heads(x, rope_tables)
        return self.merge(self.attend_with_cache(q, k, v, frame_tokens, kv_cache))

    def heads(self, x: Tensor, rope_tables: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """x: [B, N, C] -> queries, keys, values [B, heads, N, d], after qk-norm and RoPE."""
        batch, num_tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, num_tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, N, d]
        q, k = self.q_norm(q), self.k_norm(k)
        if rope_tables is not None:
            q, k = _rope_per_frame(q, rope_tables), _rope_per_frame(k, rope_tables)
        # Under autocast qk-norm returns fp32 while v stays in the autocast dtype; SDPA would cast them to match
        # anyway, and doing it here keeps cached keys as small as the values.
        return q.to(v.dtype), k.to(v.dtype), v

    def attend_with_cache(
        self, q: Tensor, k: Tensor, v: Tensor, frame_tokens: int | None = None, kv_cache: KVCacheLayer | None = None
    ) -> Tensor:
        """Attention output [B, heads, N, d] of this call's q, k, v [B, heads, N, d] and the cache's past keys."""
        key_mask = None
        if kv_cache is not None:
            k, v = kv_cache.update(k, v)
            key_mask = kv_cache.key_mask
        # The mask is passed only when a cache set one, so that attend's plain four-argument form (which tests
        # replace to mask offline attention) stays the call every other forward makes.
        return attend(q, k, v, frame_tokens) if key_mask is None else attend(q, k, v, frame_tokens, key_mask)

    def merge(self, out: Tensor) -> Tensor:
        """Attention output [B, heads, N, d] -> [B, N, C] through the output projection."""
        batch, _, num_tokens, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(batch, num_tokens, self.num_heads * self.head_dim))


def _rope_per_frame(x: Tensor, tables: tuple[Tensor, Tensor]) -> Tensor:
    """Apply per-frame RoPE tables [P, d] to x [B, h, S*P, d]; positions repeat in every frame."""
    cos, sin = tables
    batch, heads, num_tokens, dim = x.shape
    frames = x.reshape(batch, heads, num_tokens // cos.shape[0], cos.shape[0], dim)
    return RotaryEmbedding2D.apply(frames, cos, sin).reshape(batch, heads, num_tokens, dim)
