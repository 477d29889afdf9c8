"""Which part of a collection this process takes: a disjoint, deterministic share of the manifest.

Launchers say who a process is: torchrun and ``accelerate launch`` set ``WORLD_SIZE`` and ``RANK`` (and
``LOCAL_RANK``, the GPU on this machine); a SLURM array passes ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``.
Both together (an array of multi-GPU jobs) compose: process r of w in array task i of n takes share i + n*r of
n*w, a part of the task's share. Entry k of the manifest belongs to share k mod count: every entry to exactly one
share, shares balanced in count.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Share ``index`` of ``count``."""

    index: int = 0
    count: int = 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, entries: Sequence[T]) -> list[T]:
        """This share's entries, in manifest order."""
        return [entry for position, entry in enumerate(entries) if position % self.count == self.index]

    def within(self, process: Shard) -> Shard:
        """Share ``process`` of this share: the share of one process of a launcher inside an array task."""
        return Shard(self.index + self.count * process.index, self.count * process.count)


def parse_shard(text: str) -> Shard:
    """``"i/n"`` with 0 <= i < n, as SLURM array task ids count from 0; ValueError saying so otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None or int(match.group(2)) < 1 or int(match.group(1)) >= int(match.group(2)):
        raise ValueError(f"--shard must be i/n with 0 <= i < n (e.g. 0/4), got '{text}'")
    return Shard(int(match.group(1)), int(match.group(2)))


def launcher_process(environ: Mapping[str, str] = os.environ) -> Shard:
    """This process among those a launcher started (``RANK`` of ``WORLD_SIZE``); 0/1 without a launcher."""
    world = environ.get("WORLD_SIZE", "1")
    rank = environ.get("RANK", "0")
    if not (world.isdigit() and rank.isdigit() and int(rank) < int(world)):
        raise ValueError(f"the launcher's RANK={rank} and WORLD_SIZE={world} are not a rank below a world size")
    return Shard(int(rank), max(1, int(world)))
