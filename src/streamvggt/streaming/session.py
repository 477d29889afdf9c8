"""Streaming sessions: one frame in, that frame's camera, depth, points (and tracks) out.

A session keeps its stream's past in a :class:`streamvggt.streaming.cache.StreamCache` (past frames' keys and
values per global-attention layer, past camera tokens per camera-head iteration and trunk block), so each step
costs one frame's work. With the full cache the outputs equal the offline block-causal forward frame by frame.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from streamvggt.io.run_state import RunStateStore, StateError
from streamvggt.model import conveniences
from streamvggt.model.predictions import Predictions
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.runtime.compiled_step import CompiledStep
from streamvggt.runtime.cpu_allocator import keep_freed_memory
from streamvggt.runtime.regional_compile import compile_regions
from streamvggt.streaming.cache import CachePolicy, StreamCache
from streamvggt.streaming.tracks import StreamingTracker

log = logging.getLogger(__name__)

# compile= as a string: "step" compiles each step whole (as True does), "regions" the model's blocks and heads.
COMPILE_MODES = ("step", "regions")


class StreamSession:
    """Frame-by-frame inference for ``batch_size`` independent streams of equal frame size.

    Create with :meth:`StreamVGGT.stream`. ``step(frame)`` takes [B, 3, H, W] in [0, 1] and returns the offline
    forward's :class:`Predictions` without the S axis: pose_enc [B, 9], depth [B, H, W, 1], depth_conf [B, H, W],
    world_points [B, H, W, 3], world_points_conf [B, H, W] (and track [B, N, 2], track_vis, track_conf [B, N]
    when query points were given).

    The B streams are independent: ``reset_slot(b)`` starts a new stream in element b while the others go on, so
    a batch stays full while inputs of different lengths come and go (all frames keep the session's size).

    ``compile``: False (eager); True or ``"step"``: each step as one graph (:mod:`streamvggt.runtime.compiled_step`), a
    mapping adds ``torch.compile`` arguments; ``"regions"``: the model's transformer blocks and dense heads
    compiled once for every session and cache policy (:mod:`streamvggt.runtime.regional_compile`).
    """

    resumable = True  # its state can be saved and restored (state_dict / load_state_dict)

    def __init__(
        self,
        model: StreamVGGT,
        batch_size: int = 1,
        cache: str | CachePolicy = "full",
        query_points: Tensor | None = None,
        compile: bool | str | Mapping[str, Any] = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(compile, str) and compile not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode '{compile}'; choose one of {', '.join(COMPILE_MODES)}")
        self.model = model
        self.batch_size = batch_size
        self.cache = StreamCache(cache)
        self.policy = self.cache.policy
        self.query_points = query_points
        if compile == "regions":
            compile_regions(model)  # the model's switch, kept for every later session
        self.compile = compile if compile != "regions" else False
        if query_points is not None and (query_points.ndim != 3 or query_points.shape[0] != batch_size):
            raise ValueError(f"query_points must be [{batch_size}, N, 2], got {tuple(query_points.shape)}")
        self.reset()

    def reset(self) -> None:
        """Forget every frame: the next step starts a new stream (its first frame is the anchor)."""
        self.num_frames = 0
        self.slot_frames = [0] * self.batch_size  # frames of each element's current stream
        self.last_tokens: dict[int, Tensor] | None = None
        self.frame_size: tuple[int, int] | None = None
        self.cache.reset()
        self._tracker: StreamingTracker | None = None
        self._compiled: CompiledStep | None = None

    def reset_slot(self, index: int) -> None:
        """Forget element ``index``'s stream only: its next frame is the anchor of a new stream, and the other
        elements' streams go on as if nothing happened. Not with query points (the tracker is per session)."""
        if not 0 <= index < self.batch_size:
            raise ValueError(f"slot {index} is not in this session's batch of {self.batch_size}")
        if self.query_points is not None:
            raise ValueError("a session with query points cannot reset one slot: reset() the whole session")
        self.cache.reset_slot(index)
        self.slot_frames[index] = 0

    @property
    def cache_bytes(self) -> int:
        """Bytes held by every cache of this session (trunk, camera head and tracker)."""
        tracker_bytes = self._tracker.nbytes if self._tracker is not None else 0
        return self.cache.nbytes + tracker_bytes

    @torch.no_grad()
    def step(self, frame: Tensor) -> Predictions:
        """Process the next frame [B, 3, H, W] (values in [0, 1]) and return its predictions."""
        self._check_frame(frame)
        if self.num_frames == 0:
            self._open(frame)
        model = self.model
        # Each element's position in its own stream: they differ once a slot was reset.
        positions = self.slot_frames if len(set(self.slot_frames)) > 1 else self.slot_frames[0]
        dtype = model.execution.trunk_dtype  # the precision its runner chose (runtime.precision)
        wants_compile = isinstance(self.compile, Mapping) or bool(self.compile)
        if wants_compile and self.num_frames > 0 and self._compiled is None:
            options = self.compile if isinstance(self.compile, Mapping) else None
            self._compiled = CompiledStep(self._forward, self.cache, frame.device, options)
        if self._compiled is not None and self._compiled.ready(self.slot_frames):
            tokens, out = self._compiled(frame, dtype)
        else:
            tokens, out = self._forward(frame, positions, dtype)
        out = out.frame(0)
        # The trunk's kept tokens {layer: [B, 1, P, 2C]} of this frame, until the next step: a long-video map's
        # place descriptor reads them (no copy is made; the next step drops them).
        self.last_tokens = tokens
        if self._tracker is not None:
            out = dataclasses.replace(out, **self._tracker.step(tokens, self.frame_size))
        self.num_frames += 1
        self.slot_frames = [count + 1 for count in self.slot_frames]
        return out

    def _forward(
        self, frame: Tensor, first_frame_index: int | list[int], dtype: torch.dtype | None
    ) -> tuple[dict[int, Tensor], Predictions]:
        """The model's work for one frame [B, 3, H, W]: kept trunk tokens and predictions (with the S axis)."""
        model = self.model
        precision = contextlib.nullcontext() if dtype is None else torch.autocast(frame.device.type, dtype=dtype)
        with precision:
            tokens = model.aggregator(
                frame[:, None], model.head_layers, first_frame_index=first_frame_index, kv_caches=self.cache.trunk
            )
        return tokens, model.decode(tokens, self.frame_size, frames_chunk_size=None, camera_caches=self.cache.camera)

    def _open(self, frame: Tensor) -> None:
        """Allocate the caches for a stream whose frames look like ``frame``."""
        self._open_size(frame.shape[-2], frame.shape[-1], frame.device)

    def _open_size(self, height: int, width: int, device: torch.device) -> None:
        """Make the caches (and the tracker) for a stream of ``height`` x ``width`` frames on ``device``."""
        model = self.model
        if device.type == "cpu":
            keep_freed_memory()  # frames then reuse their predecessors' pages instead of faulting new ones in
        self.frame_size = (height, width)
        frame_tokens = model.aggregator.tokens_per_frame(height, width)
        head = model.camera_head
        self.cache.open(
            frame_tokens=frame_tokens,
            trunk_layers=model.config.depth,
            camera_iterations=head.num_iterations,
            camera_blocks=head.trunk_depth,
        )
        if self.query_points is not None:
            self._tracker = StreamingTracker(model, self.query_points.to(device).float())
        log.debug("stream opened: %dx%d, %d tokens per frame, cache %s", height, width, frame_tokens, self.policy)

    # ------------------------------------------------------------------------------------------ saved state

    def state_dict(self) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """(meta, tensors): everything the next steps depend on (counters, frame size, the cache's valid part, the
        tracker), JSON-able meta and tensors for :class:`streamvggt.io.run_state.RunStateStore`. A compiled step
        is not saved: a restored session builds its own."""
        meta: dict[str, Any] = {
            "batch_size": self.batch_size,
            "policy": str(self.policy),
            "num_frames": self.num_frames,
            "slot_frames": list(self.slot_frames),
            "frame_size": None if self.frame_size is None else list(self.frame_size),
            "query_points": self.query_points is not None,
        }
        tensors: dict[str, Tensor] = {}
        if self.query_points is not None:
            tensors["query_points"] = self.query_points
        if self.frame_size is not None:
            meta["cache"], cache_tensors = self.cache.state_dict()
            tensors.update({f"cache.{k}": t for k, t in cache_tensors.items()})
        if self._tracker is not None:
            meta["tracker"], tracker_tensors = self._tracker.state_dict()
            tensors.update({f"tracker.{k}": t for k, t in tracker_tensors.items()})
        return meta, tensors

    def load_state_dict(self, meta: Mapping[str, Any], tensors: Mapping[str, Tensor]) -> None:
        """Continue from a :meth:`state_dict` of a session of the same model, batch size, policy and query points:
        the next step's outputs equal those the saved session's next step would have given. ValueError (one line)
        when the state does not fit this session."""
        if meta["batch_size"] != self.batch_size or meta["policy"] != str(self.policy):
            raise ValueError(
                f"the saved session streams {meta['batch_size']} x {meta['policy']}, "
                f"this one {self.batch_size} x {self.policy}"
            )
        if bool(meta["query_points"]) != (self.query_points is not None):
            raise ValueError("the saved session and this one differ in having query points")
        self.reset()
        device = next(self.model.parameters()).device
        if meta["frame_size"] is not None:
            height, width = meta["frame_size"]
            self._open_size(int(height), int(width), device)
            self.cache.load_state_dict(meta["cache"], _under(tensors, "cache."), device)
            if self._tracker is not None:
                self._tracker.load_state_dict(meta["tracker"], _under(tensors, "tracker."), device)
        self.num_frames = int(meta["num_frames"])
        self.slot_frames = [int(n) for n in meta["slot_frames"]]

    def save_state(self, path: str | os.PathLike) -> Path:
        """Save this session's state into the folder ``path`` (atomically, with checksums: see
        :class:`streamvggt.io.run_state.RunStateStore`); returns the state's folder."""
        meta, tensors = self.state_dict()
        return RunStateStore(path).save({"session": meta}, {"session": tensors})

    @classmethod
    def restore(
        cls, model: StreamVGGT, path: str | os.PathLike, compile: bool | str | Mapping[str, Any] = False
    ) -> StreamSession:
        """The session saved in ``path`` by :meth:`save_state`, going on with ``model`` (the same weights).
        Raises StateError (one line) when no state is there or it is damaged."""
        saved = RunStateStore(path).load()
        if saved is None or "session" not in saved.meta:
            raise StateError(f"no saved session in {path}")
        meta = saved.meta["session"]
        device = next(model.parameters()).device
        tensors = saved.tensors("session", device) if "session" in saved.groups else {}
        query_points = tensors.get("query_points")
        session = cls(model, meta["batch_size"], meta["policy"], query_points=query_points, compile=compile)
        session.load_state_dict(meta, tensors)
        return session

    def _check_frame(self, frame: Tensor) -> None:
        if frame.ndim != 4 or frame.shape[1] != 3:
            raise ValueError(f"a frame must be [B, 3, H, W], got {tuple(frame.shape)}")
        if frame.shape[0] != self.batch_size:
            raise ValueError(f"this session streams batches of {self.batch_size}, got {frame.shape[0]} frames")
        if self.frame_size is not None and tuple(frame.shape[-2:]) != self.frame_size:
            h, w = self.frame_size
            raise ValueError(
                f"frame size {frame.shape[-2]}x{frame.shape[-1]} differs from the stream's {h}x{w}; "
                "resize frames to the first frame's size or reset() the session"
            )
        patch = self.model.config.patch_size
        if frame.shape[-2] % patch or frame.shape[-1] % patch:
            raise ValueError(f"frame size {frame.shape[-2]}x{frame.shape[-1]} is not a multiple of {patch}")


def _under(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors whose names start with ``prefix``, without it."""
    return {name[len(prefix) :]: t for name, t in tensors.items() if name.startswith(prefix)}


conveniences.provide("stream", StreamSession)  # model.stream(...)
