"""``streamvggt view``: watch an input's reconstruction in the browser, or reopen a finished one."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamvggt.cli import options

if TYPE_CHECKING:
    from streamvggt.viewer import ViewSummary

NAME = "view"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="watch an input's reconstruction in the browser, or reopen a finished one",
        description="Serve a web page (viser) showing each frame's points, camera and the trajectory as frames "
        "stream, with a frame slider to scrub through time; INPUT may also be an OUTDIR of reconstruct, reopened "
        "from its files without the model. Runs until Ctrl-C.",
    )
    parser.add_argument("input", metavar="INPUT", help=f"{options.INPUT_HELP}; or an output folder of reconstruct")
    options.add_model_options(parser)
    options.add_stream_options(parser)
    options.add_compile_option(parser)
    parser.add_argument("--export-dir", type=Path, metavar="DIR", help="where Export PLY writes (default: OUTDIR or .)")
    options.add_viewer_options(parser)
    options.add_map_options(parser)
    options.add_run_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from streamvggt.viewer import view

    summary = view(args.input, options=options.reconstruct_options(args), announce=functools.partial(print, flush=True))
    print(describe(summary))
    return 0


def describe(summary: ViewSummary) -> str:
    how = "reopened from its files" if summary.reopened else "streamed"
    if summary.interrupted:
        how += " (interrupted)"
    lines = [f"{summary.frames} frames {how}; viewer stopped"]
    if summary.skipped:
        lines.append(f"skipped {len(summary.skipped)} unreadable frames, the first: {summary.skipped[0][0]}")
    return "\n".join(lines)
