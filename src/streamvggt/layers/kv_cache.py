"""What attention asks of a key/value cache: the per-layer protocol the streaming caches implement."""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class KVCacheLayer(Protocol):
    """One attention layer's store of past keys and values. Keys arrive after qk-norm and RoPE, so past frames are
    never recomputed."""

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v`` [B, heads, N, d]; return every key and value to attend to, [B, heads, Nk, d]."""
        ...

    @property
    def key_mask(self) -> Tensor | None:
        """Which keys of the last :meth:`update` each batch element may attend to, [B, 1, 1, Nk] (True: attend), or
        None when every element attends to all of them (its batch elements hold streams of one length)."""
        ...
