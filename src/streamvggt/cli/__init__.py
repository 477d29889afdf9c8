"""The ``streamvggt`` command: one module per command, each with ``add_parser(subparsers)`` and ``run(args)``.

This module builds the parser from :data:`COMMANDS` and holds the error handling every command shares. Exit codes:
0 success, 1 a fatal error (one line, ``streamvggt COMMAND: error: ...``, says what to do), 2 bad arguments, 130
interrupted, 141 the reader of our output went away (``streamvggt ... | head -1``: a quiet exit). A command
module may also define ``check_requirements()``, which raises MissingExtraError before even its arguments parse.

Nothing here imports torch at import time: ``streamvggt --help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from types import ModuleType

from streamvggt import __version__
from streamvggt.cli import data, demo, export, reconstruct, reconstruct_many, train, view
from streamvggt.cli import eval as eval_command
from streamvggt.cli.common import (
    EXIT_CLOSED_PIPE,
    EXIT_INTERRUPTED,
    Formatter,
    fail,
    first_line,
    log,
    prog,
)
from streamvggt.extras import MissingExtraError

__all__ = ["COMMANDS", "build_parser", "main"]

# In the order ``streamvggt --help`` lists them.
COMMANDS: tuple[ModuleType, ...] = (reconstruct, reconstruct_many, demo, eval_command, view, train, data, export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamvggt", description="Streaming 4D reconstruction with StreamVGGT.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        sub = module.add_parser(commands)
        sub.set_defaults(run=module.run, prog=sub.prog)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``streamvggt ARGV``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    command = _command(argv)
    args = None
    try:
        if hasattr(command, "check_requirements"):
            command.check_requirements()  # before the arguments: even --help needs them
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        take_extra = getattr(command, "take_extra_arguments", None)
        if extra and (take_extra is None or not take_extra(args, extra)):
            _parser_of(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
        code = _run(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except MissingExtraError as error:
        return fail(prog(args, command.NAME if command else None), str(error))


def _parser_of(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The subcommand's own parser, so that its errors read ``streamvggt COMMAND: error: ...``."""
    for action in parser._subparsers._group_actions:  # argparse keeps subparsers only here
        if name in getattr(action, "choices", {}):
            return action.choices[name]
    return parser


def _command(argv: list[str]) -> ModuleType | None:
    """The command module ARGV names first, if any."""
    return next((module for module in COMMANDS if argv[:1] == [module.NAME]), None)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; every failure becomes one line and an exit code."""
    name = prog(args)
    verbose = getattr(args, "verbose", False)
    handler = None
    if hasattr(args, "verbose"):  # the commands that run the model report through the package's logger
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(Formatter())
        log.addHandler(handler)
        log.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        with _redirect_logging(args):
            return args.run(args)
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        print("streamvggt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, MissingExtraError) as error:  # InputError, OutputError, CheckpointError among them
        if not _expected(error):
            return _unexpected(name, error, verbose)
        return fail(name, str(error))
    except Exception as error:
        if _out_of_memory(error):
            return fail(
                name,
                "out of memory: bound the cache (--cache window:16 or budget:N), lower --size or --max-frames, "
                "or use --device cpu",
            )
        return _unexpected(name, error, verbose)
    finally:
        if handler is not None:
            log.removeHandler(handler)


def _expected(error: BaseException) -> bool:
    """Errors whose message is for users: bad values, unreadable inputs, unwritable outputs, checkpoints."""
    from streamvggt.io.errors import OutputError

    return isinstance(error, ValueError | MissingExtraError | OutputError) or type(error).__name__ == "CheckpointError"


def _unexpected(name: str, error: BaseException, verbose: bool) -> int:
    """A bug: one line for the user, the traceback with --verbose."""
    log.debug("unexpected error", exc_info=True)
    hint = "" if verbose else " (run with --verbose for the traceback)"
    return fail(name, f"unexpected {type(error).__name__}: {first_line(str(error))}{hint}")


def _out_of_memory(error: BaseException) -> bool:
    torch = sys.modules.get("torch")  # a command that ran out of memory has loaded torch
    return torch is not None and isinstance(error, torch.OutOfMemoryError)


def _redirect_logging(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """Log lines above the progress bar rather than through it."""
    if getattr(args, "no_progress", True):
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm(loggers=[log])


def _closed_pipe() -> int:
    """The reader of stdout went away: exit quietly, with the rest of the output sent nowhere (the interpreter
    would otherwise report the failed flush at exit)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return EXIT_CLOSED_PIPE
