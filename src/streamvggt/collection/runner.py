"""Reconstruct a collection: this process's share of a manifest, B inputs at a time through one batched session.

Each input's folder is what :func:`streamvggt.reconstruct` writes for it alone (it is that function, fed by a slot
of the batch). Complete inputs are skipped, so a restarted run resumes; an input that cannot be read is recorded
as failed with its reason and the others go on. Under a launcher (torchrun, accelerate launch) every process
takes its share, and when all are done rank 0 merges the summary; shards of a SLURM array are merged with
:func:`merge_collection` (``reconstruct-many --merge``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from streamvggt.collection.fingerprint import run_fingerprint
from streamvggt.collection.manifest import Entry, read_manifest
from streamvggt.collection.outputs import OutputRoot
from streamvggt.collection.sharding import Shard, launcher_process
from streamvggt.collection.summary import DONE, FAILED, SKIPPED, InputRecord, ShardLog, merge
from streamvggt.io.errors import OutputError
from streamvggt.io.inputs.sources import is_image_input
from streamvggt.io.run_state import POINTER, STATE_DIR, StateError
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.pipeline.options import ReconstructOptions
from streamvggt.pipeline.reconstructor import reconstruct
from streamvggt.pipeline.run import FrameCallback
from streamvggt.results import FrameResult
from streamvggt.runtime.regional_compile import compile_regions
from streamvggt.streaming.slots import BatchedStreams, BatchStoppedError, SlotStream
from streamvggt.weights import load_model

log = logging.getLogger(__name__)

# Processes that finish their share early wait for the others before rank 0 merges; a share can take days.
MERGE_WAIT = timedelta(days=7)
WORKERS_PER_SLOT = 2


@dataclass(frozen=True)
class CollectionResult:
    """What one process did: its share's records, and the merged summary when it wrote one."""

    shard: Shard
    records: list[InputRecord]
    seconds: float
    steps: int = 0  # batched steps run
    stream_frames: int = 0  # frames streamed
    step_seconds: float = 0.0  # time in the batched steps (the model), of ``seconds``
    peak_cache_bytes: int = 0  # the batched session's caches at their largest
    summary: dict[str, Any] | None = None  # the merged summary.json, when this process merged
    failed: list[InputRecord] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "failed", [r for r in self.records if r.status == FAILED])

    @property
    def succeeded(self) -> bool:
        """No input of this share failed, and the merged summary (if any) has no failed or missing input."""
        if self.summary is not None:
            counts = self.summary["counts"]
            return counts["failed"] == 0 and counts["missing"] == 0
        return not self.failed


