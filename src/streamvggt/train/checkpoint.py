"""Training checkpoints: written atomically, restored exactly.

A checkpoint is a folder ``OUTPUT/checkpoints/step-XXXXXXXX/`` holding

- ``config.json`` + ``model.safetensors``: the model, unwrapped, in official naming (``load_model`` reads the
  folder as it is);
- ``trainer.pt``: optimizer and scheduler state, the step, the world size, and a fingerprint of every process's
  weights (so replicas that drifted apart are visible);
- ``rng-{rank}.pt``: each process's random-number generator states.

Everything is written into ``.step-XXXXXXXX.tmp/`` first, synced, then renamed: a run killed at any moment
leaves either a complete checkpoint or a temporary folder that is ignored and cleaned up. ``trainer.pt`` and
``rng-*.pt`` hold only tensors and plain values and are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn

from streamvggt.weights import read_state_dict, save_pretrained

logger = logging.getLogger(__name__)

_NAME = re.compile(r"step-(\d{8})")
TRAINER_STATE = "trainer.pt"


def checkpoints_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints as (step, folder), oldest first."""
    folder = checkpoints_dir(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.fullmatch(p.name)) and p.is_dir()]
    return sorted(found)


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer in the state dict, in name order: equal iff the bytes are equal."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class TrainerState:
    """What resuming restores besides the weights and RNG states."""

    step: int
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]


def save_checkpoint(
    accelerator: Accelerator,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    output_dir: str | os.PathLike,
    keep: int,
) -> Path:
    """Write the checkpoint of ``step`` (every process must call this); returns its folder.

    ``model`` is the unwrapped model. Older checkpoints beyond the ``keep`` most recent are deleted.
    """
    root = checkpoints_dir(output_dir)
    final = root / f"step-{step:08d}"
    tmp = root / f".step-{step:08d}.tmp"
    fingerprints = gather_object([weights_fingerprint(model)])
    if accelerator.is_main_process:
        if len(set(fingerprints)) > 1:
            # DDP keeps replicas equal; a difference means a bug or hardware fault, and the saved model is rank 0's.
            logger.error("the processes' weights differ at step %d: %s", step, fingerprints)
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    _atomic_torch_save(_rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        save_pretrained(model, tmp)
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "world_size": accelerator.num_processes,
            "fingerprints": list(fingerprints),
        }
        _atomic_torch_save(state, tmp / TRAINER_STATE)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _fsync_dir(tmp)
        if final.exists():  # the same step saved before (a resumed run that has not stepped yet)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        for _, old in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(folder: str | os.PathLike, model: nn.Module, rank: int, world_size: int) -> TrainerState:
    """Load the weights of ``folder`` into ``model`` (unwrapped) and this process's RNG states; return the rest.

    Resuming with another number of processes works, but is no longer exact: the data is split differently and
    the RNG states of the missing ranks are unknown (those ranks keep their seeded state; a warning says so).
    """
    folder = Path(folder)
    model.load_state_dict(read_state_dict(folder / "model.safetensors"), strict=True)
    state = torch.load(folder / TRAINER_STATE, map_location="cpu", weights_only=True)
    if state["world_size"] != world_size:
        logger.warning(
            "resuming a %d-process run with %d processes: the data order and random streams differ from an "
            "uninterrupted run",
            state["world_size"],
            world_size,
        )
    rng_file = folder / f"rng-{rank}.pt"
    if rng_file.exists():
        _restore_rng(torch.load(rng_file, map_location="cpu", weights_only=True))
    return TrainerState(step=int(state["step"]), optimizer=state["optimizer"], scheduler=state["scheduler"])


def remove_temporary(output_dir: str | os.PathLike) -> None:
    """Delete the temporary folders of checkpoints whose writing was interrupted."""
    root = checkpoints_dir(output_dir)
    if root.is_dir():
        for path in root.glob(".step-*.tmp"):
            shutil.rmtree(path, ignore_errors=True)
            logger.info("removed an incomplete checkpoint %s", path)


# ---------------------------------------------------------------------------------------------------- internals


def _rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA), NumPy and Python generator states as tensors and plain values."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["position"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    torch.save(obj, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
