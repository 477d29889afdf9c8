"""Warming a model up: making the kernels for a frame size before a stream's first step pays for them."""

from __future__ import annotations

import weakref

import torch
from torch import nn

from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.streaming.session import StreamSession

# (device, resolved precision, height, width) each model was warmed up for; forgotten with the model.
_warmed: weakref.WeakKeyDictionary[nn.Module, set[tuple[str, str, int, int]]] = weakref.WeakKeyDictionary()


@torch.no_grad()
def warm_up(model: StreamVGGT, height: int, width: int, device: torch.device | None = None) -> bool:
    """Stream one blank ``height`` x ``width`` frame through a throwaway session of ``model`` in its precision
    (``model.execution``), so that kernels for that frame size (oneDNN bf16 primitives take seconds, compiled
    regions compile) are made now and not in a stream's first step. Once per model, device, precision and size:
    returns False when it had run already."""
    device = device if device is not None else next(model.parameters()).device
    key = (str(device), model.execution.resolved, height, width)
    done = _warmed.setdefault(model, set())
    if key in done:
        return False
    StreamSession(model).step(torch.zeros(1, 3, height, width, device=device))
    done.add(key)
    return True
