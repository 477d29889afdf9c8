"""Saved run state in the frame loop: what lets ``reconstruct --resume`` continue a run killed at any instant.

:class:`SaveRunState` is the last :class:`~streamvggt.pipeline.run.FrameConsumer` of a run: every
``state_every`` frames, or by default about every :data:`DEFAULT_STATE_SECONDS` of work, it saves into the run's
:class:`~streamvggt.io.run_state.RunStateStore` (``OUT/.streamvggt-state``) the writer's state (per-frame files
made durable, cumulative outputs as spools), the stream's state (the session's cache, counters and tracker, the
first camera), the long-video map's state when it is on, the input position after the frame, and the run's
fingerprint (:func:`run_fingerprint`). :func:`load_resume_state` decides, before the model loads, whether a saved
state may be continued, and says in one line why not.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from streamvggt.io.inputs.sources import Frame, FrameSource, ReadPosition
from streamvggt.io.run_state import (
    RunStateStore,
    SavedState,
    StateError,
    checkpoint_fingerprint,
    fingerprint_difference,
    input_fingerprint,
    make_fingerprint,
)

if TYPE_CHECKING:
    import torch

    from streamvggt.io.outputs.writer import ReconstructionWriter
    from streamvggt.pipeline.options import ReconstructOptions
    from streamvggt.results import FrameResult

log = logging.getLogger(__name__)

DEFAULT_STATE_SECONDS = 60.0  # without --state-every: a save about every minute of work


class StatefulPart:
    """What a part of the run saves (a reconstructor, a map follower): ``state_dict() -> (meta, tensors)``."""

    def state_dict(self) -> tuple[dict[str, Any], Mapping[str, Any]]: ...


class SaveRunState:
    """A frame consumer that saves the run's state after a frame, every ``every`` frames (None: every
    ``seconds`` of work). ``parts``: name -> the writer-independent parts (the reconstructor, the map follower),
    each saved as its own tensor group. A Ctrl-C (``on_finish(interrupted=True)``) saves the frames so far too,
    unless ``save_on_interrupt`` is False (a loop-closed run: its finish rewrites the per-frame files)."""

    def __init__(
        self,
        store: RunStateStore,
        writer: ReconstructionWriter,
        parts: Mapping[str, StatefulPart],
        fingerprint: Mapping[str, Any],
        every: int | None = None,
        seconds: float = DEFAULT_STATE_SECONDS,
        save_on_interrupt: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every is not None and every < 1:
            raise ValueError(f"saving state every {every} frames: use at least 1 (or 0 for no saved state)")
        self.store = store
        self.writer = writer
        self.parts = dict(parts)
        self.fingerprint = dict(fingerprint)
        self.every = every
        self.seconds = seconds
        self.save_on_interrupt = save_on_interrupt
        self.clock = clock
        self.saves = 0
        self.save_seconds = 0.0
        self._unsaved = 0
        self._last = clock()
        self._position: ReadPosition | None = None
        self._frames = 0

    def on_frame(self, result: FrameResult, frame: Frame) -> None:
        self._unsaved += 1
        self._position = frame.position
        self._frames = frame.position.kept if frame.position is not None else self._frames + 1
        due = self._unsaved >= self.every if self.every is not None else self.clock() - self._last >= self.seconds
        if due:
            self.save()

    def on_finish(self, frames: int, interrupted: bool) -> None:
        if interrupted and self.save_on_interrupt and self._unsaved:
            self.save()

    def save(self) -> None:
        """Save the state after the last frame seen."""
        if self._position is None:
            raise ValueError("a frame without a read position cannot be resumed from (not read by read_frames)")
        started = time.perf_counter()
        writer_state = self.writer.export_state()
        meta: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "position": self._position.to_dict(),
            "frames": self._frames,
            "writer": writer_state.meta,
        }
        groups: dict[str, Mapping[str, Any]] = {"writer": writer_state.arrays}
        for name, part in self.parts.items():
            meta[name], groups[name] = part.state_dict()
        self.store.save(meta, groups)
        self.saves += 1
        self.save_seconds += time.perf_counter() - started
        self._unsaved = 0
        self._last = self.clock()
        log.info("saved the run state after %d frames in %.2f s", self._frames, time.perf_counter() - started)


def options_record(options: ReconstructOptions) -> dict[str, Any]:
    """Every option that changes a run's outputs, JSON-able (a fingerprint's ``options``). Query points given as a
    function are recorded by name only (their values depend on the frame size, which the input fixes)."""
    from streamvggt.streaming.cache import parse_policy

    stream = dataclasses.asdict(dataclasses.replace(options.stream, query_points=None))
    stream["cache"] = str(parse_policy(options.stream.cache))
    queries = options.stream.query_points
    if callable(queries):
        stream["query_points"] = f"function {getattr(queries, '__qualname__', repr(queries))}"
    elif queries is not None:
        stream["query_points"] = np.asarray(queries, dtype=np.float64).tolist()
    output = dataclasses.replace(options.output, exports=None)
    record = {f"stream.{k}": v for k, v in stream.items()}
    record.update({f"output.{k}": v for k, v in dataclasses.asdict(output).items()})
    if options.output.exports is not None:
        record.update({f"exports.{k}": v for k, v in dataclasses.asdict(options.output.exports).items()})
    record["compile"] = options.model.compile
    settings = options.map
    record["map.loop_closure"] = settings.loop_closure
    if settings.loop_closure:
        record["map.descriptor"] = settings.map_descriptor
        record.update({f"map.{k}": v for k, v in dataclasses.asdict(options.map_options()).items()})
    return record


def checkpoint_record(model: Any) -> dict[str, Any]:
    """The checkpoint's fingerprint: a source (a file, a folder, a repo id; None: the bundled model) or, for a
    model already loaded, its config and a sample of every parameter (cheap, and any other weights differ)."""
    from streamvggt.model.streamvggt import StreamVGGT
    from streamvggt.weights import parameter_digest

    if isinstance(model, StreamVGGT):
        return {"in_memory": parameter_digest(model)}
    if model is None:
        from streamvggt.weights import DEFAULT_MODEL_DIR

        model = DEFAULT_MODEL_DIR
    return checkpoint_fingerprint(model)


def run_fingerprint(
    source: FrameSource, spec: str | os.PathLike, model: Any, precision: str, options: ReconstructOptions
) -> dict[str, Any]:
    """The fingerprint a run's states carry: input, checkpoint, precision ("cpu fp32"), options."""
    files = getattr(source, "paths", None)
    record = input_fingerprint(spec, list(files) if files is not None else None)
    return make_fingerprint(record, checkpoint_record(model), precision, options_record(options))


