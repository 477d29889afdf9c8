"""Export trained weights: ``streamvggt export SOURCE FOLDER`` (the command: ``streamvggt.cli.export``).

SOURCE is a training output folder (its latest checkpoint is taken), a checkpoint folder, or any checkpoint
``load_model`` reads (a reference ``checkpoint-*.pth`` with a ``module.`` prefix included). FOLDER receives
``config.json`` + ``model.safetensors``: a plain state dict in the official parameter naming.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from streamvggt.train.checkpoint import latest_checkpoint
from streamvggt.weights import CheckpointError, load_model, save_pretrained

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def export(source: str | Path, folder: str | Path, dtype: str = "fp32") -> Path:
    """Write the weights of ``source`` to ``folder`` in ``dtype`` (fp16/bf16 halve the size; ``load_model`` casts
    them back to fp32). Returns ``folder``."""
    path = Path(source)
    if (path / "checkpoints").is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path} has no complete checkpoint")
        path = found
    model = load_model(path, device="cpu")
    if dtype != "fp32":
        model = model.to(DTYPES[dtype])
    logger.info("exporting %s", path)
    return save_pretrained(model, folder)
