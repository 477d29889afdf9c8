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
as captured gives eager's caches bit for bit. Inductor's kernels round differently from eager's (fused reductions
reorder float sums: about 1e-7 relative in the keys), and int8 storage and budget eviction are discontinuous in
their inputs: with ``budget:N+int8`` such a difference can flip an int8 code and then an eviction, after which the
two streams hold different tokens. Eager alone does the same under a perturbation of the frames of that size, so
compiled and eager outputs of that policy agree only as far as the policy is stable.
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
