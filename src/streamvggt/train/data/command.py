"""What ``streamvggt data`` does: tools for dataset folders (the command: ``streamvggt.cli.data``).

Subcommands live in :data:`SUBCOMMANDS` (name -> arguments and handler), so a new one is one entry. A handler
returns its exit status, or raises :class:`DataCommandError` with a one-line message. This module imports
neither PyYAML nor torch at import time (``streamvggt --help`` lists these commands).
"""

from __future__ import annotations

import argparse
import os
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
  streamvggt data check --type synthetic --num-views 4 --size 70 56     (generated: no ROOT)
  streamvggt data check --type generic data/own --min-consistency 0.3   (accept weaker labels)
exit status: 0 when no problem was found, 1 with the problems listed, 2 for bad arguments.
"""

# The check's default threshold; the library's default too (kept equal by the tests).
DEFAULT_MIN_CONSISTENCY = 0.5


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


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1], got '{text}'")
    return value


def _add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "root", nargs="?", help="the dataset folder (as the reader's root); none for --type synthetic (generated)"
    )
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
        "--min-consistency",
        type=_fraction,
        default=DEFAULT_MIN_CONSISTENCY,
        metavar="F",
        help=f"lowest accepted reprojection consistency of a clip ({DEFAULT_MIN_CONSISTENCY}); lower it to accept "
        "weaker labels (pseudo-labels of a model, sparse COLMAP depth) knowingly: the report records it",
    )
    parser.add_argument("--output", type=Path, metavar="DIR", help="report folder (default: data_check_TYPE)")


def _run_check(args: argparse.Namespace) -> int:
    arguments = {
        "split": args.split,
        "num_views": args.num_views,
        "aug_crop": 0,
        "color_jitter": False,
        **dict(args.option),
    }
    output = args.output or Path(f"data_check_{args.type}")
    # Usage problems are found before anything is read or written: a mistyped root must not replace an earlier
    # report, and an unwritable report folder must not cost a whole read first.
    problem = _check_root(args.type, args.root) or _check_output(output)
    if problem:
        raise DataCommandError(problem, 2)
    if args.root is not None:
        arguments["root"] = args.root
    from streamvggt.train.data.check import check_dataset  # the readers import torch: not for --help

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
    except OSError as error:  # the report folder cannot be written after all (full disk, removed meanwhile)
        raise DataCommandError(f"cannot write {output}: {error.strerror or error}", 2) from None
    write_summary(report, sys.stdout)
    if report.contact_sheet is not None or (output / "report.json").is_file():
        sys.stdout.write(f"report: {output / 'report.json'}\n")
    return 0 if report.passed else 1


def _check_root(kind: str, root: str | None) -> str | None:
    """Why ``root`` cannot serve dataset type ``kind`` (one line), or None."""
    if kind == "synthetic":
        return "the synthetic dataset is generated: give no ROOT folder" if root is not None else None
    if root is None:
        return f"--type {kind} needs the dataset folder (ROOT)"
    if not Path(root).exists():
        return f"dataset folder not found: {root}"
    if not Path(root).is_dir():
        return f"the dataset ROOT must be a folder: {root} is a file"
    return None


def _check_output(output: Path) -> str | None:
    """Why the report folder ``output`` cannot be written (one line), or None; creates nothing."""
    existing = output.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == output.absolute() and not existing.is_dir():
        return f"cannot write the report into {output}: it is a file, not a folder"
    if not existing.is_dir():
        return f"cannot write the report into {output}: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write the report into {output}: {existing} is not writable"
    return None


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
    if report.min_consistency < DEFAULT_MIN_CONSISTENCY:
        stream.write(
            f"weaker labels accepted knowingly: clips held to consistency >= {report.min_consistency:g} "
            f"(default {DEFAULT_MIN_CONSISTENCY:g})\n"
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
