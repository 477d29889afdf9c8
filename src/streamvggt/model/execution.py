"""How the model's forward runs: the precision record that whoever runs the model attaches to it.

The model does not choose a precision. A raw :class:`~streamvggt.model.streamvggt.StreamVGGT` carries the default
record (fp32, no autocast) and computes in its parameters' dtype like any ``nn.Module``. The runtime
(:func:`streamvggt.runtime.precision.apply_precision`, which ``load_model`` calls) resolves a requested mode for a
device, converts the weights for it and replaces ``model.execution`` with the record; the offline forward and the
streaming session both read it, so they run the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ExecutionPrecision:
    """The precision a model runs in.

    requested: the mode asked for (``auto``, ``fp32``, ``bf16``, ``fp16``, ``int8``); resolved: the concrete mode it
    means on the device the model runs on. trunk_dtype: the aggregator's autocast dtype (None: none).
    dense_heads_dtype: the autocast dtype of the depth and point heads' convolutions (None: fp32; their last
    convolution and output activations stay fp32 either way). The camera and track heads always run in fp32.
    """

    requested: str = "fp32"
    resolved: str = "fp32"
    trunk_dtype: torch.dtype | None = None
    dense_heads_dtype: torch.dtype | None = None

    def to_json(self) -> dict[str, str]:
        """``{"requested": ..., "resolved": ...}``: what outputs and results record."""
        return {"requested": self.requested, "resolved": self.resolved}

    def describe(self) -> str:
        """``bf16`` when asked for, ``bf16 (auto)`` when resolved from another request: for messages."""
        return self.resolved if self.requested == self.resolved else f"{self.resolved} ({self.requested})"


@contextlib.contextmanager
def autocast(device_type: str, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast(device_type, dtype)``, or nothing when ``dtype`` is None."""
    if dtype is None:
        yield
    else:
        with torch.autocast(device_type=device_type, dtype=dtype):
            yield
