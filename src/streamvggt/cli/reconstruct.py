"""``streamvggt reconstruct``: stream an input through the model into files, optionally watched in the viewer."""

from __future__ import annotations

import argparse
import functools
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamvggt.cli import options
from streamvggt.cli.common import EXIT_INTERRUPTED, EXIT_USAGE, fail

if TYPE_CHECKING:
    from streamvggt.pipeline.reconstructor import ReconstructionSummary

NAME = "reconstruct"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="reconstruct a folder, video, camera or stream into 3D outputs",
        description="Stream frames through the model one at a time and write points.ply, scene.glb, cameras.json, "
        "trajectory.tum, a COLMAP model, transforms.json and per-frame depth into OUTDIR.",
    )
    parser.add_argument("input", metavar="INPUT", help=options.INPUT_HELP)
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="output folder (created)")
    options.add_model_options(parser)
    options.add_stream_options(parser)
    options.add_output_options(parser)
    options.add_export_options(parser)
    options.add_compile_option(parser)
    parser.add_argument("--view", action="store_true", help="watch the reconstruction grow in a browser viewer")
    options.add_viewer_options(parser)
    options.add_map_options(parser)
    options.add_resume_options(parser)
    options.add_run_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    unused = options.depth_scale_without_rgbd(args)
    given = options.viewer_options_given(args)
    if unused is None and given and not args.view:
        unused = f"{given[0]} applies only with --view (it configures the browser viewer)"
    if unused is not None:
        return fail(args.prog, unused, EXIT_USAGE)
    from streamvggt.pipeline.reconstructor import reconstruct

    settings = options.reconstruct_options(args)
    if settings.state_every is not None and settings.state_every < 0:
        return fail(
            args.prog, f"--state-every must be a number of frames >= 0 (0: never), got {args.state_every}", EXIT_USAGE
        )
    if not args.view:
        summary = reconstruct(args.input, args.output, options=settings)
        print(describe(summary))
    else:
        from streamvggt.viewer import finish_stream, open_viewer_for

        settings.check(viewer=True)  # the viewer's options, before the server starts
        announce = functools.partial(print, flush=True)
        with open_viewer_for(settings, args.output, announce) as viewer:
            summary = reconstruct(
                args.input,
                args.output,
                options=settings,
                on_frame=viewer.add_frame,
                on_correction=viewer.apply_corrections,
            )
            announce(describe(summary))
            finish_stream(viewer, summary.interrupted, settings.viewer.wait, announce)
        print("viewer stopped")
    if summary.interrupted and not summary.live:
        # A folder or video stopped early is not a finished run, though its outputs stay; a camera ends this way.
        print(f"streamvggt: interrupted after {summary.frames} frames (the outputs hold them)", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def describe(summary: ReconstructionSummary) -> str:
    """The end-of-run summary: frames, time, rate, precision, points, files."""
    if summary.already_finished:
        return (
            f"{summary.output_dir} holds a finished run ({summary.frames} frames, {summary.points:,} points): "
            "nothing to resume, nothing changed"
        )
    lines = [
        f"{summary.frames} frames in {summary.seconds:.1f} s ({summary.frames_per_second:.2f} frames/s streaming, "
        f"precision {summary.precision.describe()}), "
        f"{summary.points:,} points"
    ]
    if summary.scene_points < summary.points:
        lines.append(f"scene.glb holds a uniform sample of {summary.scene_points:,} points")
    if summary.resumed_from is not None:
        lines.insert(0, f"resumed after frame {summary.resumed_from}")
    if summary.interrupted:
        lines.append("interrupted: the outputs hold the frames before Ctrl-C")
    if summary.skipped:
        name, reason = summary.skipped[0]
        more = f" and {len(summary.skipped) - 1} more" if len(summary.skipped) > 1 else ""
        lines.append(f"skipped {len(summary.skipped)} unreadable: {name} ({reason}){more}")
    top: Counter[str] = Counter()
    for path in summary.files:
        relative = path.relative_to(summary.output_dir)
        top[relative.parts[0] + ("/" if len(relative.parts) > 1 else "")] += 1
    listed = ", ".join(name if name[-1] != "/" else f"{name} ({count} files)" for name, count in top.items())
    lines.append(f"wrote {summary.output_dir}: {listed}")
    return "\n".join(lines)
