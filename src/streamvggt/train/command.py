"""The ``streamvggt train`` command line (also ``python -m streamvggt.train``, under torchrun or accelerate)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from streamvggt.extras import MissingExtraError, require
from streamvggt.train.config import TrainConfig, load_config

yaml = require("yaml", "train")
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
    parser.add_argument(
        "--check-data",
        action="store_true",
        help="first check every dataset of the config (streamvggt data check; reports in "
        "run.output_dir/data_check) and stop with the problems found instead of training",
    )
    return parser


def check_training_data(config: TrainConfig, write: bool = True) -> list[str]:
    """Check every dataset of ``config`` as it will be read (its reader options, the first resolution) and
    return the problems found, each naming its dataset. ``write``: reports under run.output_dir/data_check."""
    from streamvggt.train.data.check import check_dataset

    data, problems = config.data, []
    for number, entry in enumerate(data.datasets):
        arguments = {
            **({} if entry.root is None else {"root": entry.root}),  # generated datasets take no root
            "split": entry.split,
            "num_views": data.num_views,
            "aug_crop": data.aug_crop,
            **entry.options,
            "color_jitter": False,  # the contact sheet shows the stored colours
        }
        output = Path(config.run.output_dir) / "data_check" / f"{number:02d}_{entry.type}" if write else None
        thresholds = {} if entry.min_consistency is None else {"min_consistency": entry.min_consistency}
        report = check_dataset(
            entry.type,
            arguments,
            size=tuple(data.resolutions[0]),
            output=output,
            lower_threshold=f"data.datasets.{number}.min_consistency={{value}} (in the config or on the command line)",
            **thresholds,
        )
        logger.info(
            "data check %s (%s): %s scenes, %s frames, %s clips, %d problem(s)",
            entry.type,
            entry.root,
            report.scenes,
            report.frames,
            report.clips,
            len(report.problems),
        )
        problems.extend(f"{entry.type} ({entry.root}): {problem}" for problem in report.problems)
    return problems


def check_output_folder(folder: str) -> None:
    """Fail before any data or model is loaded when ``run.output_dir`` cannot be created (e.g. under a file)."""
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"run.output_dir {folder} cannot be created: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"run.output_dir {folder} cannot be created: {existing} is not writable")


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (2 for a bad config or missing data, 1 when --check-data finds
    problems)."""
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
    except (ValueError, FileNotFoundError, FileExistsError, MissingExtraError) as error:
        logger.error("%s", error)
        return 2
    logger.info("done: %s", folder)
    return 0
