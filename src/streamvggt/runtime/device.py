"""Choosing the device: from what is available, never assumed. The only place a device is chosen."""

from __future__ import annotations

import os

import torch


def select_device(name: str | torch.device | None = None) -> torch.device:
    """The device to run on.

    ``None``/``"auto"``: CUDA if available (under a launcher such as torchrun, the GPU that ``LOCAL_RANK`` names, so
    that each process takes its own), else Apple MPS, else CPU. Otherwise the named device, checked: ValueError
    with one line for a name torch does not know or a device that is not there.
    """
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        if torch.cuda.is_available():
            local_rank = os.environ.get("LOCAL_RANK")
            if local_rank is not None:
                return torch.device("cuda", int(local_rank) % torch.cuda.device_count())
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:  # torch.device("gpu") raises RuntimeError listing the known types
        raise ValueError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device '{name}' requested but MPS is not available")
    return device
