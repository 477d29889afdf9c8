"""The output root of a collection: one finished folder per input, and the run's own state beside them.

An input is reconstructed into a staging folder (``.collection/staging/NAME``), moved to ``NAME`` when complete,
and then its completion marker (``.collection/complete/NAME.json``) is written atomically, last. An input is
complete when its marker and its folder both exist, so a run killed at any point (SIGKILL included) leaves
nothing that a restart takes for complete: the restart clears the staging folder and does the input again.
``NAME`` itself holds exactly what ``streamvggt reconstruct`` writes for that input.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from streamvggt.collection.sharding import Shard
from streamvggt.io.atomic import atomic_output
from streamvggt.io.errors import OutputError

log = logging.getLogger(__name__)

STATE_DIR = ".collection"


class OutputRoot:
    """The folder that holds a collection's output folders (created; OutputError if it cannot be written)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.state = self.path / STATE_DIR
        blocking = next((p for p in (self.path, *self.path.parents) if p.exists() and not p.is_dir()), None)
        if blocking is not None:  # mkdir would say only "File exists" or "Not a directory"
            raise OutputError(f"cannot create output root {self.path}: {blocking} is a file, not a folder")
        try:
            for folder in (self.path, self.state / "staging", self.state / "complete", self.state / "shards"):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create output root {self.path}: {error.strerror or error}") from None

    def folder(self, name: str) -> Path:
        return self.path / name

    def marker(self, name: str) -> Path:
        return self.state / "complete" / f"{name}.json"

    def is_complete(self, name: str) -> bool:
        return self.marker(name).is_file() and self.folder(name).is_dir()

    def completion(self, name: str) -> dict[str, Any] | None:
        """What the marker of a complete input says (frames, seconds, ...); None when it is not complete."""
        if not self.is_complete(name):
            return None
        with open(self.marker(name), encoding="utf-8") as f:
            return json.load(f)

    def staging(self, name: str) -> Path:
        """An empty staging folder path for ``name`` (whatever an earlier, interrupted run left there is removed)."""
        path = self.state / "staging" / name
        self.discard(path)
        return path

    @staticmethod
    def discard(path: Path) -> None:
        if path.exists():
            shutil.rmtree(path)

    def publish(self, name: str, staging: Path, record: dict[str, Any]) -> None:
        """Move a complete staging folder to ``name`` and write its marker (last, atomically)."""
        target = self.folder(name)
        marker = self.marker(name)
        marker.unlink(missing_ok=True)  # a redo: not complete until the new marker is written
        if target.exists():
            # Left by a run killed between the move and the marker, or put there by hand: kept, never deleted.
            aside = self.state / "replaced" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
            aside.parent.mkdir(exist_ok=True)
            log.warning("%s has no completion marker: moved to %s and written again", target, aside)
            os.replace(target, aside)
        os.replace(staging, target)
        with atomic_output(marker) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    def shard_file(self, shard: Shard) -> Path:
        return self.state / "shards" / f"shard-{shard.index:05d}-of-{shard.count:05d}.jsonl"

    def shard_files(self) -> list[Path]:
        return sorted((self.state / "shards").glob("shard-*.jsonl"))
