"""``model.stream(...)``, ``StreamVGGT.from_pretrained(...)`` and ``model.save_pretrained(...)``: conveniences on
the model class whose work is done by packages above it.

Sessions (:mod:`streamvggt.streaming.session`) and checkpoint files (:mod:`streamvggt.weights`) build on the model,
so the model must not import them, not even inside a method. :class:`ModelConveniences`, which ``StreamVGGT``
inherits, declares the methods and calls what the implementing module registered with :func:`provide` when it was
imported. The public names of the package (``from streamvggt import StreamVGGT, load_model``) import those modules
first, so users always find the conveniences; code that imports only ``streamvggt.model`` gets a one-line error
naming the module to import. Inside the package, higher layers call the implementations directly
(``StreamSession(model, ...)``, ``load_model``, ``save_pretrained``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

# Each convenience and the package that provides it when imported (named for the error message only: the model
# never imports it).
PROVIDERS = {"stream": "streaming", "load": "weights", "save": "weights"}
_provided: dict[str, Callable[..., Any]] = {}


def provide(name: str, implementation: Callable[..., Any]) -> None:
    """Register ``implementation`` for the convenience ``name`` (one of :data:`PROVIDERS`); its module calls this
    when imported."""
    if name not in PROVIDERS:
        raise ValueError(f"unknown convenience '{name}'; choose one of {', '.join(PROVIDERS)}")
    _provided[name] = implementation


def _implementation(name: str) -> Callable[..., Any]:
    if name not in _provided:
        raise RuntimeError(
            f"this needs streamvggt's {PROVIDERS[name]} package: take StreamVGGT from the streamvggt package "
            f"(from streamvggt import StreamVGGT), which loads it"
        )
    return _provided[name]


class ModelConveniences:
    """Methods of ``StreamVGGT`` that delegate to the streaming and weights packages (see the module docstring)."""

    def stream(
        self,
        batch_size: int = 1,
        cache: str = "full",
        query_points: Tensor | None = None,
        compile: bool | str | Mapping[str, object] = False,
    ) -> Any:
        """A streaming session (:class:`streamvggt.streaming.session.StreamSession`); ``cache`` selects the policy:
        ``"full"`` (exact), ``"window:K"`` or ``"budget:N"``. ``query_points`` [B, N, 2] are pixels in frame 0.
        ``compile``: True or ``"step"`` runs each step as one ``torch.compile(fullgraph=True)`` graph; a mapping adds
        ``torch.compile`` arguments, e.g. ``{"backend": ...}``; ``"regions"`` compiles this model's transformer
        blocks and dense heads instead, for every session and cache policy."""
        session = _implementation("stream")
        return session(self, batch_size=batch_size, cache=cache, query_points=query_points, compile=compile)

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike,
        preset: Any = None,
        device: str | torch.device | None = None,
        precision: str = "auto",
    ) -> Any:
        """The model with the weights of ``source`` (file, folder or Hugging Face repo id); see ``load_model``."""
        return _implementation("load")(source, preset=preset, device=device, precision=precision)

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``folder``; :meth:`from_pretrained` reads it back."""
        return _implementation("save")(self, folder)