def reconstruct_collection(
    manifest: str | os.PathLike,
    output_root: str | os.PathLike,
    model: StreamVGGT | str | os.PathLike | None = None,
    *,
    batch_size: int = 1,
    shard: Shard | None = None,
    options: ReconstructOptions | None = None,
    force: bool = False,
    **keywords: Any,
) -> CollectionResult:
    """Reconstruct this process's share of ``manifest`` into ``output_root``/NAME, one folder per input.

    model: a loaded StreamVGGT or a checkpoint source (see :func:`streamvggt.reconstruct`), loaded on the options'
    device (None or "auto": under a launcher, the GPU ``LOCAL_RANK`` names). batch_size: inputs streamed together.
    shard: this job's share (``--shard i/n`` of a SLURM array); a launcher's processes split it further.
    options: :func:`streamvggt.reconstruct`'s options (or the same as keywords: stride, fps, max_frames, cache,
    preprocess, size, ...), the same for every input, except that image inputs ignore fps (their frames have no
    times); ``compile`` may only be "regions" (the slots' resets keep a batch's steps from compiling whole);
    ``progress`` shows one bar counting the frames of all inputs. Raises InputError/OutputError/ValueError with
    one line for a bad manifest, output root or option; an unusable input is recorded as failed instead. A
    complete input made with other options is done again (see :mod:`streamvggt.collection.outputs`); ``force``
    does every input again.
    """
    started = time.perf_counter()
    if options is None:
        options = ReconstructOptions.from_keywords("reconstruct_collection", **keywords)
    elif keywords:
        raise TypeError(f"reconstruct_collection() takes options or keyword options, not both: {', '.join(keywords)}")
    if batch_size < 1:
        raise ValueError(f"--batch must be at least 1, got {batch_size}")
    if options.model.compile not in (False, "regions"):
        raise ValueError(f"reconstruct-many compiles regions only, not compile={options.model.compile!r}")
    if options.stream.query_points is not None:
        raise ValueError("reconstruct-many does not track query points")
    if options.map.loop_closure and options.map.reanchor_every:
        # Each input streams through one slot of a batched session, which cannot restart alone.
        raise ValueError("reconstruct-many does not re-anchor (--reanchor-every): use reconstruct for that input")
    device = options.check(loads_model=not isinstance(model, StreamVGGT))
    entries = read_manifest(manifest)
    process = launcher_process()
    share = (shard or Shard()).within(process)
    root = OutputRoot(output_root, run_fingerprint(options, model))
    shard_log = ShardLog(root, share)
    mine = share.select(entries)
    todo = root.todo(mine, force=force)
    waiting = {entry.name for entry in todo}
    shard_log.add(*(InputRecord(name=e.name, input=e.input, status=SKIPPED) for e in mine if e.name not in waiting))
    log.info("shard %s: %d of %d inputs, %d to do", share, len(mine), len(entries), len(todo))
    batch = None
    if todo:
        if not isinstance(model, StreamVGGT):
            checkpoint = model if model is not None else options.model.checkpoint
            model = load_model(checkpoint, device=device, precision=options.model.precision)
        if options.model.compile == "regions":
            compile_regions(model)
        batch = BatchedStreams(model, min(batch_size, len(todo)), options.stream.cache)
        _run_slots(batch, deque(todo), root, shard_log, model, options)
    summary = None
    if (shard is None or shard.count == 1) and _all_processes_done(process):
        summary = merge(root, entries, str(manifest))
    seconds = time.perf_counter() - started
    if batch is None:
        return CollectionResult(share, list(shard_log.records), seconds, summary=summary)
    counters = (batch.steps, batch.frames, batch.step_seconds, batch.peak_cache_bytes)
    return CollectionResult(share, list(shard_log.records), seconds, *counters, summary=summary)


def merge_collection(manifest: str | os.PathLike, output_root: str | os.PathLike) -> dict[str, Any]:
    """Merge the shards' records and completion markers of a collection into ``output_root``/summary.json."""
    root = Path(output_root)
    if not root.is_dir():
        raise OutputError(f"output root not found: {root}")
    return merge(OutputRoot(root), read_manifest(manifest), str(manifest))


def _run_slots(
    batch: BatchedStreams,
    todo: deque[Entry],
    root: OutputRoot,
    shard_log: ShardLog,
    model: StreamVGGT,
    options: ReconstructOptions,
) -> None:
    """Worker threads take inputs from ``todo`` until none is left; the batched steps run among them. Two per
    slot: while one writes its input's outputs (its slot already free), another streams the next input. The
    progress bar counts frames (an input can take minutes), its postfix the inputs finished."""
    from tqdm.auto import tqdm

    lock = threading.Lock()
    errors: list[BaseException] = []
    inputs, finished = len(todo), 0
    bar = tqdm(unit="frame", disable=not options.progress, dynamic_ncols=True)
    bar.set_postfix_str(f"0/{inputs} inputs", refresh=False)

    def next_entry() -> Entry | None:
        with lock:
            return todo.popleft() if todo else None

    def count_frame(result: object) -> None:
        with lock:
            bar.update()

    def input_done() -> None:
        nonlocal finished
        with lock:
            finished += 1
            bar.set_postfix_str(f"{finished}/{inputs} inputs")

    per_input = options.replace(progress=False)

    def work() -> None:
        try:
            while (entry := next_entry()) is not None:
                shard_log.add(_reconstruct_entry(entry, batch.stream(), root, model, per_input, count_frame))
                input_done()
        except BaseException as error:  # handed to the main thread, which raises it
            errors.append(error)
            batch.stop(f"{type(error).__name__}: {error}")

    workers = min(WORKERS_PER_SLOT * batch.batch_size, len(todo))
    threads = [threading.Thread(target=work, name=f"collection-worker-{i}") for i in range(workers)]
    with bar:
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.2)  # short waits: Ctrl-C reaches the main thread between them
        except KeyboardInterrupt:
            batch.stop("interrupted")  # the workers end; their inputs stay incomplete
            for thread in threads:
                thread.join()
            raise
    if errors:
        raise next((e for e in errors if not isinstance(e, BatchStoppedError)), errors[0])


