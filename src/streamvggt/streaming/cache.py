"""Key/value caches for streaming: storage plus the policy that decides which past tokens stay.

A :class:`StreamCache` holds every layer cache of one stream (the trunk's and the camera head's). Every layer
cache implements :class:`streamvggt.layers.KVCacheLayer`: ``update(k, v) -> (k_all, v_all)`` stores the new
frame's keys and values and returns everything the new frame attends to, and ``key_mask`` says which of them each
batch element may see. Keys arrive after qk-norm and RoPE. Positions are purely spatial, so attention does not
depend on the order of cached tokens: bounded policies overwrite evicted slots in place instead of compacting, and
nothing is copied per frame.

Policies (``parse_policy``), each optionally with ``+int8``:

- ``"full"``: keep every frame (exact; storage grows geometrically, so appends are amortised O(1)).
- ``"window:K"``: the first frame (anchor) plus the K most recent frames, the current one included.
- ``"budget:N"``: at most N tokens per layer; first-frame tokens are always kept and the rest are evicted by key
  redundancy (cosine similarity to the layer's mean key, per head), which needs no attention matrix, so fused
  attention kernels still apply.
- ``"...+int8"``: store keys as int8 with per-channel scales and values as int8 with per-token scales (KIVI's
  split: keys have outlier channels, values do not), about 4x smaller than fp32 and 2x smaller than bf16.

Batch elements are independent streams. ``reset_slot(b)`` forgets element b alone (a new stream starts there
while the others go on); from then on each element keeps its own valid prefix of slots, writes at its own
positions, and ``key_mask`` tells attention which keys each element may see.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class CachePolicy:
    """Which past tokens a stream keeps and how: ``kind`` is "full", "window" (``frames``) or "budget"
    (``tokens``); ``int8`` quantizes the stored keys and values."""

    kind: str = "full"
    frames: int | None = None
    tokens: int | None = None
    int8: bool = False

    def __str__(self) -> str:
        base = {"window": f"window:{self.frames}", "budget": f"budget:{self.tokens}"}.get(self.kind, "full")
        return base + ("+int8" if self.int8 else "")

    def new_layer(self, frame_tokens: int) -> LayerCache:
        """A cache for one attention layer whose frames have ``frame_tokens`` tokens each."""
        store = Int8Store() if self.int8 else PlainStore()
        if self.kind == "window":
            return WindowCache(store, frame_tokens, self.frames)
        if self.kind == "budget":
            return BudgetCache(store, frame_tokens, self.tokens)
        return FullCache(store)


def parse_policy(spec: str | CachePolicy) -> CachePolicy:
    """Parse ``"full"``, ``"window:K"`` (K >= 1 frames) or ``"budget:N"`` (N >= 1 tokens per layer), each
    optionally followed by ``+int8``; ``"int8"`` alone means ``"full+int8"``."""
    if isinstance(spec, CachePolicy):
        return spec
    text = spec.strip().lower()
    match = re.fullmatch(r"(full|int8|(window|budget):(\d+))(\+int8)?", text)
    if match is not None and match.group(3) is not None and int(match.group(3)) < 1:
        what = "K must be at least 1 frame" if match.group(2) == "window" else "N must be at least 1 token"
        raise ValueError(f"cache policy '{spec}': {what}")
    if match is None or text == "int8+int8":
        raise ValueError(
            f"unknown cache policy '{spec}': use 'full', 'window:K' (frames) or 'budget:N' (tokens), "
            "optionally with '+int8'"
        )
    int8 = match.group(4) is not None or match.group(1) == "int8"
    kind = match.group(2)
    if kind is None:
        return CachePolicy(int8=int8)
    amount = int(match.group(3))
    return (
        CachePolicy(kind, frames=amount, int8=int8) if kind == "window" else CachePolicy(kind, tokens=amount, int8=int8)
    )


class StreamCache:
    """Every key/value cache of one stream, under one policy: one per global-attention layer of the trunk
    (``trunk[layer]``) and one per camera-head refinement iteration and trunk block (``camera[iteration][block]``:
    in training, iteration k of frame t attends to the iteration-k tokens of frames <= t only).

    The model is handed ``trunk`` and ``camera`` (sequences of :class:`streamvggt.layers.KVCacheLayer`); a
    session opens the container at its stream's first frame, when the frame size is known, and resets it with the
    stream.
    """

    def __init__(self, policy: str | CachePolicy = "full") -> None:
        self.policy = parse_policy(policy)
        self.reset()

    def reset(self) -> None:
        """Forget every layer and what it holds: :meth:`open` makes new layers for the next stream."""
        self.trunk: list[LayerCache] = []
        self.camera: list[list[LayerCache]] = []

    def open(self, *, frame_tokens: int, trunk_layers: int, camera_iterations: int, camera_blocks: int) -> None:
        """Make empty layers for a stream whose frames have ``frame_tokens`` trunk tokens (and one camera token)."""
        self.trunk = [self.policy.new_layer(frame_tokens) for _ in range(trunk_layers)]
        camera_policy = self.camera_policy(frame_tokens)
        self.camera = [[camera_policy.new_layer(1) for _ in range(camera_blocks)] for _ in range(camera_iterations)]

    def camera_policy(self, frame_tokens: int) -> CachePolicy:
        """The camera head holds one token per frame: a token budget becomes the same number of frames."""
        if self.policy.kind == "budget":
            return dataclasses.replace(self.policy, tokens=max(2, self.policy.tokens // frame_tokens))
        return self.policy

    def layers(self) -> list[LayerCache]:
        """Every layer: the trunk's, then the camera head's iteration by iteration."""
        return [*self.trunk, *(layer for iteration in self.camera for layer in iteration)]

    def update(self, layer: int | tuple[int, int], k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``k, v`` [B, heads, N, d] in trunk layer ``layer`` or, for ``(iteration, block)``, in the camera
        head's; returns every key and value that layer's attention reads."""
        if isinstance(layer, tuple):
            iteration, block = layer
            return self.camera[iteration][block].update(k, v)
        return self.trunk[layer].update(k, v)

    def reset_slot(self, index: int) -> None:
        """Forget batch element ``index`` in every layer; the other elements' streams go on."""
        for layer in self.layers():
            layer.reset_slot(index)

    @property
    def nbytes(self) -> int:
        """Bytes held by every layer, including preallocated room."""
        return sum(layer.nbytes for layer in self.layers())

    @property
    def bounded(self) -> bool:
        """Whether the policy bounds what a layer holds, so that its shapes stop changing once it is full."""
        return self.policy.kind != "full"

    @property
    def static(self) -> bool:
        """Whether an update changes only tensor contents, in every layer (see :attr:`LayerCache.static`)."""
        layers = self.layers()
        return bool(layers) and all(layer.static for layer in layers)

    @property
    def split(self) -> bool:
        """Whether some layer tracks batch elements' streams of different lengths (after :meth:`reset_slot`)."""
        return any(layer.slot_lengths is not None for layer in self.layers())

    def tensors(self) -> list[Tensor]:
        """Every tensor the layers keep between steps: what a compiled step updates in place."""
        return [tensor for layer in self.layers() for tensor in layer.tensors()]

    def state_dict(self) -> tuple[dict[str, object], dict[str, Tensor]]:
        """(meta, tensors) to save: see :func:`cache_state`."""
        return cache_state(self)

    def load_state_dict(
        self, meta: dict[str, object], tensors: dict[str, Tensor], device: torch.device | str = "cpu"
    ) -> None:
        """Continue from a :meth:`state_dict`, after :meth:`open`: see :func:`load_cache_state`."""
        load_cache_state(self, meta, tensors, device)


