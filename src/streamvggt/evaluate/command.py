"""``streamvggt eval``: run one benchmark protocol on a dataset (or on held-out synthetic scenes) and report.

    streamvggt eval {monodepth,video-depth,recon,pose,synthetic} --dataset NAME --root PATH -o OUTDIR [options]

Every protocol streams frames through a model session with the chosen cache policy and writes per-sequence and
averaged results (JSON and a markdown table) and plots into OUTDIR; the averages are printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streamvggt.evaluate.metrics import DEPTH_ALIGNMENTS

PROTOCOLS = ("monodepth", "video-depth", "recon", "pose", "synthetic")
DEFAULT_NUM_FRAMES = {"pose": 10, "synthetic": 16}
_PRINTED_METRICS = 6  # averages shown on the terminal; all are in the JSON


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` command to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a model on a benchmark protocol (depth, reconstruction, pose) or synthetic scenes",
        description="Run a benchmark protocol of the field on a dataset in its standard preprocessed "
        "layout, or 'synthetic' on held-out procedural scenes with exact ground truth (no download). Writes "
        "<protocol>-<dataset>.json and .md and plots/ into OUTDIR. See docs/evaluation.md.",
    )
    parser.add_argument("protocol", choices=PROTOCOLS, help="what to measure")
    parser.add_argument(
        "--dataset",
        metavar="NAME",
        help="monodepth: sintel, bonn, kitti or nyu; video-depth: sintel, bonn or kitti; recon: 7scenes or "
        "nrgbd; pose: co3d, tum, scannet or sintel (synthetic needs none)",
    )
    parser.add_argument("--root", type=Path, metavar="PATH", help="the dataset folder (see docs/evaluation.md)")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="output folder (created)")
    parser.add_argument(
        "--checkpoint",
        metavar="SOURCE",
        help="a .pt/.pth/.safetensors file, a folder, or a Hugging Face repo id (default: the bundled model)",
    )
    parser.add_argument(
        "--cache",
        default="full",
        metavar="POLICY",
        help="key/value cache of the stream: full, window:K or budget:N (default: full)",
    )
    parser.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="use only the first N frames of each sequence")
    parser.add_argument(
        "--align",
        choices=DEPTH_ALIGNMENTS,
        help="depth alignment (default: median per frame for monodepth, one scale per sequence for video-depth)",
    )
    parser.add_argument(
        "--size", type=int, default=518, metavar="PX", help="input size of the depth and pose protocols (518)"
    )
    parser.add_argument("--use-ba", action="store_true", help="pose: also refine cameras by bundle adjustment")
    parser.add_argument(
        "--num-frames", type=int, metavar="N", help="pose: frames drawn per sequence (10); synthetic: frames (16)"
    )
    parser.add_argument("--seed", type=int, default=0, help="pose: seed of the frame draw (0)")
    parser.add_argument("--sequences", type=int, default=8, metavar="N", help="synthetic: scenes to evaluate (8)")
    parser.add_argument("--no-plots", action="store_true", help="depth protocols: skip the error-map figures")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details; tracebacks for bugs")
    return parser


def run_eval(args: argparse.Namespace) -> int:
    """Run the parsed ``eval`` command; returns the exit code (errors are printed as one line)."""
    from streamvggt.cli import _fail, _guarded

    if args.protocol != "synthetic" and (args.dataset is None or args.root is None):
        return _fail(f"eval {args.protocol} needs --dataset NAME and --root PATH")
    for option in ("max_frames", "num_frames"):
        value = getattr(args, option)
        if value is not None and value < 1:
            return _fail(f"--{option.replace('_', '-')} must be at least 1, got {value}")

    def run() -> dict[str, float]:
        return _run(args)

    def describe(summary: dict[str, float]) -> str:
        label = "synthetic" if args.protocol == "synthetic" else f"{args.protocol}-{args.dataset}"
        shown = [(key, value) for key, value in summary.items() if "/" not in key][:_PRINTED_METRICS]
        numbers = ", ".join(f"{key} {_number(value)}" for key, value in shown)
        return f"{label}: {numbers}\nwrote {args.output} ({label}.json, {label}.md, plots/)"

    return _guarded(args, run, describe)


def _run(args: argparse.Namespace) -> dict[str, float]:
    from streamvggt.cache import parse_policy
    from streamvggt.weights import load_model

    parse_policy(args.cache)  # reject a bad policy before the model loads
    if args.protocol in ("monodepth", "video-depth"):
        from streamvggt.evaluate.datasets import open_depth_dataset

        open_depth_dataset(args.dataset, args.root)  # a wrong folder fails before the model loads
    device = _device(args.device)
    model = load_model(args.checkpoint, device=device)
    meta = {"checkpoint": args.checkpoint or "bundled default model", "device": str(device)}
    if args.protocol in ("monodepth", "video-depth"):
        from streamvggt.evaluate.depth import run_depth

        return run_depth(
            args.protocol,
            args.dataset,
            args.root,
            model,
            args.output,
            cache=args.cache,
            align=args.align,
            max_frames=args.max_frames,
            size=args.size,
            meta=meta,
            progress=not args.no_progress,
            plots=not args.no_plots,
        )
    num_frames = args.num_frames or DEFAULT_NUM_FRAMES.get(args.protocol)
    if args.protocol == "synthetic":
        from streamvggt.evaluate.synthetic import run_synthetic

        return run_synthetic(model, args.output, args.cache, args.sequences, num_frames, meta=meta)
    if args.protocol == "recon":
        from streamvggt.evaluate.recon import run_recon

        return run_recon(
            args.dataset, args.root, model, args.output, args.cache, args.max_frames, meta=meta, plots=not args.no_plots
        )
    from streamvggt.evaluate.pose import run_pose

    return run_pose(
        args.dataset,
        args.root,
        model,
        args.output,
        args.cache,
        args.use_ba,
        num_frames,
        args.seed,
        args.max_frames,
        meta=meta,
        size=args.size,
        plots=not args.no_plots,
    )


def _device(name: str) -> Any:
    """The torch device to evaluate on; ValueError for a name torch does not know."""
    from streamvggt.device import select_device

    try:
        return select_device(name)
    except RuntimeError as error:  # torch.device("gpu") raises RuntimeError listing the known types
        raise ValueError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps") from error


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
