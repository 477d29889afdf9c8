"""Export trained weights: ``python -m streamvggt.train.export SOURCE FOLDER``.

SOURCE is a training output folder (its latest checkpoint is taken), a checkpoint folder, or any checkpoint
``load_model`` reads (a reference ``checkpoint-*.pth`` with a ``module.`` prefix included). FOLDER receives
``config.json`` + ``model.safetensors``: a plain state dict in the official parameter naming.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from streamvggt.train.checkpoint import latest_checkpoint
from streamvggt.weights import CheckpointError, load_model, save_pretrained

logger = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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
        model = model.to(_DTYPES[dtype])
    logger.info("exporting %s", path)
    return save_pretrained(model, folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamvggt.train.export", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="training output folder, checkpoint folder or checkpoint file")
    parser.add_argument("folder", help="where to write config.json and model.safetensors")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="fp32")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        export(args.source, args.folder, args.dtype)
    except (CheckpointError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
