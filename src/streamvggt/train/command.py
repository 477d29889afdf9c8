"""What ``streamvggt train`` does (its parser: :func:`add_arguments`; the command: ``streamvggt.cli.train``), also
under torchrun or accelerate launch (``-m streamvggt train``).

This module imports neither PyYAML nor torch at import time: the command line lists its arguments in ``--help``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from streamvggt.extras import require

if TYPE_CHECKING:
    pass

logger = logging.getLogger("streamvggt.train")

DESCRIPTION = "Train StreamVGGT: distillation from VGGT or ground-truth supervision (see configs/)."
EPILOG = """\
examples:
  streamvggt train --config configs/synthetic_tiny.yaml run.output_dir=outputs/tiny
  streamvggt train --config configs/synthetic_tiny.yaml run.output_dir=outputs/tiny --resume
  torchrun --nproc_per_node 2 -m streamvggt train --config configs/synthetic_tiny.yaml   (2 CPU processes)
  accelerate launch --multi_gpu --num_processes 4 -m streamvggt train --config configs/distill_reference.yaml
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The training command's arguments on ``parser``."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--config", required=True, help="YAML training config")
    parser.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="config changes, values in YAML (optim.lr=1e-4)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in run.output_dir (if any)"
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="check the config, the output folder, the extras, the starting weights and every dataset "
        "(reports in run.output_dir/data_check), then exit without training: 0 when all is ready, 1 otherwise",
    )
    parser.add_argument(
        "--check-data",
        action="store_true",
        help="first check every dataset of the config (streamvggt data check; reports in "
        "run.output_dir/data_check) and stop with the problems found instead of training",
    )


def run(args: argparse.Namespace) -> int:
    """Run the parsed command; returns the exit status (1 when --check-data or --check-only finds problems). A bad
    config or missing data raises ValueError, FileNotFoundError, FileExistsError or MissingExtraError (one line),
    before any model loads."""
    from streamvggt.train.config import load_config
    from streamvggt.train.preflight import check_output_folder, check_run, check_training_data

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s",
    )
    config = load_config(args.config, args.overrides)
    if args.print_config:
        yaml = require("yaml", "train")
        sys.stdout.write(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return 0
    if args.check_only:
        outcome = check_run(config, write=rank == 0)
        for note in outcome.notes:
            logger.info("%s", note)
        if not outcome.passed:
            logger.error("check: %d problem(s):\n  - %s", len(outcome.problems), "\n  - ".join(outcome.problems))
            return 1
        logger.info("check: ready to train (nothing was trained)")
        return 0
    check_output_folder(config.run.output_dir)
    if args.check_data:
        problems = check_training_data(config, write=rank == 0)
        if problems:
            logger.error("data check: %d problem(s); not training:\n  - %s", len(problems), "\n  - ".join(problems))
            return 1
        logger.info("data check: no problem found")
    # Checked before the run: TensorBoard logs from the first step, the loss curve is drawn at the end.
    require("accelerate", "train")
    require("tensorboard", "train")
    if config.run.plot:
        require("matplotlib", "train")
    from streamvggt.train.loop import train  # heavy imports only when training

    folder = train(config, resume=args.resume)
    logger.info("done: %s", folder)
    return 0
