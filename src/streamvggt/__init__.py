"""streamvggt: streaming 4D reconstruction with StreamVGGT (causal VGGT with a key/value cache).

The public names load on first use (PEP 562), so that ``streamvggt --help`` and modules that need no model
(reading inputs, the command line's parser) start without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamvggt.config import ModelConfig
    from streamvggt.model.predictions import Predictions
    from streamvggt.model.streamvggt import StreamVGGT
    from streamvggt.pipeline.options import ReconstructOptions
    from streamvggt.pipeline.reconstructor import ReconstructionSummary, Reconstructor, reconstruct
    from streamvggt.results import FrameResult
    from streamvggt.weights import CheckpointError, load_model

__version__ = "0.1.0"

# Each public name and the module that defines it; the imports above say the same to type checkers.
_PUBLIC = {
    "CheckpointError": "streamvggt.weights",
    "FrameResult": "streamvggt.results",
    "ModelConfig": "streamvggt.config",
    "Predictions": "streamvggt.model.predictions",
    "ReconstructOptions": "streamvggt.pipeline.options",
    "ReconstructionSummary": "streamvggt.pipeline.reconstructor",
    "Reconstructor": "streamvggt.pipeline.reconstructor",
    "StreamVGGT": "streamvggt.model.streamvggt",
    "load_model": "streamvggt.weights",
    "reconstruct": "streamvggt.pipeline.reconstructor",
}
__all__ = [
    "CheckpointError",
    "FrameResult",
    "ModelConfig",
    "Predictions",
    "ReconstructOptions",
    "ReconstructionSummary",
    "Reconstructor",
    "StreamVGGT",
    "load_model",
    "reconstruct",
]


# Names whose objects are models: the modules providing the model's conveniences (model.stream,
# StreamVGGT.from_pretrained, see streamvggt.model.conveniences) load with them.
_WITH_CONVENIENCES = ("StreamVGGT", "load_model", "Reconstructor", "reconstruct")
_CONVENIENCE_PROVIDERS = ("streamvggt.streaming.session", "streamvggt.weights")


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'streamvggt' has no attribute {name!r}")
    if name in _WITH_CONVENIENCES:
        for module in _CONVENIENCE_PROVIDERS:
            importlib.import_module(module)
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
