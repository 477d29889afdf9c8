"""``streamvggt eval``: run a benchmark protocol on a dataset, or on held-out synthetic scenes, and report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streamvggt.cli import options
from streamvggt.evaluate.options import (
    CO3D_NUM_FRAMES,
    DEFAULT_NUM_FRAMES,
    DEFAULT_SEED,
    DEFAULT_SEQUENCES,
    DEPTH_ALIGNMENTS,
    DEPTH_FITS,
    PROTOCOLS,
)
from streamvggt.io.inputs.preprocess import DEFAULT_SIZE

NAME = "eval"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="evaluate a model on a benchmark protocol (depth, reconstruction, pose) or synthetic scenes",
        description="Run a benchmark protocol of the field on a dataset in its standard preprocessed "
        "layout, or 'synthetic' on held-out procedural scenes with exact ground truth (no download). Writes "
        "<protocol>-<dataset>.json and .md and plots/ into OUTDIR. An option that the chosen protocol does not "
        "use is an error. See docs/evaluation.md.",
    )
    parser.add_argument("protocol", choices=PROTOCOLS, help="what to measure")
    parser.add_argument(
        "--dataset",
        metavar="NAME",
        help="monodepth: sintel, bonn, kitti or nyu; video-depth: sintel, bonn or kitti; recon: 7scenes or "
        "nrgbd; pose: co3d, tum, scannet or sintel (synthetic takes none)",
    )
    parser.add_argument("--root", type=Path, metavar="PATH", help="the dataset folder (see docs/evaluation.md)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="output folder (created)")
    options.add_model_options(parser, evaluation=True)
    options.add_cache_option(parser)
    parser.add_argument(
        "--max-frames", type=int, metavar="N", help="dataset protocols: use only the first N frames of each sequence"
    )
    parser.add_argument(
        "--align",
        choices=DEPTH_ALIGNMENTS,
        help="depth protocols: alignment (default: median per frame for monodepth, one scale per sequence for "
        "video-depth)",
    )
    parser.add_argument(
        "--fit",
        choices=DEPTH_FITS,
        help="depth protocols with --align scale&shift: the solver, 'reference' (the reference's Adam loop, which "
        "its published tables used; default) or 'exact' (the L1 optimum)",
    )
    parser.add_argument(
        "--size",
        type=int,
        metavar="PX",
        help=f"depth and pose protocols: model input size ({DEFAULT_SIZE}; recon uses the reference's fixed 518x392)",
    )
    parser.add_argument("--use-ba", action="store_true", help="pose: also refine cameras by bundle adjustment")
    parser.add_argument(
        "--num-frames",
        type=int,
        metavar="N",
        help=f"pose on co3d: frames drawn per sequence ({CO3D_NUM_FRAMES}); synthetic: frames per scene "
        f"({DEFAULT_NUM_FRAMES['synthetic']})",
    )
    parser.add_argument("--seed", type=int, help=f"pose on co3d: seed of the frame draw ({DEFAULT_SEED})")
    parser.add_argument(
        "--sequences", type=int, metavar="N", help=f"synthetic: scenes to evaluate ({DEFAULT_SEQUENCES})"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    options.add_run_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from streamvggt.evaluate.command import describe_eval, run_eval

    print(describe_eval(args, run_eval(args)))
    return 0
