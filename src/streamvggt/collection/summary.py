"""What happened to each input: one record per input, kept per shard as it goes and merged for the collection.

A shard's file (``.collection/shards/shard-I-of-N.jsonl``, one JSON record per line) gets each input's record as
soon as it is known, so a killed run still says what it finished; a run starts its shard's file afresh. The merged
``summary.json`` lists every input of the manifest in order: ``done`` (complete: frames and seconds from its
completion marker), ``failed`` (the latest failure any shard file records, with its one-line reason) or
``missing`` (no shard has done it yet). Each done input records the precision its model ran in (requested and
resolved: shards on different machines may resolve ``auto`` differently), and ``precision`` at the top lists the
distinct modes over the done inputs. Each done input also names the options it was made with (``options``, a
short digest; ``options`` at the top maps each digest to the options) and, when a rerun did it again, why
(``redone``): a ``--merge`` of shards run with different options cannot redo anything, so it logs a warning
instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamvggt.collection.fingerprint import options_digest
from streamvggt.collection.manifest import Entry
from streamvggt.collection.outputs import OutputRoot
from streamvggt.collection.sharding import Shard
from streamvggt.io.atomic import atomic_output
from streamvggt.io.inputs.sources import is_image_input

log = logging.getLogger(__name__)

DONE, SKIPPED, FAILED, MISSING = "done", "skipped", "failed", "missing"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True, kw_only=True)
class InputRecord:
    """One input's outcome. ``status``: done (reconstructed now), skipped (complete before), failed, missing."""

    name: str
    input: str
    status: str
    frames: int | None = None
    seconds: float | None = None  # wall time of the input's reconstruction, writing included
    error: str | None = None  # one line, for failed inputs
    finished: float | None = None  # Unix time the record was made
    precision: dict[str, str] | None = None  # {"requested": ..., "resolved": ...}, for done inputs
    options: str | None = None  # digest of the options a done input was made with (summary.json: "options")
    redone: str | None = None  # why a done input that was complete before was done again

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class ShardLog:
    """The records of one process's share, appended to its shard file as they come (thread-safe). Appending keeps
    the cost per input constant in shares of thousands of inputs."""

    def __init__(self, root: OutputRoot, shard: Shard) -> None:
        self.path = root.shard_file(shard)
        self.records: list[InputRecord] = []
        self._lock = threading.Lock()
        self.path.write_text("", encoding="utf-8")

    def add(self, *records: InputRecord) -> None:
        stamped = [dataclasses.replace(r, finished=r.finished or time.time()) for r in records]
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r.to_json()) + "\n" for r in stamped))
            self.records += stamped


def read_shard_file(path: Path) -> list[InputRecord]:
    """The records of a shard file; a line cut short by a killed run is left out."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(InputRecord(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                continue
    return records


def merge(root: OutputRoot, entries: list[Entry], manifest: str) -> dict[str, Any]:
    """The collection's summary from the completion markers and every shard file; written to summary.json."""
    failures: dict[str, InputRecord] = {}
    for path in root.shard_files():
        for record in read_shard_file(path):
            latest = failures.get(record.name)
            if record.status == FAILED and (latest is None or (record.finished or 0) >= (latest.finished or 0)):
                failures[record.name] = record
    records, options, kinds = [], {}, set()
    for entry in entries:
        completion = root.completion(entry.name)
        if completion is not None:
            digest = None
            if completion.get("options") is not None:
                digest = options_digest(completion["options"])
                options[digest] = completion["options"]
                kinds.add(_as_made(completion["options"], entry.input))
            done = InputRecord(
                name=entry.name,
                input=entry.input,
                status=DONE,
                frames=completion["frames"],
                seconds=completion["seconds"],
                finished=completion["finished"],
                precision=completion.get("precision"),
                options=digest,
                redone=completion.get("redone"),
            )
            records.append(done)
        elif entry.name in failures:
            failure = failures[entry.name]
            records.append(
                InputRecord(
                    name=entry.name, input=entry.input, status=FAILED, error=failure.error, finished=failure.finished
                )
            )
        else:
            records.append(InputRecord(name=entry.name, input=entry.input, status=MISSING))
    # Shards run with other options: a merge cannot redo their inputs, it can only say so.
    made = ({digest for digest, _ in kinds}, {fps for _, fps in kinds if fps != "images"})
    if len(made[0]) > 1 or len(made[1]) > 1:
        log.warning(
            'the done inputs were made with %d different sets of options (summary.json: each input\'s "options")',
            len(options),
        )
    document = {
        "manifest": manifest,
        "precision": precisions(records),
        "options": dict(sorted(options.items())),
        "inputs": [r.to_json() for r in records],
        "counts": counts(records),
    }
    write_json(root.path / SUMMARY_FILE, document)
    return document


def _as_made(options: dict[str, Any], input: str) -> tuple[str, Any]:
    """The options as they acted on ``input``: the digest of all but --fps, and --fps for a video (image folders
    keep every image, so a collection of both made with one set of options has one digest and one fps)."""
    stream = options.get("stream", {})
    fps = "images" if is_image_input(input) else stream.get("fps")
    return options_digest({**options, "stream": {**stream, "fps": None}}), fps


def precisions(records: list[InputRecord]) -> dict[str, list[str]]:
    """The distinct requested and resolved precisions of the records that have one, sorted."""
    given = [r.precision for r in records if r.precision]
    return {key: sorted({p[key] for p in given if key in p}) for key in ("requested", "resolved")}


def counts(records: list[InputRecord]) -> dict[str, int]:
    """How many records have each status (every status named, zeros included)."""
    return {status: sum(r.status == status for r in records) for status in (DONE, SKIPPED, FAILED, MISSING)}


def write_json(path: Path, document: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
