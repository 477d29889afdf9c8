"""``streamvggt eval``: run one benchmark protocol on a dataset (or on held-out synthetic scenes) and report.

    streamvggt eval {monodepth,video-depth,recon,pose,synthetic} --dataset NAME --root PATH -o OUTDIR [options]

Every protocol streams frames through a model session with the chosen cache policy and writes per-sequence and
averaged results (JSON and a markdown table) and plots into OUTDIR; the averages are printed. This module holds
the checks (all made before the model loads; the options eval shares with reconstruct through
:class:`~streamvggt.pipeline.options.ReconstructOptions`) and the run; the parser is ``streamvggt.cli.eval``.
"""

from __future__ import annotations

import argparse
from typing import Any

from streamvggt.evaluate.options import (
    CO3D_NUM_FRAMES,
    DEFAULT_NUM_FRAMES,
    DEFAULT_SEED,
    DEFAULT_SEQUENCES,
    REFERENCE_PRECISION,
)
from streamvggt.evaluate.report import prepare_output_dir
from streamvggt.extras import require
from streamvggt.io.inputs.preprocess import DEFAULT_SIZE
from streamvggt.pipeline.options import ModelOptions, ReconstructOptions, StreamOptions

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
    device = shared_options(args).check()
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


def _precision_to_check(precision: str) -> str:
    """What the shared checks see: ``reference`` stands for fp32 or auto (decided on the device by
    :func:`eval_precision`), and a value eval does not know is left to :func:`eval_precision`'s message."""
    from streamvggt.runtime.precision import PRECISIONS

    return precision if precision in PRECISIONS else "auto"


def shared_options(args: argparse.Namespace) -> ReconstructOptions:
    """The options eval shares with reconstruct (model, device, precision, cache, size, max frames), checked
    the same way."""
    model = ModelOptions(checkpoint=args.checkpoint, device=args.device, precision=_precision_to_check(args.precision))
    stream = StreamOptions(cache=args.cache, size=args.size or DEFAULT_SIZE, max_frames=args.max_frames)
    return ReconstructOptions(model=model, stream=stream, progress=not args.no_progress)


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
