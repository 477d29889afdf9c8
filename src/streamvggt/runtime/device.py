"""Choosing the device and the trunk precision: chosen from what is available, never assumed."""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def select_device(name: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: CUDA if available, else Apple MPS, else CPU. Otherwise the named device, checked."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device '{name}' requested but MPS is not available")
    return device


def resolve_precision(device: torch.device, precision: str = "auto", dim: int | None = None, tokens: int = 1) -> str:
    """The concrete mode (``fp32``, ``bf16``, ``fp16`` or ``int8``) that ``precision`` means on ``device``.

    ``auto``: bf16 on CUDA GPUs that support it, fp16 on older ones (the reference's choice); on CPU the fastest
    mode whose accuracy holds on this CPU for a trunk of width ``dim`` on ``tokens``-token frames
    (:func:`streamvggt.runtime.precision.choose_cpu_precision`; fp32 when ``dim`` is not given); fp32 elsewhere.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision == "int8" and device.type != "cpu":
        raise ValueError(f"precision 'int8' runs on the CPU only, not on {device.type}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and dim is not None:
        from streamvggt.runtime.precision import choose_cpu_precision  # measures the CPU: only when auto needs it

        return choose_cpu_precision(dim, tokens)
    return "fp32"


def trunk_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of an explicit or resolved ``precision``, or None for none (fp32, int8, CPU ``auto``
    before the model's shape is known)."""
    mode = resolve_precision(device, precision)
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)
