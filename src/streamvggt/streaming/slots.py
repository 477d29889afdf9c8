"""B inputs streamed in lockstep through one batched session, each fed from its own thread.

Worker threads run an ordinary :func:`streamvggt.reconstruct` on one input after another, each feeding a
:class:`SlotStream` instead of a session of its own. A stream takes a free slot of the batch with its first frame
and frees it after its last, so while one worker writes an input's outputs another, whose next input is open,
takes the slot. A step of the batched session runs once every slot with a live stream has handed in its next
frame; free slots sit the step out (a blank frame, and a reset). A stream's first frame resets its slot
(:meth:`StreamSession.reset_slot`), so each input sees exactly the stream it would see alone.

All frames of a session have one size. An input whose frames have another size waits until no slot streams
frames of the current size, then the session is reset to its size.
"""

from __future__ import annotations

import logging
import threading
import time

import torch
from torch import Tensor

from streamvggt.model.predictions import Predictions
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.streaming.cache import load_slot_cache_state, slot_cache_state

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
        self.step_seconds = 0.0  # wall time inside the batched steps
        self.peak_cache_bytes = 0  # the session's caches at their largest
        self._changed = threading.Condition()
        self._frames: list[Tensor | None] = [None] * batch_size  # handed in, waiting for the next step
        self._results: list[Predictions | None] = [None] * batch_size
        self._streaming = [False] * batch_size  # a live stream: every step waits for its frame
        self._fresh = [False] * batch_size  # its next frame starts a new stream
        self._size: tuple[int, int] | None = None  # frame size of the streams in the session
        self._resize = False  # the next step starts the session over at a new frame size
        self._stopped: str | None = None
        self.error: BaseException | None = None  # what a failed batched step raised: the run stops with it

    def stream(self) -> SlotStream:
        """A stream for one input: it takes a free slot with its first frame."""
        return SlotStream(self)

    def stop(self, reason: str) -> None:
        """Make every waiting and later step raise BatchStoppedError(reason)."""
        with self._changed:
            self._stopped = self._stopped or reason
            self._changed.notify_all()

    def release(self, stream: SlotStream) -> None:
        """``stream`` has no more frames (its input ended or failed): its slot is free, steps stop waiting for it."""
        with self._changed:
            if stream.index is not None:
                self._streaming[stream.index] = False
                self._frames[stream.index] = None
                stream.index = None
                self._changed.notify_all()

    def step(self, stream: SlotStream, frame: Tensor) -> Predictions:
        """Hand in ``stream``'s next frame [1, 3, H, W]; returns its predictions (a batch of one) once the
        batched step that holds it has run. A stream's first frame waits for a free slot."""
        with self._changed:
            if stream.index is None:
                stream.index = self._claim((frame.shape[-2], frame.shape[-1]))
            index = stream.index
            self._frames[index] = frame
            self._results[index] = None
            while self._results[index] is None:
                if self._ready():
                    self._run_step()
                else:
                    self._wait()
            result, self._results[index] = self._results[index], None
            return result

    def slot_state(self, stream: SlotStream) -> tuple[dict, dict[str, Tensor]]:
        """``stream``'s state as a batch of one's :meth:`StreamSession.state_dict`: its slot's rows of every cache
        layer (its own valid length, int8 scales, ring position) and its frame count, taken between batched steps.
        :meth:`restore_slot` continues it in any free slot of a batch of any size."""
        with self._changed:  # no batched step runs meanwhile (and none can write the slot: it waits for its frame)
            index = stream.index
            if index is None and stream.num_frames:
                raise ValueError("this stream has ended: its slot holds another stream's state")
            session = self.session
            opened = index is not None and not self._fresh[index]  # a claimed slot is reset at its first frame
            frames = session.slot_frames[index] if opened else 0
            meta: dict = {
                "batch_size": 1,
                "policy": str(session.policy),
                "num_frames": frames,
                "slot_frames": [frames],
                "frame_size": list(session.frame_size) if opened else None,
                "query_points": False,
            }
            tensors: dict[str, Tensor] = {}
            if opened:
                meta["cache"], cache_tensors = slot_cache_state(session.cache, index)
                tensors.update({f"cache.{name}": tensor for name, tensor in cache_tensors.items()})
            return meta, tensors

    def restore_slot(self, stream: SlotStream, meta: dict, tensors: dict[str, Tensor]) -> None:
        """Give ``stream`` a free slot that goes on from a :meth:`slot_state` (or any batch of one's state): its
        rows are written into every layer at that slot, the other slots' streams go on untouched, and its next
        frame continues the saved stream instead of starting a new one."""
        session = self.session
        if meta["batch_size"] != 1 or meta["policy"] != str(session.policy) or meta["query_points"]:
            raise ValueError(
                f"a slot goes on from one stream of {session.policy} without query points, "
                f"not {meta['batch_size']} x {meta['policy']}{' with query points' if meta['query_points'] else ''}"
            )
        if meta["frame_size"] is None:
            return  # saved before its first frame: that frame takes a slot and starts the stream
        height, width = (int(n) for n in meta["frame_size"])
        device = next(session.model.parameters()).device
        with self._changed:
            index = self._claim((height, width))
            try:
                if self._resize or session.frame_size is None:
                    # No other stream has stepped at this size yet: open the session for it right here.
                    session.reset()
                    session._open_size(height, width, device)
                    self._resize = False
                cache_tensors = {name[6:]: t for name, t in tensors.items() if name.startswith("cache.")}
                load_slot_cache_state(session.cache, index, self.batch_size, meta["cache"], cache_tensors, device)
            except BaseException:
                self._streaming[index] = False  # the slot stays free; its next stream resets it
                self._changed.notify_all()
                raise
            self._fresh[index] = False  # not reset at its next frame: it goes on
            session.slot_frames[index] = int(meta["slot_frames"][0])
            session.num_frames = max(session.num_frames, 1)  # open: its next step must not open it anew
            stream.index = index
            stream.num_frames = int(meta["slot_frames"][0])  # this stream's frames, not the session's steps

    def _claim(self, size: tuple[int, int]) -> int:
        """A free slot for a new stream of frames of ``size`` (H, W), marked live and to be reset; waits for one,
        and for a session whose streams all have that size or that has no stream left (it then starts over)."""
        while not (self._size in (None, size) or not any(self._streaming)) or all(self._streaming):
            self._wait()
        if self._size != size:
            self._resize = self._size is not None
            self._size = size
        index = self._streaming.index(False)
        self._streaming[index] = True
        self._fresh[index] = True
        return index

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
        started = time.perf_counter()
        try:
            out = self.session.step(batch)
        except BaseException as error:
            self.error = error
            self._stopped = f"a batched step failed: {type(error).__name__}: {error}"
            self._changed.notify_all()
            raise
        for index, frame in enumerate(self._frames):
            if frame is not None:
                self._results[index] = out.element(index)
                self._frames[index] = None
        self.steps += 1
        self.frames += len(handed)
        self.step_seconds += time.perf_counter() - started
        self.peak_cache_bytes = max(self.peak_cache_bytes, self.session.cache_bytes)
        self._changed.notify_all()


