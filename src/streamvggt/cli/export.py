"""``streamvggt export``: write a training run's (or any checkpoint's) weights as config.json +
model.safetensors, the folder ``--checkpoint`` and ``load_model`` read."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from streamvggt.cli.common import EXIT_USAGE, fail

NAME = "export"
DTYPES = ("bf16", "fp16", "fp32")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="export trained weights (a training run's latest checkpoint) as a model folder",
        description="Write the weights of SOURCE (a training output folder, whose latest checkpoint is taken; a "
        "checkpoint folder; or any checkpoint load_model reads) into FOLDER as config.json + model.safetensors, "
        "a plain state dict in the official parameter naming.",
    )
    parser.add_argument("source", help="training output folder, checkpoint folder or checkpoint file")
    parser.add_argument("folder", help="where to write config.json and model.safetensors")
    parser.add_argument(
        "--dtype", choices=DTYPES, default="fp32", help="fp16/bf16 halve the size; load_model casts back (fp32)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Exit status 2 when SOURCE holds no checkpoint."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from streamvggt.train.export import export
    from streamvggt.weights import CheckpointError

    try:
        export(args.source, args.folder, args.dtype)
    except (CheckpointError, FileNotFoundError) as error:
        return fail(args.prog, str(error), EXIT_USAGE)
    return 0
