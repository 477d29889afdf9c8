"""What happened to each input: one record per input, kept per shard as it goes and merged for the collection.

A shard's file (``.collection/shards/shard-I-of-N.json``) is rewritten after every input, so a killed run still
says what it finished. The merged ``summary.json`` lists every input of the manifest in order: ``done`` (complete:
frames and seconds from its completion marker), ``failed`` (the latest failure any shard recorded, with its
one-line reason) or ``missing`` (no shard has done it yet).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamvggt.collection.manifest import Entry
from streamvggt.collection.outputs import OutputRoot
from streamvggt.collection.sharding import Shard
from streamvggt.io.atomic import atomic_output

DONE, SKIPPED, FAILED, MISSING = "done", "skipped", "failed", "missing"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class InputRecord:
    """One input's outcome. ``status``: done (reconstructed now), skipped (complete before), failed, missing."""

    name: str
    input: str
    status: str
    frames: int | None = None
    seconds: float | None = None  # wall time of the input's reconstruction, writing included
    error: str | None = None  # one line, for failed inputs
    finished: float | None = None  # Unix time the record was made

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ShardLog:
    """The records of one process's share, rewritten to its shard file after each input (thread-safe)."""

    def __init__(self, root: OutputRoot, shard: Shard, manifest: str) -> None:
        self.path = root.shard_file(shard)
        self.shard = shard
        self.manifest = manifest
        self.records: list[InputRecord] = []
        self._lock = threading.Lock()

    def add(self, record: InputRecord) -> None:
        with self._lock:
            self.records.append(dataclasses.replace(record, finished=record.finished or time.time()))
            document = {
                "manifest": self.manifest,
                "shard": str(self.shard),
                "inputs": [r.to_json() for r in self.records],
                "counts": counts(self.records),
            }
            write_json(self.path, document)


def merge(root: OutputRoot, entries: list[Entry], manifest: str) -> dict[str, Any]:
    """The collection's summary from the completion markers and every shard file; written to summary.json."""
    failures: dict[str, InputRecord] = {}
    for path in root.shard_files():
        with open(path, encoding="utf-8") as f:
            for item in json.load(f)["inputs"]:
                record = InputRecord(**item)
                latest = failures.get(record.name)
                if record.status == FAILED and (latest is None or (record.finished or 0) >= (latest.finished or 0)):
                    failures[record.name] = record
    records = []
    for entry in entries:
        completion = root.completion(entry.name)
        if completion is not None:
            frames, seconds, finished = completion["frames"], completion["seconds"], completion["finished"]
            records.append(InputRecord(entry.name, entry.input, DONE, frames, seconds, finished=finished))
        elif entry.name in failures:
            failure = failures[entry.name]
            records.append(InputRecord(entry.name, entry.input, FAILED, error=failure.error, finished=failure.finished))
        else:
            records.append(InputRecord(entry.name, entry.input, MISSING))
    document = {"manifest": manifest, "inputs": [r.to_json() for r in records], "counts": counts(records)}
    write_json(root.path / SUMMARY_FILE, document)
    return document


def counts(records: list[InputRecord]) -> dict[str, int]:
    """How many records have each status (every status named, zeros included)."""
    return {status: sum(r.status == status for r in records) for status in (DONE, SKIPPED, FAILED, MISSING)}


def write_json(path: Path, document: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
