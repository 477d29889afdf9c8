"""``streamvggt train``: train or fine-tune a model from a YAML config (also under torchrun or accelerate launch:
``torchrun ... -m streamvggt train --config FILE``)."""

from __future__ import annotations

import argparse
from typing import Any

from streamvggt.cli.common import EXIT_USAGE, fail
from streamvggt.extras import MissingExtraError, require
from streamvggt.train import command

NAME = "train"


def check_requirements() -> None:
    """PyYAML, before even the arguments parse (the config is YAML)."""
    require("yaml", "train")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(NAME, help="train or fine-tune a model (see streamvggt train --help)")
    command.add_arguments(parser)
    return parser


def take_extra_arguments(args: argparse.Namespace, extra: list[str]) -> bool:
    """Overrides after a flag (``--config F a=1 --resume b=2``): argparse reads one run of positionals, the rest
    arrive here in order. False when any of them is not an override (the caller reports it as unrecognised)."""
    if not all("=" in item and not item.startswith("-") for item in extra):
        return False
    args.overrides = [*args.overrides, *extra]
    return True


def run(args: argparse.Namespace) -> int:
    """Exit status 2 for a bad config or missing data (before anything loads), 1 when --check-data finds
    problems."""
    try:
        return command.run(args)
    except (ValueError, FileNotFoundError, FileExistsError, MissingExtraError) as error:
        return fail(args.prog, str(error), EXIT_USAGE)
