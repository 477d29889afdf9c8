"""What every command shares: exit codes, the one-line error, the logging handler and the closed-pipe exit.

Messages take one form everywhere: ``streamvggt COMMAND: error: what went wrong`` on stderr, one line.
"""

from __future__ import annotations

import argparse
import logging
import sys

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for any tool whose reader went away (`| head -1`)

log = logging.getLogger("streamvggt")


def prog(args: argparse.Namespace | None, command: str | None = None) -> str:
    """The name a message starts with: ``streamvggt reconstruct``, ``streamvggt data check``."""
    if args is not None and getattr(args, "prog", None):
        return args.prog
    return f"streamvggt {command}" if command else "streamvggt"


def fail(name: str, message: str, code: int = EXIT_ERROR) -> int:
    """Print ``NAME: error: MESSAGE`` (its first line) on stderr; returns ``code``."""
    print(f"{name}: error: {first_line(message)}", file=sys.stderr)
    return code


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "unknown error"


class Formatter(logging.Formatter):
    """``warning: message``, the way command-line tools report."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text