class SlotStream:
    """One input's stream through a slot of a :class:`BatchedStreams` (what a Reconstructor feeds)."""

    def __init__(self, batch: BatchedStreams) -> None:
        self.batch = batch
        self.index: int | None = None  # the slot, from the first frame to end()
        self.num_frames = 0

    def step(self, frame: Tensor) -> Predictions:
        """Process this stream's next frame [1, 3, H, W] in [0, 1] (blocks until the batched step has run)."""
        if frame.shape[0] != 1:
            raise ValueError(f"a slot streams one frame at a time, got {frame.shape[0]}")
        if self.num_frames and self.index is None:
            raise ValueError("this stream has ended")
        out = self.batch.step(self, frame)
        self.num_frames += 1
        return out

    resumable = True  # its state can be saved and restored, in a batch of any size (what the reconstructor asks)

    def state_dict(self) -> tuple[dict, dict[str, Tensor]]:
        """This stream's state: see :meth:`BatchedStreams.slot_state`."""
        return self.batch.slot_state(self)

    def load_state_dict(self, meta: dict, tensors: dict[str, Tensor]) -> None:
        """Go on from a saved state, before the first frame: see :meth:`BatchedStreams.restore_slot`."""
        self.batch.restore_slot(self, meta, tensors)

    def end(self) -> None:
        """This stream has no more frames: its slot is free for another input."""
        self.batch.release(self)
