"""What ``streamvggt data`` does: tools for dataset folders (the command: ``streamvggt.cli.data``).

Subcommands live in :data:`SUBCOMMANDS` (name -> arguments and handler), so a new one is one entry. A handler
returns its exit status, or raises :class:`DataCommandError` with a one-line message. This module imports
neither PyYAML nor torch at import time (``streamvggt --help`` lists these commands).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from streamvggt.extras import MissingExtraError, require
from streamvggt.train.data import importers
from streamvggt.train.data.importers.command import DataCommandError
from streamvggt.train.data.reader_types import READER_TYPES

if TYPE_CHECKING:
    from streamvggt.train.data.check import DatasetReport

CHECK_EPILOG = """\
examples:
  streamvggt data check --type spring ../data/train/spring
  streamvggt data check --type pointodyssey ../data/train/point_odyssey --split train --clips 16
  streamvggt data check --type generic my_scans --option "sampling={max_interval: 4}"
exit status: 0 when no problem was found, 1 with the problems listed, 2 for bad arguments.
"""


@dataclass(frozen=True)
class Subcommand:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    epilog: str = ""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def _option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with a YAML value (``max_interval=4``, ``sampling={video_prob: 1.0}``)."""
    yaml = require("yaml", "train")
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(f"option {key}: not a YAML value ({error})") from None


def _add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="the dataset folder (as the reader's root)")
    parser.add_argument(
        "--type",
        required=True,
        choices=READER_TYPES,
        metavar="TYPE",
        help=f"the reader (dataset type): {', '.join(READER_TYPES)}",
    )
    parser.add_argument("--split", default="train", help="the reader's split (train)")
    parser.add_argument("--num-views", type=_positive, default=10, help="frames per clip (10, as the recipe)")
    parser.add_argument(
        "--option", type=_option, action="append", default=[], metavar="KEY=VALUE", help="another reader option"
    )
    parser.add_argument("--clips", type=_positive, default=8, help="clips to read (8)")
    parser.add_argument(
        "--size", type=_positive, nargs=2, default=(518, 392), metavar=("W", "H"), help="clip size (518 392)"
    )
    parser.add_argument("--seed", type=int, default=0, help="which clips are read (0)")
    parser.add_argument(
        "--min-consistency", type=float, default=0.5, help="lowest accepted reprojection consistency of a clip (0.5)"
    )
    parser.add_argument("--output", type=Path, metavar="DIR", help="report folder (default: data_check_TYPE)")


def _run_check(args: argparse.Namespace) -> int:
    arguments = {
        "root": args.root,
        "split": args.split,
        "num_views": args.num_views,
        "aug_crop": 0,
        "color_jitter": False,
        **dict(args.option),
    }
    from streamvggt.train.data.check import check_dataset  # the readers import torch: not for --help

    output = args.output or Path(f"data_check_{args.type}")
    try:
        report = check_dataset(
            args.type,
            arguments,
            clips=args.clips,
            size=tuple(args.size),
            seed=args.seed,
            min_consistency=args.min_consistency,
            output=output,
        )
    except MissingExtraError as error:
        raise DataCommandError(str(error), 2) from None
    except OSError as error:  # the report folder cannot be written
        raise DataCommandError(f"cannot write {output}: {error}", 2) from None
    write_summary(report, sys.stdout)
    sys.stdout.write(f"report: {output / 'report.json'}\n")
    return 0 if report.passed else 1


SUBCOMMANDS: dict[str, Subcommand] = {
    "check": Subcommand(
        help="validate a dataset folder: counts, sampled clips' depth and geometric consistency, a contact sheet",
        add_arguments=_add_check_arguments,
        run=_run_check,
        epilog=CHECK_EPILOG,
    ),
    "import": Subcommand(
        help="import a capture (a COLMAP project or a reconstruct output folder) as a generic training scene",
        add_arguments=importers.add_arguments,
        run=importers.run,
        epilog=importers.EPILOG,
    ),
}


def write_summary(report: DatasetReport, stream: TextIO) -> None:
    """The report as a few readable lines: counts, one line per sampled clip, then the problems."""
    counts = ", ".join(
        f"{value} {name}" for name, value in (("scenes", report.scenes), ("frames", report.frames)) if value is not None
    )
    stream.write(f"{report.type} {report.root}: {counts or 'counts not listed by this reader'}")
    stream.write(f"; {report.clips} clips, {len(report.sampled)} read\n" if report.clips is not None else "\n")
    for clip in report.sampled:
        depth = (
            "no valid depth"
            if clip.depth_min is None
            else (f"depth {clip.depth_min:.3g}-{clip.depth_max:.3g} (median {clip.depth_median:.3g})")
        )
        score = "no overlap" if clip.score is None else f"consistency {clip.score:.3f}"
        stream.write(
            f"  clip {clip.index}: {depth}, invalid {100 * clip.invalid_fraction:.1f} %, "
            f"sky {100 * clip.sky_fraction:.1f} %, {score}\n"
        )
    if report.passed:
        stream.write("passed: no problem found\n")
        return
    stream.write(f"FAILED: {len(report.problems)} problem(s)\n")
    for problem in report.problems:
        stream.write(f"  - {problem}\n")


def add_subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The data subcommands on ``parser`` (``args.data_command`` names the one given; ``args.prog`` its name)."""
    parser.description = "Tools for training dataset folders."
    commands = parser.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        sub = commands.add_parser(
            name,
            help=command.help,
            description=command.help,
            epilog=command.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(sub)
        sub.set_defaults(prog=sub.prog)
    return commands


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``streamvggt data`` subcommand; returns its exit status (DataCommandError: see above)."""
    return SUBCOMMANDS[args.data_command].run(args)
