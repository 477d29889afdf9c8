"""``streamvggt demo``: reconstruct a held-out synthetic sequence with the bundled model and score it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streamvggt.cli import options
from streamvggt.cli.common import fail
from streamvggt.cli.reconstruct import describe as describe_reconstruction
from streamvggt.extras import require

NAME = "demo"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="reconstruct a held-out synthetic sequence with the bundled model and score it",
        description="Render a procedural scene the bundled model never saw, stream it through reconstruct, and "
        "write every reconstruct output plus demo.png and metrics.json (the model beside trivial baselines).",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("demo_output"), metavar="OUTDIR", help="(demo_output)"
    )
    options.add_model_options(parser)
    parser.add_argument("--frames", type=int, default=16, metavar="N", help="frames in the sequence (16)")
    options.add_run_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    require("matplotlib", "eval", purpose="the demo")  # for demo.png: say so before the run, not after it
    if args.frames < 2:
        return fail(args.prog, "--frames must be at least 2 (camera errors compare pairs of frames)")
    from streamvggt import demo

    summary, metrics = demo.run_demo(
        args.output, args.checkpoint, args.frames, args.device, args.precision, progress=not args.no_progress
    )
    model, flat, still = metrics["model"], metrics["baseline_constant_depth"], metrics["baseline_identity_pose"]
    print(
        f"{describe_reconstruction(summary)}\n"
        f"depth Abs Rel {model['depth_abs_rel']:.3f} (constant depth: {flat['depth_abs_rel']:.3f}); "
        f"RRA {model['rra_deg']:.2f} deg, RTA {model['rta_deg']:.2f} deg (identity: {still['rra_deg']:.2f}, "
        f"{still['rta_deg']:.2f}); AUC@30 {model['auc_30']:.3f}\n"
        f"figure: {summary.output_dir / 'demo.png'}, metrics: {summary.output_dir / 'metrics.json'}"
    )
    return 0
