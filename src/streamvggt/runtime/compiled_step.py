"""A streaming step compiled whole: ``torch.compile(fullgraph=True)`` of the model's work for one frame.

Bounded caches (``window:K``, ``budget:N``, each with or without ``+int8``) become static once full: a step then
changes only tensor contents (the window's ring position and the budget's evicted slots live on the device, int8
keys are rescaled without asking the device whether to), so the graph compiled at the frame the cache fills serves
every later frame with 0 recompiles. Frames before that run eagerly: compiling one graph per filling frame would
cost more than it saves.

The full cache grows every frame (and its storage doubles when full), so its step is compiled from the second
frame on with the lengths symbolic: dynamo recompiles when a length first changes and may again when the capacity
doubles, a handful of times over a stream (logarithmically many at most).

On CUDA the static step runs as CUDA graphs (``mode="reduce-overhead"``): the caches' tensors are marked as
static addresses, so their in-place updates stay inside the graph, and outputs are cloned out of the graph's pool
before the next replay overwrites them.

The compiled step runs the caches' own update code (:class:`streamvggt.streaming.cache.StreamCache`), so a graph run
as captured gives eager's caches bit for bit, and so does that code compiled by inductor when fed eager's keys
(``tests/test_compile.py -m slow``: issue 22's stream replayed layer by layer). The budget policy's eviction is
written for that: it ranks in float64, breaks ties by slot and fills evicted slots in slot order, because in
float32 scores closer than their rounding error (and exact ties of int8 keys) were ranked differently by inductor's
kernels than by eager's.

The whole compiled step still does not compute eager's cache under ``+int8``: inductor's fused kernels give keys
that differ from eager's by rounding (on issue 22's stream, 17-30% of the trunk's key entries, by up to 2e-6 of a
channel's range; 1e-5 in the camera head), and now and then such a key lies on the other side of an int8 rounding
boundary, so one code differs by one step. That alone moves outputs by about 1e-4 (window:4+int8). Under a budget
it also moves the slot's redundancy score by about 1e-3, enough to evict another token, after which the streams
keep different tokens and pose drifts apart (budget:125+int8: a code flip at frame 6, a different eviction at frame
14, pose gap 1e-2 by frame 17). That is the policy's own sensitivity: two eager sessions whose frames differ by
1e-7 noise part the same way (pose gap 8e-3 at frame 10, 0.17 at worst over 40 frames).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from streamvggt.model.predictions import Predictions

log = logging.getLogger(__name__)

Forward = Callable[[Tensor, int, "torch.dtype | None"], tuple[dict[int, Tensor], Predictions]]


class StepCache(Protocol):
    """What a compiled step needs to know of a stream's caches (:class:`streamvggt.streaming.cache.StreamCache`)."""

    @property
    def bounded(self) -> bool:
        """Shapes stop changing once the caches are full (window and budget policies)."""
        ...

    @property
    def static(self) -> bool:
        """An update now changes only tensor contents, in every layer."""
        ...

    @property
    def split(self) -> bool:
        """Batch elements hold streams of different lengths."""
        ...

    def tensors(self) -> list[Tensor]:
        """Every tensor kept between steps."""
        ...


class CompiledStep:
    """``forward(frame, first_frame_index, dtype)`` compiled once the stream's ``cache`` allows it."""

    def __init__(
        self, forward: Forward, cache: StepCache, device: torch.device, options: Mapping[str, Any] | None = None
    ) -> None:
        """``options``: extra ``torch.compile`` keyword arguments (``backend``, ``mode``, ...)."""
        self.cache = cache
        bounded = cache.bounded
        settings = {"fullgraph": True, **({"mode": "reduce-overhead"} if device.type == "cuda" and bounded else {})}
        settings.update(options or {})
        self.cuda_graphs = (
            settings.get("mode") == "reduce-overhead" and settings.get("backend", "inductor") == "inductor"
        )
        self._compiled = torch.compile(forward, **settings)
        self._marked = False

    def ready(self, slot_frames: Sequence[int]) -> bool:
        """Whether this step can run compiled: every stream past its first frame, caches not split per slot, and,
        for bounded caches, full."""
        if min(slot_frames) == 0 or len(set(slot_frames)) > 1 or self.cache.split:
            return False
        return self.cache.static or not self.cache.bounded

    def __call__(self, frame: Tensor, dtype: torch.dtype | None) -> tuple[dict[int, Tensor], Predictions]:
        if self.cuda_graphs and not self._marked:
            for tensor in self.cache.tensors():
                torch._dynamo.mark_static_address(tensor)
            self._marked = True
        # Only "not a stream's first frame" matters to the trunk: a constant keeps the graph's guards fixed.
        tokens, out = self._compiled(frame, 1, dtype)
        if self.cuda_graphs:
            tokens = {layer: t.clone() for layer, t in tokens.items()}
            out = Predictions(**{name: t.clone() for name, t in out.items()})
        return tokens, out
