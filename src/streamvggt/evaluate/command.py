"""``streamvggt eval``: run one benchmark protocol on a dataset (or on held-out synthetic scenes) and report.

    streamvggt eval {monodepth,video-depth,recon,pose,synthetic} --dataset NAME --root PATH -o OUTDIR [options]

Every protocol streams frames through a model session with the chosen cache policy and writes per-sequence and
averaged results (JSON and a markdown table) and plots into OUTDIR; the averages are printed. This module holds
the parser, the checks (all made before the model loads) and the run; ``streamvggt.cli`` turns its errors into
one-line messages.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streamvggt.evaluate.options import CO3D_NUM_FRAMES, DEPTH_ALIGNMENTS, DEPTH_FITS
from streamvggt.evaluate.report import prepare_output_dir
from streamvggt.extras import require
from streamvggt.io.inputs.preprocess import DEFAULT_SIZE

PROTOCOLS = ("monodepth", "video-depth", "recon", "pose", "synthetic")
# eval's default precision: what reproduces the published numbers on any machine (not auto's CPU measurement).
REFERENCE_PRECISION = "reference"
DEFAULT_NUM_FRAMES = {"pose": CO3D_NUM_FRAMES, "synthetic": 16}
DEFAULT_SEED, DEFAULT_SEQUENCES = 0, 8
_PRINTED_METRICS = 6  # averages shown on the terminal; all are in the JSON
_DEPTH, _ALL_DATASETS = ("monodepth", "video-depth"), ("monodepth", "video-depth", "recon", "pose")
# Which protocols (and, after a slash, which dataset) use each option; giving one elsewhere is an error, not a
# silent no-op. The options' parser defaults are None (or False) so that "given" can be told from "default".
_OPTION_USERS: dict[str, tuple[str, ...]] = {
    "dataset": _ALL_DATASETS,
    "root": _ALL_DATASETS,
    "max_frames": _ALL_DATASETS,
    "align": _DEPTH,
    "fit": _DEPTH,
    "size": (*_DEPTH, "pose"),
    "use_ba": ("pose",),
    "num_frames": ("pose/co3d", "synthetic"),
    "seed": ("pose/co3d",),
    "sequences": ("synthetic",),
}


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` command to the CLI's subparsers."""
    parser = subparsers.add_parser(
        "eval",
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
    parser.add_argument(
        "--precision",
        default=REFERENCE_PRECISION,
        metavar="P",
        help="trunk precision: reference (the mode the published numbers were made in: bf16 autocast on CUDA, fp16 "
        "where the GPU has no bf16, fp32 elsewhere), auto, fp32, bf16, fp16 (GPU) or int8 (CPU); recorded in the "
        "results (default: reference)",
    )
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
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details; tracebacks for bugs")
    return parser


def eval_precision(precision: str, device: Any) -> str:
    """The precision ``load_model`` gets for eval's ``--precision`` on ``device``: ``reference`` is ``auto`` on CUDA
    (bf16 autocast, fp16 without bf16 support, as the reference evaluation ran) and ``fp32`` elsewhere; other
    values are checked (ValueError, one line) and passed on."""
    from streamvggt.runtime.precision import resolve_precision

    if precision == REFERENCE_PRECISION:
        return "auto" if device.type == "cuda" else "fp32"
    try:
        resolve_precision(device, precision)
    except ValueError as error:
        if not str(error).startswith("unknown precision"):
            raise
        raise ValueError(f"{error}, or {REFERENCE_PRECISION}") from None
    return precision


def check_eval(args: argparse.Namespace) -> Any:
    """Check the parsed ``eval`` arguments, the dataset folder and the output folder (created) without loading a
    model; returns the torch device. Raises ValueError, InputError, OutputError or MissingExtraError with a one-line
    message."""
    from streamvggt.runtime.device import select_device
    from streamvggt.streaming.cache import parse_policy

    if args.protocol != "synthetic" and (args.dataset is None or args.root is None):
        raise ValueError(f"eval {args.protocol} needs --dataset NAME and --root PATH")
    for option, users in _OPTION_USERS.items():
        value = getattr(args, option)
        if value is None or value is False or _uses(users, args.protocol, args.dataset):
            continue
        flag = "--" + option.replace("_", "-")
        where = ", ".join(user.replace("/", " on ") for user in users)
        raise ValueError(f"{flag} does not apply to eval {_label(args)}: it is for {where}")
    for option in ("max_frames", "size", "sequences"):  # --num-frames: each protocol states its own range
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ValueError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if not args.no_plots:
        require("matplotlib", "eval")  # the figures are drawn last: a missing matplotlib must stop the run first
    parse_policy(args.cache)
    device = select_device(args.device)
    eval_precision(args.precision, device)
    if args.protocol in _DEPTH:
        from streamvggt.evaluate.depth import check_depth

        check_depth(args.protocol, args.dataset, args.root, args.align, args.max_frames, args.fit)
    elif args.protocol == "recon":
        from streamvggt.evaluate.recon import check_recon

        check_recon(args.dataset, args.root, args.max_frames)
    elif args.protocol == "pose":
        from streamvggt.evaluate.pose import check_pose

        check_pose(args.dataset, args.root, _num_frames(args), args.max_frames, args.use_ba)
    else:
        from streamvggt.evaluate.synthetic import check_synthetic

        check_synthetic(args.sequences or DEFAULT_SEQUENCES, _num_frames(args))
    prepare_output_dir(args.output)
    return device


def run_eval(args: argparse.Namespace) -> dict[str, float]:
    """Run the parsed ``eval`` command: check everything (:func:`check_eval`), then load the model and run the
    protocol; returns its averaged metrics."""
    from streamvggt.weights import load_model

    device = check_eval(args)
    model = load_model(args.checkpoint, device=device, precision=eval_precision(args.precision, device))
    meta = {"checkpoint": args.checkpoint or "bundled default model", "device": str(device)}
    plots, size = not args.no_plots, args.size or DEFAULT_SIZE
    if args.protocol in _DEPTH:
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
            size=size,
            fit=args.fit,
            meta=meta,
            progress=not args.no_progress,
            plots=plots,
        )
    if args.protocol == "synthetic":
        from streamvggt.evaluate.synthetic import run_synthetic

        sequences = args.sequences or DEFAULT_SEQUENCES
        return run_synthetic(model, args.output, args.cache, sequences, _num_frames(args), meta=meta, plots=plots)
    if args.protocol == "recon":
        from streamvggt.evaluate.recon import run_recon

        return run_recon(
            args.dataset, args.root, model, args.output, args.cache, args.max_frames, meta=meta, plots=plots
        )
    from streamvggt.evaluate.pose import run_pose

    return run_pose(
        args.dataset,
        args.root,
        model,
        args.output,
        args.cache,
        args.use_ba,
        _num_frames(args),
        DEFAULT_SEED if args.seed is None else args.seed,
        args.max_frames,
        meta=meta,
        size=size,
        plots=plots,
    )


def describe_eval(args: argparse.Namespace, summary: dict[str, float]) -> str:
    """The lines printed after a run: the first averages and where the files are."""
    shown = [(key, value) for key, value in summary.items() if "/" not in key][:_PRINTED_METRICS]
    numbers = ", ".join(f"{key} {_number(value)}" for key, value in shown)
    label = "synthetic" if args.protocol == "synthetic" else f"{args.protocol}-{args.dataset}"
    plots = "" if args.no_plots else ", plots/"
    return f"{label}: {numbers}\nwrote {args.output} ({label}.json, {label}.md{plots})"


def _uses(users: tuple[str, ...], protocol: str, dataset: str | None) -> bool:
    return protocol in users or f"{protocol}/{dataset}" in users


def _label(args: argparse.Namespace) -> str:
    return args.protocol if args.dataset is None else f"{args.protocol} --dataset {args.dataset}"


def _num_frames(args: argparse.Namespace) -> int:
    if args.num_frames is not None:
        return args.num_frames
    return DEFAULT_NUM_FRAMES.get(args.protocol, CO3D_NUM_FRAMES)


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
