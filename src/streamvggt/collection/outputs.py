"""The output root of a collection: one finished folder per input, and the run's own state beside them.

An input is reconstructed into a staging folder (``.collection/staging/NAME``), moved to ``NAME`` when complete,
and then its completion marker (``.collection/complete/NAME.json``) is written atomically, last. An input is
complete when its marker and its folder both exist, so a run killed at any point (SIGKILL included) leaves
nothing that a restart takes for complete: the restart clears the staging folder and does the input again.
The marker records the options the input was made with (:mod:`streamvggt.collection.fingerprint`): a complete
input made with other options, or with options a marker from before they were recorded does not name, is done
again, with a log line saying why, and its marker then records that reason (``redone``).
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

from streamvggt.collection.fingerprint import changed_options
from streamvggt.collection.manifest import Entry
from streamvggt.collection.sharding import Shard
from streamvggt.io.atomic import atomic_output
from streamvggt.io.errors import OutputError
from streamvggt.io.inputs.sources import is_image_input

log = logging.getLogger(__name__)

STATE_DIR = ".collection"


class OutputRoot:
    """The folder that holds a collection's output folders (created; OutputError if it cannot be written).

    fingerprint: the options of the run writing into it (:func:`~streamvggt.collection.fingerprint.run_fingerprint`),
    recorded in each marker it writes; None for a root that is only read (``--merge``).
    """

    def __init__(self, path: str | os.PathLike, fingerprint: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.redone: dict[str, str] = {}  # why a complete input is done again, by name, for its new marker
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

    def todo(self, entries: list[Entry], force: bool = False) -> list[Entry]:
        """The entries to reconstruct: those not complete, those complete with other options than this run's
        (each logged with the options that changed) and, with ``force``, every one."""
        todo, by_reason = [], {}
        for entry in entries:
            reason = "--force" if force and self.is_complete(entry.name) else self._stale(entry)
            if reason is not None:
                self.redone[entry.name] = reason
                by_reason.setdefault(reason, []).append(entry.name)
            if reason is not None or not self.is_complete(entry.name):
                todo.append(entry)
        for reason, names in by_reason.items():  # one line per reason: a changed option concerns thousands
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            log.warning("%d complete input(s) done again (%s): %s", len(names), shown, reason)
        return todo

    def _stale(self, entry: Entry) -> str | None:
        """Why a complete input's outputs are not this run's (None: they are, or it is not complete)."""
        try:
            completion = self.completion(entry.name)
        except (OSError, ValueError):  # a marker damaged by hand: its options are unknown
            return "its completion marker cannot be read, so its options are unknown"
        if completion is None or self.fingerprint is None:
            return None
        recorded = completion.get("options")
        if recorded is None:
            return "its marker predates recorded options, so they are unknown"
        changes = changed_options(recorded, self.fingerprint, image_input=is_image_input(entry.input))
        return f"made with other options ({'; '.join(changes)})" if changes else None

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
        """Move a complete staging folder to ``name`` and write its marker (last, atomically), with the run's options
        and, for an input done again, why."""
        record = {**record, "options": self.fingerprint, "redone": self.redone.get(name)}
        target = self.folder(name)
        marker = self.marker(name)
        redo = marker.is_file()
        marker.unlink(missing_ok=True)  # a redo: not complete until the new marker is written
        if redo and target.exists():  # this collection's own outputs, made with other options: replaced
            shutil.rmtree(target)
        elif target.exists():
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
