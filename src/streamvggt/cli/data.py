"""``streamvggt data``: check a training dataset folder, or import a capture as one."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from streamvggt.cli.common import fail
from streamvggt.extras import require
from streamvggt.train.data import command
from streamvggt.train.data.importers.command import DataCommandError

NAME = "data"


def check_requirements() -> None:
    """PyYAML, before even the arguments parse (reader options are YAML values)."""
    require("yaml", "train")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(NAME, help="check or import training datasets (see streamvggt data --help)")
    command.add_subcommands(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        return command.run(args)
    except DataCommandError as error:
        return fail(args.prog, str(error), error.status)
