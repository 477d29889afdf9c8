"""The frame loop shared by ``reconstruct``, ``view`` and ``reconstruct-many``.

A source is opened and its first frame read and checked (:func:`open_input`), before the model loads; then
:func:`run_frames` takes each frame through the stepper (preprocess -> session step -> :class:`FrameResult`) and
hands the result to every :class:`FrameConsumer` in order: the writer (:class:`WriteFrames`), a live viewer or a
callback (:class:`FrameCallback`), and whatever else follows the stream (a long-video map, saved session state).
A consumer sees each frame once, as soon as it is ready, and ``on_finish`` once when the stream ends or Ctrl-C
stops it; adding one needs no other loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from streamvggt.io.inputs.preprocess import Preprocessor
from streamvggt.io.inputs.sources import (
    Frame,
    FrameSource,
    ReadPosition,
    expected_frames,
    open_source,
    read_frames,
)
from streamvggt.io.outputs.interchange import SourceFrame

if TYPE_CHECKING:
    from streamvggt.io.outputs.writer import ReconstructionWriter
    from streamvggt.pipeline.options import StreamOptions
    from streamvggt.results import FrameResult

log = logging.getLogger(__name__)


class FrameStepper(Protocol):
    """What turns a source frame into a result (a :class:`streamvggt.Reconstructor`)."""

    preprocessor: Preprocessor

    def step(self, frame: Frame) -> FrameResult: ...


class FrameConsumer(Protocol):
    """Something that follows a stream: ``on_frame`` for each result (with the source frame it came from, at full
    resolution), ``on_finish`` once after the last one (``interrupted``: Ctrl-C ended the stream early)."""

    def on_frame(self, result: FrameResult, frame: Frame) -> None: ...

    def on_finish(self, frames: int, interrupted: bool) -> None: ...


class FrameCallback:
    """A consumer that calls ``function(result)`` for each frame (a viewer's ``add_frame``, a progress counter)."""

    def __init__(self, function: Callable[[FrameResult], object]) -> None:
        self.function = function

    def on_frame(self, result: FrameResult, frame: Frame) -> None:
        self.function(result)

    def on_finish(self, frames: int, interrupted: bool) -> None:
        pass


class WriteFrames:
    """A consumer that adds each frame to a :class:`~streamvggt.io.outputs.writer.ReconstructionWriter` (with the
    frame at full resolution when an export needs it); writing the files stays the caller's ``writer.finish``."""

    def __init__(self, writer: ReconstructionWriter, preprocessor: Preprocessor) -> None:
        self.writer = writer
        self.preprocessor = preprocessor

    def on_frame(self, result: FrameResult, frame: Frame) -> None:
        source = None
        if self.writer.exports.needs_source:  # the trainer exports use the frames at full resolution
            source = SourceFrame(frame.image, self.preprocessor.resized_box())
        self.writer.add(result, source)

    def on_finish(self, frames: int, interrupted: bool) -> None:
        pass


@dataclass(frozen=True)
class OpenedInput:
    """A source opened and its first frame read and checked: what the loop streams."""

    source: FrameSource
    frames: Iterator[Frame]  # every frame in order, the first included
    first: Frame
    preprocessor: Preprocessor
    total: int | None  # frames expected (None: unknown, e.g. a camera)

    @property
    def first_size(self) -> tuple[int, int]:
        """(H, W) of the first frame once preprocessed: the size the model is warmed up at."""
        return self.preprocessor(self.first.image, self.first.name).image.shape[:2]


@contextlib.contextmanager
def resumed_frames(
    source: str | os.PathLike, stream: StreamOptions, position: ReadPosition
) -> Iterator[Iterator[Frame]]:
    """The frames of ``source`` after ``position`` (a saved frame's :class:`ReadPosition`), read with the stream's
    sampling: image files before it are skipped unread, a video seeks. Opened apart from :func:`open_input`'s
    source, whose first frame was already read for the checks."""
    with open_source(source) as frames_source:
        yield read_frames(frames_source, stream.stride, stream.fps, stream.max_frames, resume=position)


@contextlib.contextmanager
def open_input(source: str | os.PathLike, stream: StreamOptions) -> Iterator[OpenedInput]:
    """Open ``source`` with the stream's sampling and preprocessing; its problems (missing, unreadable, too small)
    raise InputError here, before a model loads or a folder is made."""
    preprocessor = Preprocessor(stream.preprocess, stream.size)
    with open_source(source) as frames_source:
        frames = read_frames(frames_source, stream.stride, stream.fps, stream.max_frames)
        first = next(frames)
        preprocessor.check(first.image.shape[1], first.image.shape[0], first.name)
        total = expected_frames(frames_source, stream.stride, stream.fps, stream.max_frames)
        yield OpenedInput(frames_source, _chain(first, frames), first, preprocessor, total)


def _chain(first: Frame, rest: Iterator[Frame]) -> Iterator[Frame]:
    yield first
    yield from rest


@dataclass(frozen=True)
class LoopResult:
    """What :func:`run_frames` did."""

    frames: int  # frames every consumer received
    interrupted: bool  # Ctrl-C stopped the stream after at least one frame
    seconds: float  # time spent reading and processing frames


def run_frames(
    stepper: FrameStepper,
    frames: Iterable[Frame],
    consumers: Sequence[FrameConsumer],
    *,
    total: int | None = None,
    progress: bool = False,
) -> LoopResult:
    """Step each frame and hand its result to every consumer in order; a progress bar (tqdm, stderr) with
    ``progress``. Ctrl-C after the first frame ends the stream (``interrupted``); before it, it propagates."""
    from tqdm.auto import tqdm

    started, count, interrupted = time.perf_counter(), 0, False
    with tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True) as bar:
        try:
            for frame in frames:
                result = stepper.step(frame)
                for consumer in consumers:
                    consumer.on_frame(result, frame)
                count += 1
                bar.update()
        except KeyboardInterrupt:
            if count == 0:
                raise
            log.warning("interrupted: keeping the first %d frames", count)
            interrupted = True
    seconds = time.perf_counter() - started
    for consumer in consumers:
        consumer.on_finish(count, interrupted)
    return LoopResult(count, interrupted, seconds)