def _reconstruct_entry(
    entry: Entry,
    stream: SlotStream,
    root: OutputRoot,
    model: StreamVGGT,
    options: ReconstructOptions,
    on_frame: Callable[[FrameResult], object],
) -> InputRecord:
    """Reconstruct one input through ``stream`` into its staging folder, then publish it; a failure of the
    input itself becomes a failed record, a failure of the batch or of the output root propagates."""
    started = time.perf_counter()
    if options.stream.fps is not None and is_image_input(entry.input):
        options = options.replace(fps=None)  # image frames have no times: --fps samples the videos only
    # An input killed midway goes on from its saved state (in its staging folder: its slot's state, which any free
    # slot of the next run's batch continues) instead of its first frame; with --state-every 0 nothing is saved.
    kept = root.state / "staging" / entry.name
    resume = options.state_every != 0 and (kept / STATE_DIR / POINTER).is_file()
    staging = kept if resume else root.staging(entry.name)
    try:
        try:
            summary = reconstruct(
                entry.input,
                staging,
                model,
                options=options.replace(resume=resume),
                session=stream,
                on_stream_end=stream.end,
                consumers=[FrameCallback(on_frame)],
            )
        except StateError as error:
            if not resume:
                raise
            log.warning("%s: cannot resume (%s): starting from its first frame", entry.name, error)
            stream.end()
            stream = stream.batch.stream()
            staging = root.staging(entry.name)
            summary = reconstruct(
                entry.input,
                staging,
                model,
                options=options,
                session=stream,
                on_stream_end=stream.end,
                consumers=[FrameCallback(on_frame)],
            )
        if summary.resumed_from:
            log.info("%s: resumed after frame %d", entry.name, summary.resumed_from)
    except (BatchStoppedError, OutputError, torch.OutOfMemoryError):
        raise
    except Exception as error:  # the input's own problem: recorded, and the collection goes on
        if stream.batch.error is not None:  # ... unless it is the batched step's failure, which ends the run
            raise
        root.discard(staging)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not isinstance(error, ValueError):  # InputError is a ValueError: its message is already for users
            reason = f"{type(error).__name__}: {reason}"
        log.warning("%s failed: %s", entry.name, reason)
        return InputRecord(name=entry.name, input=entry.input, status=FAILED, error=reason)
    finally:
        stream.end()
    seconds = round(time.perf_counter() - started, 3)
    record = InputRecord(
        name=entry.name, input=entry.input, status=DONE, frames=summary.frames, seconds=seconds,
        precision=summary.precision.to_json(),
    )  # fmt: skip
    root.publish(entry.name, staging, {**record.to_json(), "finished": time.time()})
    log.info("%s: %d frames in %.1f s", entry.name, summary.frames, record.seconds)
    return record


def _all_processes_done(process: Shard) -> bool:
    """Wait for every process of the launcher (gloo barrier); True on the process that merges (rank 0)."""
    if process.count == 1:
        return True
    import torch.distributed as dist

    started_here = not dist.is_initialized()
    if started_here:
        dist.init_process_group("gloo", timeout=MERGE_WAIT)
    dist.barrier()
    if started_here:
        dist.destroy_process_group()
    return process.index == 0
