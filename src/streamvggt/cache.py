"""Key/value caches for streaming: storage plus the policy that decides which past tokens stay.

Every layer cache implements ``update(k, v) -> (k_all, v_all)`` (see :class:`streamvggt.layers.KVCacheLayer`):
it stores the new frame's keys and values and returns everything the new frame attends to. Keys arrive after
qk-norm and RoPE. Positions are purely spatial, so attention does not depend on the order of cached tokens:
bounded policies overwrite evicted slots in place instead of compacting, and nothing is copied per frame.

Policies (``parse_policy``):

- ``"full"``: keep every frame (exact; storage grows geometrically, so appends are amortised O(1)).
- ``"window:K"``: the first frame (anchor) plus the K most recent frames, the current one included.
- ``"budget:N"``: at most N tokens per layer; first-frame tokens are always kept and the rest are evicted by key
  redundancy (cosine similarity to the layer's mean key, per head), which needs no attention matrix, so fused
  attention kernels still apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class CachePolicy:
    """Which past tokens a stream keeps. ``kind`` is "full", "window" (``frames``) or "budget" (``tokens``)."""

    kind: str = "full"
    frames: int | None = None
    tokens: int | None = None

    def __str__(self) -> str:
        if self.kind == "window":
            return f"window:{self.frames}"
        if self.kind == "budget":
            return f"budget:{self.tokens}"
        return "full"

    def new_layer(self, frame_tokens: int) -> LayerCache:
        """A cache for one attention layer whose frames have ``frame_tokens`` tokens each."""
        if self.kind == "window":
            return WindowCache(frame_tokens, self.frames)
        if self.kind == "budget":
            return BudgetCache(frame_tokens, self.tokens)
        return FullCache()


def parse_policy(spec: str | CachePolicy) -> CachePolicy:
    """Parse ``"full"``, ``"window:K"`` (K >= 1 frames) or ``"budget:N"`` (N >= 1 tokens per layer)."""
    if isinstance(spec, CachePolicy):
        return spec
    text = spec.strip().lower()
    if text == "full":
        return CachePolicy()
    match = re.fullmatch(r"(window|budget):(\d+)", text)
    if match is None or int(match.group(2)) < 1:
        raise ValueError(f"unknown cache policy '{spec}': use 'full', 'window:K' (frames) or 'budget:N' (tokens)")
    kind, amount = match.group(1), int(match.group(2))
    return CachePolicy(kind, frames=amount) if kind == "window" else CachePolicy(kind, tokens=amount)


class LayerCache:
    """Preallocated key/value storage [B, heads, capacity, d] with ``length`` valid slots."""

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.length = 0

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """Bytes held by this layer's storage, including preallocated room."""
        if self.k is None:
            return 0
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()

    def views(self) -> tuple[Tensor, Tensor]:
        return self.k[:, :, : self.length], self.v[:, :, : self.length]

    def _allocate(self, like: Tensor, capacity: int) -> None:
        """(Re)allocate room for ``capacity`` tokens, keeping the valid prefix."""
        shape = (*like.shape[:2], capacity, like.shape[-1])
        k, v = like.new_empty(shape), like.new_empty(shape)
        if self.k is not None:
            k[:, :, : self.length] = self.k[:, :, : self.length]
            v[:, :, : self.length] = self.v[:, :, : self.length]
        self.k, self.v = k, v

    def _append(self, k: Tensor, v: Tensor, max_capacity: int | None = None) -> None:
        """Write after the valid prefix, doubling the capacity (up to ``max_capacity``) when full."""
        needed = self.length + k.shape[2]
        if self.k is None or needed > self.k.shape[2]:
            capacity = max(needed, 2 * (self.k.shape[2] if self.k is not None else 0))
            self._allocate(k, capacity if max_capacity is None else min(capacity, max_capacity))
        self._write(self.length, k, v)
        self.length = needed

    def _write(self, start: int, k: Tensor, v: Tensor) -> None:
        end = start + k.shape[2]
        self.k[:, :, start:end] = k
        self.v[:, :, start:end] = v


class FullCache(LayerCache):
    """Keeps every token; capacity doubles when full."""

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self._append(k, v)
        return self.views()


class WindowCache(LayerCache):
    """First frame plus a ring of the ``frames`` most recent frames (the current frame takes the oldest slot)."""

    def __init__(self, frame_tokens: int, frames: int) -> None:
        super().__init__()
        self.frame_tokens = frame_tokens
        self.frames = frames
        self.frames_seen = 0

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if k.shape[2] != self.frame_tokens:
            raise ValueError(f"window cache expects one frame of {self.frame_tokens} tokens, got {k.shape[2]}")
        if self.k is None:
            self._allocate(k, (1 + self.frames) * self.frame_tokens)
        slot = 0 if self.frames_seen == 0 else 1 + (self.frames_seen - 1) % self.frames
        self._write(slot * self.frame_tokens, k, v)
        self.frames_seen += 1
        self.length = min(self.frames_seen, 1 + self.frames) * self.frame_tokens
        return self.views()


class BudgetCache(LayerCache):
    """At most ``budget`` tokens; first-frame tokens are pinned, others evicted by key redundancy per head.

    Storage grows like the full cache until it reaches the budget, then evicted slots are overwritten in place.
    """

    def __init__(self, frame_tokens: int, budget: int) -> None:
        super().__init__()
        if budget < 2 * frame_tokens:
            raise ValueError(
                f"budget of {budget} tokens cannot hold the anchor frame plus one frame ({2 * frame_tokens} tokens)"
            )
        self.frame_tokens = frame_tokens
        self.budget = budget

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        new = k.shape[2]
        if self.length + new <= self.budget:
            self._append(k, v, max_capacity=self.budget)
            return self.views()
        victims = self._most_redundant(new)  # [B, heads, new] slot indices, per head
        index = victims.unsqueeze(-1).expand(-1, -1, -1, k.shape[-1])
        self.k.scatter_(2, index, k)
        self.v.scatter_(2, index, v)
        return self.views()

    def _most_redundant(self, count: int) -> Tensor:
        """The ``count`` evictable slots whose keys are most similar to the layer's mean key, per (batch, head)."""
        evictable = self.k[:, :, self.frame_tokens : self.length].float()
        mean = evictable.mean(dim=2, keepdim=True)
        redundancy = torch.nn.functional.cosine_similarity(evictable, mean, dim=-1)  # [B, heads, n]
        return redundancy.topk(count, dim=-1).indices + self.frame_tokens
