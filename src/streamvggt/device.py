"""Choosing the device and the trunk precision: chosen from what is available, never assumed."""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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


def trunk_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for the transformer trunk, or None for plain fp32.

    ``auto`` follows the reference: bf16 on CUDA GPUs that support it, fp16 on older ones, fp32 elsewhere (the
    heads always run in fp32).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None