class PlainStore:
    """Keys and values [B, heads, capacity, d] in the dtype they arrive in."""

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    @property
    def capacity(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def tensors(self) -> list[Tensor]:
        """Every tensor this store keeps between steps."""
        return [t for t in (self.k, self.v) if t is not None]

    def allocate(self, like: Tensor, capacity: int, keep: int) -> None:
        """(Re)allocate room for ``capacity`` tokens shaped like ``like``, keeping the first ``keep``.

        Slots after ``keep`` are left uninitialised: while every element's stream has the same length, only written
        slots are read, and zero-filling a 1.2B window cache's storage (17 frames, 1.7 GB in bf16) cost its first
        frame a second. Streams of different lengths read (masked) slots some element never wrote, where garbage
        could be inf or NaN that a zero weight does not cancel: :meth:`LayerCache` zeroes them with
        :meth:`zero_from` when streams diverge.
        """
        shape = (*like.shape[:2], capacity, like.shape[-1])
        k, v = like.new_empty(shape), like.new_empty(shape)
        if self.k is not None:
            k[:, :, :keep], v[:, :, :keep] = self.k[:, :, :keep], self.v[:, :, :keep]
        self.k, self.v = k, v

    def zero_from(self, start: int) -> None:
        """Zero every slot from ``start`` on (slots no element has written yet)."""
        for tensor in self.tensors():
            tensor[:, :, start:].zero_()

    def write(self, start: int, k: Tensor, v: Tensor) -> None:
        end = start + k.shape[2]
        self.k[:, :, start:end], self.v[:, :, start:end] = k, v

    def scatter(self, slots: Tensor, k: Tensor, v: Tensor, end: int | None = None) -> None:
        """Write token i of ``k, v`` [B, h, n, d] to slot ``slots[b, h, i]``; ``end``: slots in use after it."""
        index = slots.unsqueeze(-1).expand(-1, -1, -1, k.shape[-1])
        self.k.scatter_(2, index, k)
        self.v.scatter_(2, index, v)

    def read(self, length: int) -> tuple[Tensor, Tensor]:
        return self.k[:, :, :length], self.v[:, :, :length]

    def reset_slot(self, index: int) -> None:
        """Batch element ``index`` starts a new stream: nothing to clear, its old slots are no longer read."""

    def read_keys(self, length: int, dtype: torch.dtype | None = None) -> Tensor:
        """Keys only, in ``dtype`` (default: as they arrived): eviction scores need no values (for int8 storage,
        half the dequantization)."""
        keys = self.k[:, :, :length]
        return keys if dtype is None else keys.to(dtype)


class Int8Store(PlainStore):
    """int8 keys with a per-channel scale (running abs-max per batch and head) and int8 values with a per-token
    scale. Reads dequantize to the dtype the tensors arrived in.

    When a new frame raises a key channel's abs-max, the stored keys of that layer are rescaled to the new scale;
    after the first frames this is rare, because keys are LayerNorm-ed (qk-norm) and RoPE-rotated. A compiled step
    rescales on every write (with a ratio of 1 where nothing grew), so that it never waits on the device to decide.
    """

    def __init__(self) -> None:
        super().__init__()
        self.k_scale: Tensor | None = None  # [B, h, 1, d]
        self.v_scale: Tensor | None = None  # [B, h, capacity, 1]
        self.dtype: torch.dtype | None = None
        self.length_hint = 0  # valid prefix, for rescaling stored keys

    def tensors(self) -> list[Tensor]:
        return [t for t in (self.k, self.v, self.k_scale, self.v_scale) if t is not None]

    def allocate(self, like: Tensor, capacity: int, keep: int) -> None:
        shape = (*like.shape[:2], capacity, like.shape[-1])
        k = torch.zeros(shape, dtype=torch.int8, device=like.device)
        v = torch.zeros_like(k)
        v_scale = like.new_zeros((*like.shape[:2], capacity, 1))
        if self.k is None:
            self.k_scale = like.new_zeros((*like.shape[:2], 1, like.shape[-1]))
            self.dtype = like.dtype
        else:
            k[:, :, :keep], v[:, :, :keep] = self.k[:, :, :keep], self.v[:, :, :keep]
            v_scale[:, :, :keep] = self.v_scale[:, :, :keep]
        self.k, self.v, self.v_scale = k, v, v_scale

    def zero_from(self, start: int) -> None:
        """Zero the codes and value scales from slot ``start`` on; the key scale is shared by every slot."""
        for tensor in (self.k, self.v, self.v_scale):
            tensor[:, :, start:].zero_()

    def _quantize_keys(self, k: Tensor) -> Tensor:
        new_max = k.abs().amax(dim=2, keepdim=True) / 127.0
        scale = torch.maximum(self.k_scale, new_max)
        # Stored keys are rescaled only when a channel's scale grew (rare after the first frames), which eager steps
        # check; a compiled step cannot ask without a host sync, so it rescales every time: a ratio of exactly 1
        # leaves an int8 value as it is, so both give the same cache.
        if self.length_hint and (torch.compiler.is_compiling() or bool((scale > self.k_scale).any())):
            ratio = torch.where(scale > 0, self.k_scale / scale.clamp_min(1e-12), torch.ones_like(scale))
            stored = self.k[:, :, : self.length_hint]
            stored.copy_((stored.to(ratio.dtype) * ratio).round().clamp(-127, 127).to(torch.int8))
        self.k_scale.copy_(scale)  # in place: a compiled step keeps the same state tensors from step to step
        return (k / scale.clamp_min(1e-12)).round().clamp(-127, 127).to(torch.int8)

    def _quantize_values(self, v: Tensor) -> tuple[Tensor, Tensor]:
        scale = (v.abs().amax(dim=-1, keepdim=True) / 127.0).clamp_min(1e-12)
        return (v / scale).round().clamp(-127, 127).to(torch.int8), scale

    def write(self, start: int, k: Tensor, v: Tensor) -> None:
        end = start + k.shape[2]
        self.k[:, :, start:end] = self._quantize_keys(k)
        self.v[:, :, start:end], self.v_scale[:, :, start:end] = self._quantize_values(v)
        self.length_hint = max(self.length_hint, end)

    def scatter(self, slots: Tensor, k: Tensor, v: Tensor, end: int | None = None) -> None:
        k_q = self._quantize_keys(k)
        v_q, v_scale = self._quantize_values(v)
        index = slots.unsqueeze(-1)
        self.k.scatter_(2, index.expand(-1, -1, -1, k.shape[-1]), k_q)
        self.v.scatter_(2, index.expand(-1, -1, -1, v.shape[-1]), v_q)
        self.v_scale.scatter_(2, index, v_scale)
        if end is not None:
            self.length_hint = max(self.length_hint, end)

    def read(self, length: int) -> tuple[Tensor, Tensor]:
        return self.read_keys(length), self.v[:, :, :length].to(self.dtype) * self.v_scale[:, :, :length]

    def read_keys(self, length: int, dtype: torch.dtype | None = None) -> Tensor:
        dtype = self.dtype if dtype is None else dtype
        return self.k[:, :, :length].to(dtype) * self.k_scale.to(dtype)

    def reset_slot(self, index: int) -> None:
        """A new stream in element ``index`` starts from a zero key scale, as a fresh cache does."""
        if self.k_scale is not None:
            self.k_scale[index] = 0


class LayerCache:
    """One attention layer's cache: a store plus ``length`` valid slots; subclasses decide what to keep."""

    def __init__(self, store: PlainStore) -> None:
        self.store = store
        self.length = 0  # slots read: the longest element's valid prefix
        # Once an element was reset: each element's valid prefix, and which keys each attends to [B, 1, 1, length]
        # (None while every element's prefix is the whole ``length``).
        self.slot_lengths: list[int] | None = None
        self.key_mask: Tensor | None = None

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    @property
    def static(self) -> bool:
        """True once updates change neither the storage's shapes nor any Python state of this cache, only tensor
        contents: a compiled step then runs the same graph frame after frame. Never for the full cache."""
        return False

    def reset_slot(self, index: int) -> None:
        """Forget batch element ``index``: its next update starts a new stream; the other elements keep theirs."""
        if self.store.capacity == 0:
            return  # nothing stored yet: every element starts fresh anyway
        if self.slot_lengths is None:
            self._split_slots(self.store.k.shape[0])
        self.slot_lengths[index] = 0
        self.store.reset_slot(index)

    def _split_slots(self, batch: int) -> None:
        """Start tracking each element's state on its own (every element holds the shared state so far)."""
        self.slot_lengths = [self.length] * batch
        self.store.zero_from(self.length)  # from now on elements read slots that others wrote (see allocate)

    def _slot_positions(self, k: Tensor) -> Tensor:
        """Slots [B, heads, n] where each element's new tokens go; advances ``slot_lengths``. Appends by default."""
        starts = self.slot_lengths
        self.slot_lengths = [start + k.shape[2] for start in starts]
        return _spans(starts, k)

    def _capacity_limit(self) -> int | None:
        return None

    def _update_slots(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The update once elements hold streams of different lengths: each writes at its own positions."""
        positions = self._slot_positions(k)
        end = max(self.slot_lengths)
        if end > self.store.capacity:
            limit = self._capacity_limit()
            capacity = max(end, 2 * self.store.capacity)
            self.store.allocate(k, capacity if limit is None else min(capacity, limit), self.length)
            self.store.zero_from(self.length)
        self.store.scatter(positions, k, v, end)
        self.length = end
        lengths = torch.tensor(self.slot_lengths, device=k.device)
        uniform = all(length == end for length in self.slot_lengths)
        self.key_mask = None if uniform else (torch.arange(end, device=k.device) < lengths[:, None])[:, None, None]
        return self.views()

    @property
    def nbytes(self) -> int:
        """Bytes held by this layer's storage, including preallocated room."""
        return self.store.nbytes

    def tensors(self) -> list[Tensor]:
        """Every tensor this layer keeps between steps (storage, scales, the ring position), for a compiled step."""
        return self.store.tensors()

    def views(self) -> tuple[Tensor, Tensor]:
        return self.store.read(self.length)

    def _append(self, k: Tensor, v: Tensor, max_capacity: int | None = None) -> None:
        """Write after the valid prefix, doubling the capacity (up to ``max_capacity``) when full."""
        needed = self.length + k.shape[2]
        if needed > self.store.capacity:
            capacity = max(needed, 2 * self.store.capacity)
            self.store.allocate(k, capacity if max_capacity is None else min(capacity, max_capacity), self.length)
        self.store.write(self.length, k, v)
        self.length = needed


class FullCache(LayerCache):
    """Keeps every token; capacity doubles when full."""

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.slot_lengths is not None:
            return self._update_slots(k, v)
        self._append(k, v)
        return self.views()


class WindowCache(LayerCache):
    """First frame plus a ring of the ``frames`` most recent frames (the current frame takes the oldest slot)."""

    def __init__(self, store: PlainStore, frame_tokens: int, frames: int) -> None:
        super().__init__(store)
        self.frame_tokens = frame_tokens
        self.frames = frames
        self._filled = 0  # frames written until the ring is full
        # Once full: frames seen, as a 0-d tensor on the device, so steps need no Python state that changes.
        self._ring: Tensor | None = None

    @property
    def frames_seen(self) -> int:
        """Frames this cache has stored (read from the device once the ring is full: not for a compiled step)."""
        return self._filled if self._ring is None else int(self._ring)

    @property
    def static(self) -> bool:
        return self._ring is not None and self.slot_lengths is None

    def tensors(self) -> list[Tensor]:
        return super().tensors() + ([] if self._ring is None else [self._ring])

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if k.shape[2] != self.frame_tokens:
            raise ValueError(f"window cache expects one frame of {self.frame_tokens} tokens, got {k.shape[2]}")
        if self.store.capacity == 0:
            self.store.allocate(k, (1 + self.frames) * self.frame_tokens, 0)
        if self.slot_lengths is not None:
            return self._update_slots(k, v)
        if self._ring is not None:
            return self._overwrite_oldest(k, v)
        slot = self._ring_slot(self._filled)
        self.store.write(slot * self.frame_tokens, k, v)
        self._filled += 1
        self.length = min(self.frames_seen, 1 + self.frames) * self.frame_tokens
        if self._filled > self.frames:
            self._ring = torch.tensor(self._filled, device=k.device)
        return self.views()

    def _overwrite_oldest(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The full ring's step: the slot is :meth:`_ring_slot` computed on the device (never the anchor)."""
        slot = 1 + (self._ring - 1) % self.frames
        positions = slot * self.frame_tokens + torch.arange(self.frame_tokens, device=k.device)
        self.store.scatter(positions.expand(*k.shape[:2], -1), k, v)
        self._ring += 1  # in place: the same state tensor every step
        return self.views()

    def _ring_slot(self, frames_seen: int) -> int:
        """The frame slot the next frame takes: 0 for the anchor, then the ring's oldest."""
        return 0 if frames_seen == 0 else 1 + (frames_seen - 1) % self.frames

    def _split_slots(self, batch: int) -> None:
        super()._split_slots(batch)
        self.slot_frames = [self.frames_seen] * batch

    def reset_slot(self, index: int) -> None:
        super().reset_slot(index)
        if self.slot_lengths is not None:
            self.slot_frames[index] = 0

    def _slot_positions(self, k: Tensor) -> Tensor:
        starts = [self._ring_slot(seen) * self.frame_tokens for seen in self.slot_frames]
        self.slot_frames = [seen + 1 for seen in self.slot_frames]
        self.slot_lengths = [min(seen, 1 + self.frames) * self.frame_tokens for seen in self.slot_frames]
        return _spans(starts, k)


class BudgetCache(LayerCache):
    """At most ``budget`` tokens; first-frame tokens are pinned, others evicted by key redundancy per head.

    Storage grows like the full cache until it reaches the budget, then evicted slots are overwritten in place.
    """

    def __init__(self, store: PlainStore, frame_tokens: int, budget: int) -> None:
        super().__init__(store)
        if budget < 2 * frame_tokens:
            raise ValueError(
                f"budget of {budget} tokens cannot hold the anchor frame plus one frame ({2 * frame_tokens} tokens)"
            )
        self.frame_tokens = frame_tokens
        self.budget = budget

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.slot_lengths is not None:
            return self._update_slots(k, v)
        if self.length + k.shape[2] <= self.budget:
            self._append(k, v, max_capacity=self.budget)
        else:
            self.store.scatter(self._most_redundant(k.shape[2]), k, v)
        return self.views()

    def _capacity_limit(self) -> int | None:
        return self.budget

    @property
    def static(self) -> bool:
        return self.slot_lengths is None and self.length + self.frame_tokens > self.budget

    def _slot_positions(self, k: Tensor) -> Tensor:
        """Elements with room append; full ones overwrite their own most redundant slots."""
        count = k.shape[2]
        starts = self.slot_lengths
        positions = _spans(starts, k)
        full = [b for b, start in enumerate(starts) if start + count > self.budget]
        for length in sorted({starts[b] for b in full}):
            rows = [b for b in full if starts[b] == length]
            positions[rows] = self._most_redundant(count, length, rows)
        self.slot_lengths = [start if b in full else start + count for b, start in enumerate(starts)]
        return positions

    def _most_redundant(self, count: int, length: int | None = None, rows: list[int] | None = None) -> Tensor:
        """The ``count`` evictable slots [B, h, count] whose keys are most similar to the layer's mean key
        (among the first ``length`` slots, default all, of the elements ``rows``, default all)."""
        # Scores decide discontinuously which tokens stay, so a compiled step, whose kernels round and order sums
        # differently, must rank them as eager does. In float32 two scores often lie within the rounding error of
        # computing them (seen: two keys 1.6e-8 apart whose order a compiled step reversed, after which the streams
        # held different tokens), and int8 keys give exact ties. Hence: float64 (int8 keys dequantize exactly, and
        # their sum over slots is exact in any order); the sum in place of the mean and x.sum / |x| in place of the
        # cosine (the same order: both drop positive factors common to a head, and with them a division a compiler
        # may round differently); ties at the cut to the lower slots (topk's choice among equal scores is up to the
        # kernel); evicted slots in ascending order, so which new token takes which slot does not depend on how the
        # evicted slots' scores compare among themselves. MPS has no float64.
        dtype = torch.float32 if self.store.k.device.type == "mps" else torch.float64
        keys = self.store.read_keys(self.length if length is None else length, dtype)
        evictable = (keys if rows is None else keys[rows])[:, :, self.frame_tokens :]
        total = evictable.sum(dim=2, keepdim=True)
        norms = torch.linalg.vector_norm(evictable, dim=-1).clamp_min(1e-30)
        redundancy = (evictable @ total.transpose(-1, -2)).squeeze(-1) / norms  # [B, heads, n]: |total| * cosine
        cut = redundancy.topk(count, dim=-1).values[..., -1:]  # the count-th largest score, whichever slot has it
        above, tied = redundancy > cut, redundancy == cut
        evicted = above | (tied & (tied.cumsum(dim=-1) <= count - above.sum(dim=-1, keepdim=True)))
        slots = torch.arange(redundancy.shape[-1], 0, -1, device=redundancy.device)  # distinct, larger for lower slots
        ranked = torch.where(evicted, slots, 0).topk(count, dim=-1)  # exactly the evicted slots, lowest first
        return slots.numel() - ranked.values + self.frame_tokens


def _spans(starts: list[int], k: Tensor) -> Tensor:
    """Slots [B, heads, n]: element b's n new tokens go to starts[b], starts[b] + 1, ..."""
    batch, heads, count, _ = k.shape
    offsets = torch.tensor(starts, device=k.device)[:, None] + torch.arange(count, device=k.device)
    return offsets[:, None, :].expand(batch, heads, count).contiguous()


# ---------------------------------------------------------------------------------------------------- saved state
# A stream's cache as (JSON-able meta, tensors): what a run state saves (streamvggt.io.run_state) so that a stream
# interrupted by a kill goes on where it stood. Kept apart from the policies' update code on purpose: these read
# and set the layers' attributes, never change how a layer updates.


def cache_state(cache: StreamCache) -> tuple[dict[str, object], dict[str, Tensor]]:
    """``cache``'s state: per layer its counters, ring and scales (meta) and only the valid part of its storage
    (tensors, never the preallocated room), so a bounded cache's state stays bounded."""
    tensors: dict[str, Tensor] = {}
    trunk = [_layer_state(layer, f"trunk.{i}", tensors) for i, layer in enumerate(cache.trunk)]
    camera = [
        [_layer_state(layer, f"camera.{i}.{j}", tensors) for j, layer in enumerate(iteration)]
        for i, iteration in enumerate(cache.camera)
    ]
    return {"policy": str(cache.policy), "trunk": trunk, "camera": camera}, tensors


def load_cache_state(
    cache: StreamCache, meta: dict[str, object], tensors: dict[str, Tensor], device: torch.device | str
) -> None:
    """Set ``cache`` (already :meth:`StreamCache.open` for the stream's frame size) to a :func:`cache_state`;
    ValueError (one line) when it was saved for another policy or model."""
    if meta.get("policy") != str(cache.policy):
        raise ValueError(f"the saved cache has policy {meta.get('policy')}, this stream {cache.policy}")
    trunk, camera = meta["trunk"], meta["camera"]
    if len(trunk) != len(cache.trunk) or [len(it) for it in camera] != [len(it) for it in cache.camera]:
        raise ValueError("the saved cache has other layers than this model's (another checkpoint or config?)")
    for i, layer in enumerate(cache.trunk):
        _load_layer_state(layer, trunk[i], f"trunk.{i}", tensors, device)
    for i, iteration in enumerate(cache.camera):
        for j, layer in enumerate(iteration):
            _load_layer_state(layer, camera[i][j], f"camera.{i}.{j}", tensors, device)


def _layer_state(layer: LayerCache, prefix: str, tensors: dict[str, Tensor]) -> dict[str, object]:
    store = layer.store
    length = layer.length
    meta: dict[str, object] = {
        "kind": type(layer).__name__,
        "length": length,
        "capacity": store.capacity,
        "slot_lengths": layer.slot_lengths,
        "int8": isinstance(store, Int8Store),
    }
    if isinstance(layer, WindowCache):
        meta["filled"] = layer._filled
        meta["ring"] = None if layer._ring is None else int(layer._ring)
        meta["slot_frames"] = getattr(layer, "slot_frames", None)
    if store.k is None:
        return meta
    tensors[f"{prefix}.k"] = store.k[:, :, :length]
    tensors[f"{prefix}.v"] = store.v[:, :, :length]
    if isinstance(store, Int8Store):
        tensors[f"{prefix}.k_scale"] = store.k_scale
        tensors[f"{prefix}.v_scale"] = store.v_scale[:, :, :length]
        meta["dtype"] = str(store.dtype).removeprefix("torch.")
        meta["length_hint"] = store.length_hint
    return meta


def _load_layer_state(
    layer: LayerCache, meta: dict, prefix: str, tensors: dict[str, Tensor], device: torch.device | str
) -> None:
    store = layer.store
    if meta["kind"] != type(layer).__name__ or meta["int8"] != isinstance(store, Int8Store):
        raise ValueError(f"the saved cache layer {prefix} is a {meta['kind']}, this stream's a {type(layer).__name__}")
    length, capacity = int(meta["length"]), int(meta["capacity"])
    layer.length = length
    layer.slot_lengths = None if meta["slot_lengths"] is None else [int(n) for n in meta["slot_lengths"]]
    layer.key_mask = None  # each update computes it anew
    if isinstance(layer, WindowCache):
        layer._filled = int(meta["filled"])
        layer._ring = None if meta["ring"] is None else torch.tensor(int(meta["ring"]), device=device)
        if meta.get("slot_frames") is not None:
            layer.slot_frames = [int(n) for n in meta["slot_frames"]]
    if capacity == 0:
        return
    k, v = tensors[f"{prefix}.k"].to(device), tensors[f"{prefix}.v"].to(device)
    # The saved capacity, zero-filled past the valid prefix: the same room (a bounded layer's static shape, the
    # same doublings) and the zeros that unwritten slots hold once streams of different lengths read them.
    shape = (*k.shape[:2], capacity, k.shape[-1])
    store.k, store.v = k.new_zeros(shape), v.new_zeros(shape)
    store.k[:, :, :length], store.v[:, :, :length] = k, v
    if isinstance(store, Int8Store):
        v_scale = tensors[f"{prefix}.v_scale"].to(device)
        store.v_scale = v_scale.new_zeros((*shape[:3], 1))
        store.v_scale[:, :, :length] = v_scale
        store.k_scale = tensors[f"{prefix}.k_scale"].to(device).clone()
        store.dtype = getattr(torch, meta["dtype"])
        store.length_hint = int(meta["length_hint"])


# A slot of a batched cache saved and restored on its own (collection.runner with --batch B > 1): one batch
# element's part of every layer, in the format of a batch of one, so that a saved slot can go on in any slot of any
# batch (of one as well).


def slot_cache_state(cache: StreamCache, index: int) -> tuple[dict[str, object], dict[str, Tensor]]:
    """Batch element ``index``'s part of ``cache`` as the :func:`cache_state` of a batch of one: per layer only
    that element's valid slots (its own length once streams have different lengths), its key scale and its ring
    position. The tensors are copies: the batch's next steps write the storage in place."""
    tensors: dict[str, Tensor] = {}
    trunk = [_slot_layer_state(layer, index, f"trunk.{i}", tensors) for i, layer in enumerate(cache.trunk)]
    camera = [
        [_slot_layer_state(layer, index, f"camera.{i}.{j}", tensors) for j, layer in enumerate(iteration)]
        for i, iteration in enumerate(cache.camera)
    ]
    return {"policy": str(cache.policy), "trunk": trunk, "camera": camera}, tensors


def load_slot_cache_state(
    cache: StreamCache,
    index: int,
    batch: int,
    meta: dict[str, object],
    tensors: dict[str, Tensor],
    device: torch.device | str,
) -> None:
    """Put a :func:`slot_cache_state` (or the :func:`cache_state` of a batch of one) into batch element ``index``
    of ``cache`` (open, ``batch`` elements): its slots written into every layer at that element, its length and ring
    position set, the other elements' streams untouched. ValueError (one line) when saved for another policy or
    model."""
    if meta.get("policy") != str(cache.policy):
        raise ValueError(f"the saved cache has policy {meta.get('policy')}, this stream {cache.policy}")
    trunk, camera = meta["trunk"], meta["camera"]
    if len(trunk) != len(cache.trunk) or [len(it) for it in camera] != [len(it) for it in cache.camera]:
        raise ValueError("the saved cache has other layers than this model's (another checkpoint or config?)")
    for i, layer in enumerate(cache.trunk):
        _load_slot_layer(layer, index, batch, trunk[i], f"trunk.{i}", tensors, device)
    for i, iteration in enumerate(cache.camera):
        for j, layer in enumerate(iteration):
            _load_slot_layer(layer, index, batch, camera[i][j], f"camera.{i}.{j}", tensors, device)


def _slot_layer_state(layer: LayerCache, index: int, prefix: str, tensors: dict[str, Tensor]) -> dict[str, object]:
    store = layer.store
    split = layer.slot_lengths is not None
    length = layer.slot_lengths[index] if split else layer.length
    meta: dict[str, object] = {
        "kind": type(layer).__name__,
        "length": length,
        "capacity": store.capacity,
        "slot_lengths": [length] if split else None,
        "int8": isinstance(store, Int8Store),
    }
    if isinstance(layer, WindowCache):
        seen = layer.slot_frames[index] if split else layer.frames_seen
        # The counters a batch of one that saw ``seen`` frames holds (its ring counts on once full).
        meta["filled"] = min(seen, 1 + layer.frames)
        meta["ring"] = seen if seen > layer.frames else None
        meta["slot_frames"] = [seen] if split else None
    if store.k is None:
        return meta
    row = slice(index, index + 1)
    tensors[f"{prefix}.k"] = store.k[row, :, :length].clone()
    tensors[f"{prefix}.v"] = store.v[row, :, :length].clone()
    if isinstance(store, Int8Store):
        tensors[f"{prefix}.k_scale"] = store.k_scale[row].clone()
        tensors[f"{prefix}.v_scale"] = store.v_scale[row, :, :length].clone()
        meta["dtype"] = str(store.dtype).removeprefix("torch.")
        meta["length_hint"] = min(store.length_hint, length)
    return meta


def _load_slot_layer(
    layer: LayerCache,
    index: int,
    batch: int,
    meta: dict,
    prefix: str,
    tensors: dict[str, Tensor],
    device: torch.device | str,
) -> None:
    store = layer.store
    if meta["kind"] != type(layer).__name__ or meta["int8"] != isinstance(store, Int8Store):
        raise ValueError(f"the saved cache layer {prefix} is a {meta['kind']}, this stream's a {type(layer).__name__}")
    if f"{prefix}.k" not in tensors:
        layer.reset_slot(index)  # saved before its stream stored anything: its next frame starts the stream
        return
    split = meta["slot_lengths"] is not None
    length = int(meta["slot_lengths"][0]) if split else int(meta["length"])
    k, v = tensors[f"{prefix}.k"].to(device), tensors[f"{prefix}.v"].to(device)
    int8 = isinstance(store, Int8Store)
    dtype = getattr(torch, meta["dtype"]) if int8 else k.dtype
    # Shaped like what the layer's update allocates from: [batch, heads, *, dim] in the dtype keys arrive in.
    like = torch.empty((batch, k.shape[1], 0, k.shape[-1]), dtype=dtype, device=device)
    if store.capacity == 0:  # nothing stored yet (a session opened for this stream): the saved room, zeroed
        store.allocate(like, int(meta["capacity"]), 0)
        store.zero_from(0)
        layer.length = 0
    if layer.slot_lengths is None:
        layer._split_slots(batch)  # the other elements keep the shared stream so far, each on its own from now
    if length > store.capacity:
        limit = layer._capacity_limit()
        capacity = max(length, 2 * store.capacity)
        store.allocate(like, capacity if limit is None else min(capacity, limit), layer.length)
        store.zero_from(layer.length)
    # The element's whole row: its saved slots at the same positions, zeros after them (masked, never garbage).
    store.k[index].zero_()
    store.v[index].zero_()
    store.k[index, :, :length], store.v[index, :, :length] = k[0], v[0]
    if int8:
        store.v_scale[index].zero_()
        store.v_scale[index, :, :length] = tensors[f"{prefix}.v_scale"].to(device)[0]
        store.k_scale[index] = tensors[f"{prefix}.k_scale"].to(device)[0]
        store.length_hint = max(store.length_hint, length)
    layer.slot_lengths[index] = length
    layer.length = max(layer.length, length)
    # Which keys each element sees in the views as they now stand (the next update computes it anew).
    lengths = torch.tensor(layer.slot_lengths, device=device)
    uniform = all(n == layer.length for n in layer.slot_lengths)
    layer.key_mask = None if uniform else (torch.arange(layer.length, device=device) < lengths[:, None])[:, None, None]
    if isinstance(layer, WindowCache):
        if split:
            seen = int(meta["slot_frames"][0])
        else:
            seen = int(meta["filled"]) if meta["ring"] is None else int(meta["ring"])
        layer.slot_frames[index] = seen
