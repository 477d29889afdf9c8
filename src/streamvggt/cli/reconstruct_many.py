"""``streamvggt reconstruct-many``: every input of a manifest, B at a time, resumable, sharded over processes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streamvggt.cli import options
from streamvggt.cli.common import EXIT_ERROR, EXIT_USAGE, fail

NAME = "reconstruct-many"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="reconstruct every input of a manifest, B at a time, resumable, sharded over processes",
        description="Reconstruct each input of MANIFEST (a text file, one input per line with an optional "
        "tab-separated output name, or a folder of videos and image folders) into OUTROOT/NAME, exactly as "
        "reconstruct would; complete inputs made with the same options are skipped, failed ones are listed in "
        "OUTROOT/summary.json. Under torchrun or accelerate launch each process takes its share (docs/collections.md).",
    )
    parser.add_argument("manifest", metavar="MANIFEST", help="a manifest file or a folder of inputs")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTROOT", help="output root (created)")
    parser.add_argument(
        "--batch", type=int, default=1, metavar="B", help="inputs streamed together through one session (1)"
    )
    parser.add_argument(
        "--shard", metavar="I/N", help="take share I of N of the manifest (a SLURM array task: its id and count)"
    )
    parser.add_argument("--merge", action="store_true", help="only merge the shards' records into OUTROOT/summary.json")
    parser.add_argument(
        "--force",
        action="store_true",
        help="reconstruct complete inputs again too (without it, only those made with other options are redone)",
    )
    options.add_model_options(parser)
    options.add_stream_options(
        parser, fps_help="keep F frames per second of each video (default: 1); image folders ignore it"
    )
    options.add_output_options(parser)
    options.add_export_options(parser)
    options.add_regions_compile_option(parser)
    options.add_map_options(parser, reanchor=False)
    options.add_resume_options(parser, resume=False)
    options.add_run_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    unused = options.depth_scale_without_rgbd(args)
    if unused is not None:
        return fail(args.prog, unused, EXIT_USAGE)
    if args.state_every is not None and args.state_every < 0:
        return fail(
            args.prog, f"--state-every must be a number of frames >= 0 (0: never), got {args.state_every}", EXIT_USAGE
        )
    from streamvggt.collection.command import describe, run_collection_command, succeeded

    result = run_collection_command(
        args.manifest,
        args.output,
        options.reconstruct_options(args),
        batch_size=args.batch,
        shard=args.shard,
        merge_only=args.merge,
        force=args.force,
    )
    print(describe(result))
    return 0 if succeeded(result) else EXIT_ERROR