def load_resume_state(store: RunStateStore, fingerprint: Mapping[str, Any], live: bool) -> SavedState | None:
    """The saved state to continue (verified), or None when no state was saved (the run starts over).

    Raises StateError with one line when it must not be continued: a camera or live stream, a damaged state, or a
    state saved for another input, checkpoint or option (the precision is compared once the model has loaded:
    :func:`check_precision`)."""
    if live:
        raise StateError("a camera or live stream cannot be resumed (its frames are gone): run without --resume")
    saved = store.load()
    if saved is None:
        return None
    current = {**fingerprint, "precision": saved.meta.get("fingerprint", {}).get("precision")}
    difference = fingerprint_difference(saved.meta.get("fingerprint", {}), current)
    if difference is not None:
        raise StateError(f"cannot resume {store.root.parent}: {difference}; run without --resume to start over")
    return saved


def check_precision(saved: SavedState, precision: str, output_dir: os.PathLike | str) -> None:
    """StateError (one line) when the model now runs in another precision than the saved state's."""
    before = saved.meta.get("fingerprint", {}).get("precision")
    if before != precision:
        raise StateError(
            f"cannot resume {output_dir}: the precision differs: {before} was saved, {precision} given; "
            "run without --resume to start over"
        )


def precision_of(model: torch.nn.Module) -> str:
    """A loaded model's device type and resolved precision, as fingerprints record them ("cpu fp32")."""
    device = next(model.parameters()).device
    return f"{device.type} {model.execution.resolved}"
