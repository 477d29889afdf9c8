"""B inputs streamed in lockstep through one batched session, each from its own thread.

Every slot of the batch is driven by a thread that runs an ordinary :func:`streamvggt.reconstruct` on one input
after another, feeding a :class:`SlotStream` instead of a session of its own. A step of the batched session runs
once every slot with a live stream has handed in its next frame; slots between inputs sit the step out (they get
a blank frame and are reset). A slot starting a new input is reset first (:meth:`StreamSession.reset_slot`), so
each input sees exactly the stream it would see alone, while the batch stays full.

All frames of a session have one size. An input whose frames have another size waits until no slot streams
frames of the current size, then the session is reset to its size.
"""

from __future__ import annotations

import logging
import threading

import torch
from torch import Tensor

from streamvggt.model.predictions import Predictions
from streamvggt.model.streamvggt import StreamVGGT

log = logging.getLogger(__name__)


class BatchStoppedError(Exception):
    """The batched session stopped (another slot's step failed, or the run was interrupted)."""


class BatchedStreams:
    """A session of ``batch_size`` slots stepped in lockstep by the threads that feed them."""

    def __init__(self, model: StreamVGGT, batch_size: int, cache: str = "full") -> None:
        self.session = model.stream(batch_size=batch_size, cache=cache)
        self.batch_size = batch_size
        self.steps = 0  # batched steps run
        self.frames = 0  # frames of live streams processed (blank frames of idle slots not counted)
        self._changed = threading.Condition()
        self._frames: list[Tensor | None] = [None] * batch_size  # handed in, waiting for the next step
        self._results: list[Predictions | None] = [None] * batch_size
        self._streaming = [False] * batch_size  # a live stream: every step waits for its frame
        self._fresh = [False] * batch_size  # its next frame starts a new stream
        self._size: tuple[int, int] | None = None  # frame size of the streams in the session
        self._resize = False  # the next step starts the session over at a new frame size
        self._stopped: str | None = None

    def slot(self, index: int) -> SlotStream:
        """A stream for the next input of slot ``index`` (its first frame resets the slot)."""
        return SlotStream(self, index)

    def stop(self, reason: str) -> None:
        """Make every waiting and later step raise BatchStoppedError(reason)."""
        with self._changed:
            self._stopped = self._stopped or reason
            self._changed.notify_all()

    def release(self, index: int) -> None:
        """Slot ``index`` streams no more (its input ended or failed): steps stop waiting for it."""
        with self._changed:
            self._streaming[index] = False
            self._frames[index] = None
            self._changed.notify_all()

    def step(self, index: int, frame: Tensor, new_stream: bool) -> Predictions:
        """Hand in slot ``index``'s next frame [1, 3, H, W]; returns its predictions (a batch of one) once the
        batched step that holds it has run."""
        with self._changed:
            size = (frame.shape[-2], frame.shape[-1])
            while self._size not in (None, size) and any(self._streaming):
                self._wait()
            if self._size != size:
                self._resize = self._size is not None
                self._size = size
            self._streaming[index] = True
            self._fresh[index] = self._fresh[index] or new_stream
            self._frames[index] = frame
            self._results[index] = None
            while self._results[index] is None:
                if self._ready():
                    self._run_step()
                else:
                    self._wait()
            result, self._results[index] = self._results[index], None
            return result

    def _wait(self) -> None:
        if self._stopped:
            raise BatchStoppedError(self._stopped)
        self._changed.wait()
        if self._stopped:
            raise BatchStoppedError(self._stopped)

    def _ready(self) -> bool:
        """Every live stream has handed in its frame."""
        return all(frame is not None for frame, live in zip(self._frames, self._streaming, strict=True) if live)

    def _run_step(self) -> None:
        """One batched step over the frames handed in (under the lock: every live slot is waiting for it)."""
        if self._stopped:
            raise BatchStoppedError(self._stopped)
        if self._resize:
            self.session.reset()
            self._resize = False
        handed = [frame for frame in self._frames if frame is not None]
        blank = torch.zeros_like(handed[0])
        for index, frame in enumerate(self._frames):
            if frame is None or self._fresh[index]:
                self.session.reset_slot(index)  # idle slots too: their caches stay one frame long
                self._fresh[index] = False
        batch = torch.cat([blank if frame is None else frame for frame in self._frames])
        try:
            out = self.session.step(batch)
        except BaseException as error:
            self._stopped = f"a batched step failed: {type(error).__name__}: {error}"
            self._changed.notify_all()
            raise
        for index, frame in enumerate(self._frames):
            if frame is not None:
                self._results[index] = out.element(index)
                self._frames[index] = None
        self.steps += 1
        self.frames += len(handed)
        self._changed.notify_all()


class SlotStream:
    """One slot of a :class:`BatchedStreams` as a stream of its own (what a Reconstructor feeds)."""

    def __init__(self, batch: BatchedStreams, index: int) -> None:
        self.batch = batch
        self.index = index
        self.num_frames = 0

    def step(self, frame: Tensor) -> Predictions:
        """Process this stream's next frame [1, 3, H, W] in [0, 1] (blocks until the batched step has run)."""
        if frame.shape[0] != 1:
            raise ValueError(f"a slot streams one frame at a time, got {frame.shape[0]}")
        out = self.batch.step(self.index, frame, new_stream=self.num_frames == 0)
        self.num_frames += 1
        return out

    def end(self) -> None:
        """This stream has no more frames: the batch stops waiting for it."""
        self.batch.release(self.index)
