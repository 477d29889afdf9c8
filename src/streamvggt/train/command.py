"""The ``streamvggt train`` command line (also ``python -m streamvggt.train``, under torchrun or accelerate)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import yaml

from streamvggt.train.config import load_config

logger = logging.getLogger("streamvggt.train")

EPILOG = """\
examples:
  python -m streamvggt.train --config configs/synthetic_tiny.yaml run.output_dir=outputs/tiny
  python -m streamvggt.train --config configs/synthetic_tiny.yaml run.output_dir=outputs/tiny --resume
  torchrun --nproc_per_node 2 -m streamvggt.train --config configs/synthetic_tiny.yaml   (2 CPU processes)
  accelerate launch --multi_gpu --num_processes 4 -m streamvggt.train --config configs/distill_reference.yaml
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamvggt train",
        description="Train StreamVGGT: distillation from VGGT or ground-truth supervision (see configs/).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="config changes, values in YAML (optim.lr=1e-4)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in run.output_dir (if any)"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (2 for a bad config or missing data)."""
    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s",
    )
    try:
        config = load_config(args.config, args.overrides)
        if args.print_config:
            sys.stdout.write(yaml.safe_dump(config.to_dict(), sort_keys=False))
            return 0
        from streamvggt.train.loop import train  # heavy imports only when training

        folder = train(config, resume=args.resume)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        logger.error("%s", error)
        return 2
    logger.info("done: %s", folder)
    return 0
