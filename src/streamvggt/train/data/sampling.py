"""Which frames form a clip, which clips form an epoch, and how they are split into batches across processes.

Every random choice is drawn from a generator seeded by (seed, epoch, index): an item's content never depends on
worker count, process count or on how far an earlier run got, so a resumed run sees exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


def item_rng(*keys: int) -> np.random.Generator:
    """A generator determined by integer keys, e.g. ``item_rng(seed, epoch, index)``."""
    return np.random.default_rng([int(k) for k in keys])


@dataclass(frozen=True)
class ClipSampling:
    """How a dataset draws a clip of frames from one sequence.

    With probability ``video_prob`` the clip is video-like (increasing frame order); otherwise it is a shuffled
    collection of the same kind of frames (shuffled in blocks of ``block_shuffle`` when set, so that far-apart
    frames are not mixed). A video clip uses one fixed stride with probability ``fixed_interval_prob``, else random
    strides; strides lie in [min_interval, max_interval] and shrink for short sequences.
    """

    min_interval: int = 1
    max_interval: int = 25
    video_prob: float = 0.5
    fixed_interval_prob: float = 0.5
    block_shuffle: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.min_interval <= self.max_interval:
            raise ValueError(f"need 1 <= min_interval <= max_interval, got {self.min_interval}, {self.max_interval}")
        for name in ("video_prob", "fixed_interval_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        if self.block_shuffle is not None and self.block_shuffle < 1:
            raise ValueError(f"block_shuffle must be positive, got {self.block_shuffle}")

    def sample(self, length: int, start: int, num_views: int, rng: np.random.Generator) -> tuple[list[int], bool]:
        """Positions (indices into a sequence of ``length`` frames) of a ``num_views`` clip from about ``start``.

        Returns (positions, is_video). A sequence with fewer frames after ``start`` than the clip needs repeats
        frames (revisits) rather than failing.
        """
        if length < 1 or not 0 <= start < length:
            raise ValueError(f"start {start} outside a sequence of {length} frames")
        is_video = bool(rng.random() < self.video_prob)
        remaining = length - 1 - start
        if num_views == 1:
            return [start], True
        if remaining < num_views - 1:
            return self._revisit(length, num_views, is_video, rng), is_video
        limit = max(self.min_interval, min(self.max_interval, remaining // (num_views - 1)))
        if is_video and rng.random() < self.fixed_interval_prob:
            stride = int(rng.integers(self.min_interval, limit + 1))
            return [start + i * stride for i in range(num_views)], True
        # Random strides may overshoot the end: the frames past it are replaced by unused frames after start.
        wide = max(self.min_interval, min(self.max_interval, 2 * remaining // (num_views - 1)))
        strides = rng.integers(self.min_interval, wide + 1, size=num_views - 1)
        positions = [p for p in np.cumsum([start, *strides]).tolist() if p < length]
        unused = np.setdiff1d(np.arange(start, length), positions)
        positions += rng.choice(unused, num_views - len(positions), replace=False).tolist()
        if is_video:
            return sorted(positions), True
        return self._shuffle(positions, rng), False

    def _revisit(self, length: int, num_views: int, is_video: bool, rng: np.random.Generator) -> list[int]:
        """A clip from a sequence too short for it: all its frames, repeated in turn until the clip is full."""
        frames = list(range(length))
        if not is_video:
            frames = self._shuffle(frames, rng)
        return [frames[i % length] for i in range(num_views)]

    def _shuffle(self, positions: list[int], rng: np.random.Generator) -> list[int]:
        if self.block_shuffle is None:
            return [int(p) for p in rng.permutation(positions)]
        ordered = sorted(positions)
        size = self.block_shuffle
        return [int(p) for i in range(0, len(ordered), size) for p in rng.permutation(ordered[i : i + size])]


@dataclass(frozen=True)
class ItemKey:
    """What a dataset needs to build one clip: the epoch, its index in the epoch's mix and the resolution."""

    epoch: int
    index: int
    resolution: int


class BatchPlan:
    """The batches of one process: clips shuffled per epoch, split across processes, one resolution per batch.

    An epoch has ``len(mix)`` clips; process ``rank`` takes every ``world_size``-th clip of the shuffled order
    (equal shares; the remainder is dropped), in batches of ``batch_size``.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        resolution_weights: Sequence[float],
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad batch plan: batch_size={batch_size}, rank={rank}, world_size={world_size}")
        weights = np.asarray(resolution_weights, dtype=np.float64)
        if weights.ndim != 1 or len(weights) == 0 or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"resolution weights must be non-negative and not all zero, got {resolution_weights}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.probabilities = weights / weights.sum()
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        """Batches per epoch for this process."""
        return self.num_items // self.world_size // self.batch_size

    def epoch(self, epoch: int, start: int = 0) -> Iterator[list[ItemKey]]:
        """The batches of ``epoch`` from batch ``start`` on (resuming mid-epoch skips without loading)."""
        order = item_rng(self.seed, epoch, 0xB47C4).permutation(self.num_items)
        mine = order[self.rank :: self.world_size][: len(self) * self.batch_size]
        for batch in range(start, len(self)):
            # Resolutions are drawn per process and batch: every process keeps its batch of one shape.
            rng = item_rng(self.seed, epoch, self.rank, batch)
            resolution = int(rng.choice(len(self.probabilities), p=self.probabilities))
            indices = mine[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield [ItemKey(epoch, int(i), resolution) for i in indices]
