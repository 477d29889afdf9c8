"""Training StreamVGGT: distillation from VGGT and ground-truth fine-tuning, on Accelerate.

``streamvggt train --config FILE [section.key=value ...] [--resume]`` (also under ``torchrun`` or
``accelerate launch``: ``-m streamvggt train``); :func:`train` runs the same from Python.

The names below load on first use (PEP 562): modules that only borrow training data (the synthetic scenes of
``streamvggt demo``) import this package without the ``train`` extra (Accelerate, TensorBoard, PyYAML).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamvggt.train.config import TrainConfig, load_config
    from streamvggt.train.loop import train

# Each public name and the module that defines it; the imports above say the same to type checkers.
_PUBLIC = {
    "TrainConfig": "streamvggt.train.config",
    "load_config": "streamvggt.train.config",
    "train": "streamvggt.train.loop",
}
__all__ = ["TrainConfig", "load_config", "train"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'streamvggt.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
