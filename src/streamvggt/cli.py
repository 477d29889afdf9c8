"""The ``streamvggt`` command: parses arguments, calls the library, prints a summary or a one-line error.

Exit codes: 0 success, 1 a fatal error (the message says what to do), 2 bad arguments (an option that needs
another included), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import logging
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from streamvggt import __version__
from streamvggt.evaluate.command import add_eval_parser
from streamvggt.extras import MissingExtraError, require
from streamvggt.io.inputs.preprocess import DEFAULT_SIZE

if TYPE_CHECKING:
    from streamvggt.pipeline.reconstructor import ReconstructionSummary

log = logging.getLogger("streamvggt")

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
T = TypeVar("T")
# Commands that own their arguments: the module whose main(argv) runs each (imported only when it runs).
DELEGATED = {"train": "streamvggt.train.command", "data": "streamvggt.train.data.command"}
INPUT_HELP = (
    "a folder of images (natural order), a glob ('frames/*.png'), an image or video file, a camera index (0) or "
    "a stream URL (rtsp://...)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamvggt", description="Streaming 4D reconstruction with StreamVGGT.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rec = commands.add_parser(
        "reconstruct",
        help="reconstruct a folder, video, camera or stream into 3D outputs",
        description="Stream frames through the model one at a time and write points.ply, scene.glb, cameras.json, "
        "trajectory.tum, a COLMAP model, transforms.json and per-frame depth into OUTDIR.",
    )
    rec.add_argument("input", metavar="INPUT", help=INPUT_HELP)
    rec.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR", help="output folder (created)")
    _add_model_options(rec)
    _add_stream_options(rec)
    _add_output_options(rec)
    _add_export_options(rec)
    _add_compile_option(rec)
    rec.add_argument("--view", action="store_true", help="watch the reconstruction grow in a browser viewer")
    _add_viewer_options(rec)
    _add_run_options(rec)

    many = commands.add_parser(
        "reconstruct-many",
        help="reconstruct every input of a manifest, B at a time, resumable, sharded over processes",
        description="Reconstruct each input of MANIFEST (a text file, one input per line with an optional "
        "tab-separated output name, or a folder of videos and image folders) into OUTROOT/NAME, exactly as "
        "reconstruct would; complete inputs are skipped, failed ones are listed in OUTROOT/summary.json. Under "
        "torchrun or accelerate launch each process takes its share (docs/collections.md).",
    )
    many.add_argument("manifest", metavar="MANIFEST", help="a manifest file or a folder of inputs")
    many.add_argument("-o", "--output", required=True, type=Path, metavar="OUTROOT", help="output root (created)")
    many.add_argument(
        "--batch", type=int, default=1, metavar="B", help="inputs streamed together through one session (1)"
    )
    many.add_argument(
        "--shard", metavar="I/N", help="take share I of N of the manifest (a SLURM array task: its id and count)"
    )
    many.add_argument("--merge", action="store_true", help="only merge the shards' records into OUTROOT/summary.json")
    _add_model_options(many)
    _add_stream_options(many, fps_help="keep F frames per second of each video (default: 1); image folders ignore it")
    _add_output_options(many)
    _add_export_options(many)
    many.add_argument(
        "--compile",
        choices=("regions",),
        default=False,
        help="'regions' compiles the transformer blocks and dense heads once (faster CPU frames for large models)",
    )
    _add_run_options(many)

    demo = commands.add_parser(
        "demo",
        help="reconstruct a held-out synthetic sequence with the bundled model and score it",
        description="Render a procedural scene the bundled model never saw, stream it through reconstruct, and "
        "write every reconstruct output plus demo.png and metrics.json (the model beside trivial baselines).",
    )
    demo.add_argument("-o", "--output", type=Path, default=Path("demo_output"), metavar="OUTDIR", help="(demo_output)")
    _add_model_options(demo)
    demo.add_argument("--frames", type=int, default=16, metavar="N", help="frames in the sequence (16)")
    _add_run_options(demo)

    add_eval_parser(commands)

    view = commands.add_parser(
        "view",
        help="watch an input's reconstruction in the browser, or reopen a finished one",
        description="Serve a web page (viser) showing each frame's points, camera and the trajectory as frames "
        "stream, with a frame slider to scrub through time; INPUT may also be an OUTDIR of reconstruct, reopened "
        "from its files without the model. Runs until Ctrl-C.",
    )
    view.add_argument("input", metavar="INPUT", help=f"{INPUT_HELP}; or an output folder of reconstruct")
    _add_model_options(view)
    _add_stream_options(view)
    _add_compile_option(view)
    view.add_argument("--export-dir", type=Path, metavar="DIR", help="where Export PLY writes (default: OUTDIR or .)")
    _add_viewer_options(view)
    _add_run_options(view)

    commands.add_parser(
        "train",
        add_help=False,
        help="train or fine-tune a model (see streamvggt train --help)",
        description="Train StreamVGGT; every argument goes to the training command.",
    )
    commands.add_parser(
        "data",
        add_help=False,
        help="check or import training datasets (see streamvggt data --help)",
        description="Tools for training dataset folders; every argument goes to the data command.",
    )
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """Which model runs where: reconstruct, view and demo."""
    parser.add_argument(
        "--checkpoint",
        metavar="SOURCE",
        help="a .pt/.pth/.safetensors file, a folder, or a Hugging Face repo id (default: the bundled model)",
    )
    parser.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    parser.add_argument(
        "--precision",
        default="auto",
        metavar="P",
        help="trunk precision: auto (the fastest mode accurate on this device, measured once per CPU), fp32, bf16, "
        "fp16 (GPU) or int8 (CPU) (default: auto)",
    )


def _add_compile_option(parser: argparse.ArgumentParser) -> None:
    """Compiling the streaming step: reconstruct and view (one stream per run)."""
    parser.add_argument(
        "--compile",
        nargs="?",
        const="step",
        default=False,
        choices=("step", "regions"),
        help="torch.compile: 'step' (the default with no value) compiles each streaming step whole, which pays off on "
        "long inputs with a bounded --cache (compiled once, when full; the full cache recompiles as it grows); "
        "'regions' compiles the transformer blocks and dense heads once for any --cache (faster CPU frames for large "
        "models)",
    )


def _add_stream_options(
    parser: argparse.ArgumentParser, fps_help: str = "keep F frames per second of video or stream (default: 1)"
) -> None:
    """How frames are sampled, prepared and turned into points: reconstruct and view (fps_help: what --fps does)."""
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument("--stride", type=int, metavar="N", help="keep every N-th frame (default for images: 1)")
    sampling.add_argument("--fps", type=float, metavar="F", help=fps_help)
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument(
        "--cache",
        default="full",
        metavar="POLICY",
        help="key/value cache: full (exact), window:K (first + K recent frames) or budget:N (N tokens per layer); "
        "bounded policies bound memory on long inputs (default: full)",
    )
    parser.add_argument(
        "--preprocess",
        choices=("crop", "pad"),
        default="crop",
        help="crop: width SIZE, height a multiple of 14, centre-cropped to SIZE; pad: longest side SIZE, padded "
        "with white to a square (default: crop)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=DEFAULT_SIZE,
        metavar="PX",
        help=f"processing size, a multiple of 14 ({DEFAULT_SIZE})",
    )
    parser.add_argument(
        "--conf-threshold",
        type=float,
        default=50.0,
        metavar="P",
        help="drop each frame's pixels below the P-th percentile of its confidence, 0-100; the viewer's slider "
        "starts there (default: 50)",
    )
    parser.add_argument(
        "--points",
        choices=("depth", "pointmap"),
        default="depth",
        help="depth: depth maps unprojected with the predicted cameras; pointmap: the point head; the viewer can "
        "switch (default: depth)",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    """Extra files per reconstruction: reconstruct and reconstruct-many."""
    parser.add_argument("--voxel-size", type=float, metavar="V", help="merge points into voxels of V (model units)")
    parser.add_argument("--depth-png", action="store_true", help="also write a colour PNG of each depth map")
    parser.add_argument(
        "--pointmaps",
        action="store_true",
        help="also write each frame's point map (pointmap/), so that `streamvggt view OUTDIR` can show that source",
    )


def _add_export_options(parser: argparse.ArgumentParser) -> None:
    """What the next tool reads: the COLMAP model, transforms.json and the RGB-D sequence (reconstruct)."""
    group = parser.add_argument_group("exports for trainers, COLMAP and RGB-D tools (see README: Next steps)")
    group.add_argument(
        "--colmap-format", choices=("text", "bin"), default="text", help="colmap/ model files (default: text)"
    )
    group.add_argument(
        "--colmap-images",
        choices=("processed", "original"),
        default="processed",
        help="images colmap/ and transforms.json name: processed (images/, what the model saw) or original (the "
        "source frames at full resolution, written to images_original/, intrinsics rescaled) (default: processed)",
    )
    group.add_argument(
        "--shared-camera", action="store_true", help="one COLMAP camera with the mean intrinsics of all frames"
    )
    group.add_argument(
        "--transforms-depth",
        action="store_true",
        help="16-bit depth PNGs (model units x 1000) named by transforms.json (depth_png16/)",
    )
    group.add_argument(
        "--rgbd", action="store_true", help="a TUM RGB-D sequence (rgbd/: rgb/, depth/ x 5000, lists, trajectory)"
    )
    group.add_argument(
        "--depth-scale",
        type=float,
        metavar="S",
        help="metres per model unit in the --rgbd depth and trajectory; only with --rgbd (default: 1)",
    )


def _add_viewer_options(parser: argparse.ArgumentParser) -> None:
    """The browser viewer's server: view, and reconstruct --view."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="viewer address (default: 127.0.0.1, this machine only; 0.0.0.0 opens it to the network)",
    )
    parser.add_argument(
        "--port", type=int, default=8080, metavar="P", help="viewer port (8080; the next free one if taken; 0: any)"
    )
    parser.add_argument(
        "--exit-when-done", action="store_true", help="stop the viewer when the stream ends (default: at Ctrl-C)"
    )
    parser.add_argument(
        "--allow-remote-export",
        action="store_true",
        help="keep the viewer's Export PLY button on with a --host beyond this machine (default: off there, as "
        "anyone who opens the page could write files here)",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Terminal output: every command that runs the model."""
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details; tracebacks for bugs")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] and argv[0] in DELEGATED:
            command = importlib.import_module(DELEGATED[argv[0]])
            return command.main(argv[1:])
        args = build_parser().parse_args(argv)
        unused = _unused_option(args)
        if unused:
            print(f"streamvggt: error: {unused}", file=sys.stderr)
            return EXIT_USAGE
        return _run(args)
    except MissingExtraError as error:
        return _fail(str(error))


def _unused_option(args: argparse.Namespace) -> str | None:
    """Why an option given to reconstruct or reconstruct-many would be ignored (it needs another option), or None:
    an option that does nothing must say so rather than run without it."""
    if args.command not in ("reconstruct", "reconstruct-many"):
        return None
    if args.depth_scale is not None and not args.rgbd:
        return f"{args.command}: --depth-scale applies only with --rgbd (it scales the RGB-D depth and trajectory)"
    if args.command == "reconstruct" and not args.view:
        given = [
            flag
            for flag, value, default in (
                ("--host", args.host, "127.0.0.1"),
                ("--port", args.port, 8080),
                ("--exit-when-done", args.exit_when_done, False),
                ("--allow-remote-export", args.allow_remote_export, False),
            )
            if value != default
        ]
        if given:
            return f"reconstruct: {given[0]} applies only with --view (it configures the browser viewer)"
    return None


def _run(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        if args.command == "eval":
            return _eval(args)
        if args.command == "view":
            return _view(args)
        if args.command == "reconstruct-many":
            return _reconstruct_many(args)
        return _demo(args) if args.command == "demo" else _reconstruct(args)
    finally:
        log.removeHandler(handler)


def _reconstruct_options(args: argparse.Namespace) -> dict:
    """reconstruct's options from the stream, output and export arguments (reconstruct, reconstruct-many)."""
    from streamvggt.io.outputs.interchange import ExportOptions

    return {
        "stride": args.stride,
        "fps": args.fps,
        "max_frames": args.max_frames,
        "cache": args.cache,
        "precision": args.precision,
        "conf_threshold": args.conf_threshold,
        "preprocess": args.preprocess,
        "size": args.size,
        "points": args.points,
        "voxel_size": args.voxel_size,
        "depth_png": args.depth_png,
        "pointmaps": args.pointmaps,
        "exports": ExportOptions(
            colmap_format=args.colmap_format,
            colmap_images=args.colmap_images,
            shared_camera=args.shared_camera,
            transforms_depth=args.transforms_depth,
            rgbd=args.rgbd,
            depth_scale=1.0 if args.depth_scale is None else args.depth_scale,
        ),
    }


def _reconstruct(args: argparse.Namespace) -> int:
    from streamvggt.pipeline.reconstructor import reconstruct

    def run() -> ReconstructionSummary:
        options = {
            **_reconstruct_options(args),
            "device": args.device,
            "compile": args.compile,
            "progress": not args.no_progress,
        }
        if not args.view:
            return reconstruct(args.input, args.output, args.checkpoint, **options)
        from streamvggt.viewer import finish_stream, open_viewer

        announce = functools.partial(print, flush=True)
        viewer_options = {
            "percentile": args.conf_threshold,
            "points": args.points,
            "allow_remote_export": args.allow_remote_export,
            "announce": announce,
        }
        with open_viewer(args.host, args.port, export_dir=args.output, **viewer_options) as viewer:
            summary = reconstruct(args.input, args.output, args.checkpoint, on_frame=viewer.add_frame, **options)
            announce(_describe(summary))
            finish_stream(viewer, summary.interrupted, not args.exit_when_done, announce)
        return summary

    summaries = []

    def run_and_keep() -> ReconstructionSummary:
        summaries.append(run())
        return summaries[0]

    code = _guarded(args, run_and_keep, _describe if not args.view else lambda _: "viewer stopped")
    if code == 0 and summaries[0].interrupted and not summaries[0].live:
        # A folder or video stopped early is not a finished run, though its outputs stay; a camera ends this way.
        frames = summaries[0].frames
        print(f"streamvggt: interrupted after {frames} frames (the outputs hold them)", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _reconstruct_many(args: argparse.Namespace) -> int:
    from streamvggt.collection.command import describe, run_collection_command, succeeded

    results = []

    def run() -> object:
        results.append(run_collection_command(args, {**_reconstruct_options(args), "compile": args.compile}))
        return results[0]

    code = _guarded(args, run, describe)
    return EXIT_ERROR if code == 0 and not succeeded(results[0]) else code


def _view(args: argparse.Namespace) -> int:
    from streamvggt.viewer import ViewSummary, view

    def run() -> ViewSummary:
        return view(
            args.input,
            args.checkpoint,
            host=args.host,
            port=args.port,
            cache=args.cache,
            device=args.device,
            precision=args.precision,
            compile=args.compile,
            preprocess=args.preprocess,
            size=args.size,
            stride=args.stride,
            fps=args.fps,
            max_frames=args.max_frames,
            percentile=args.conf_threshold,
            points=args.points,
            export_dir=args.export_dir,
            allow_remote_export=args.allow_remote_export,
            progress=not args.no_progress,
            wait=not args.exit_when_done,
            announce=functools.partial(print, flush=True),
        )

    def describe(summary: ViewSummary) -> str:
        how = "reopened from its files" if summary.reopened else "streamed"
        if summary.interrupted:
            how += " (interrupted)"
        lines = [f"{summary.frames} frames {how}; viewer stopped"]
        if summary.skipped:
            lines.append(f"skipped {len(summary.skipped)} unreadable frames, the first: {summary.skipped[0][0]}")
        return "\n".join(lines)

    return _guarded(args, run, describe)


def _eval(args: argparse.Namespace) -> int:
    from streamvggt.evaluate.command import describe_eval, run_eval

    return _guarded(args, lambda: run_eval(args), functools.partial(describe_eval, args))


def _demo(args: argparse.Namespace) -> int:
    require("matplotlib", "eval", purpose="the demo")  # for demo.png: say so before the run, not after it
    from streamvggt.demo import run_demo

    if args.frames < 2:
        return _fail("--frames must be at least 2 (camera errors compare pairs of frames)")

    def run() -> tuple[ReconstructionSummary, dict]:
        return run_demo(
            args.output, args.checkpoint, args.frames, args.device, args.precision, progress=not args.no_progress
        )

    def describe(result: tuple[ReconstructionSummary, dict]) -> str:
        summary, metrics = result
        model, flat, still = metrics["model"], metrics["baseline_constant_depth"], metrics["baseline_identity_pose"]
        return (
            f"{_describe(summary)}\n"
            f"depth Abs Rel {model['depth_abs_rel']:.3f} (constant depth: {flat['depth_abs_rel']:.3f}); "
            f"RRA {model['rra_deg']:.2f} deg, RTA {model['rta_deg']:.2f} deg (identity: {still['rra_deg']:.2f}, "
            f"{still['rta_deg']:.2f}); AUC@30 {model['auc_30']:.3f}\n"
            f"figure: {summary.output_dir / 'demo.png'}, metrics: {summary.output_dir / 'metrics.json'}"
        )

    return _guarded(args, run, describe)


def _guarded(args: argparse.Namespace, run: Callable[[], T], describe: Callable[[T], str]) -> int:
    """Run ``run()`` and print ``describe(result)``; every failure becomes one line and an exit code."""
    import torch
    from tqdm.contrib.logging import logging_redirect_tqdm

    from streamvggt.io.errors import InputError, OutputError
    from streamvggt.weights import CheckpointError

    try:
        redirect = logging_redirect_tqdm(loggers=[log]) if not args.no_progress else contextlib.nullcontext()
        with redirect:
            result = run()
    except (InputError, OutputError, CheckpointError, ValueError, MissingExtraError) as error:
        return _fail(str(error))
    except torch.OutOfMemoryError:
        return _fail(
            "out of memory: bound the cache (--cache window:16 or budget:N), lower --size or --max-frames, "
            "or use --device cpu"
        )
    except KeyboardInterrupt:
        print("streamvggt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug: one line for the user, the traceback with --verbose
        log.debug("unexpected error", exc_info=True)
        hint = "" if args.verbose else " (run with --verbose for the traceback)"
        return _fail(f"unexpected {type(error).__name__}: {_first_line(str(error))}{hint}")
    print(describe(result))
    return 0


def _fail(message: str) -> int:
    print(f"streamvggt: error: {_first_line(message)}", file=sys.stderr)
    return EXIT_ERROR


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "unknown error"


def _describe(summary: ReconstructionSummary) -> str:
    """The end-of-run summary: frames, time, rate, precision, points, files."""
    lines = [
        f"{summary.frames} frames in {summary.seconds:.1f} s ({summary.frames_per_second:.2f} frames/s streaming, "
        f"precision {summary.precision.describe()}), {summary.points:,} points"
    ]
    if summary.scene_points < summary.points:
        lines.append(f"scene.glb and colmap/ hold a uniform sample of {summary.scene_points:,} points")
    if summary.interrupted:
        lines.append("interrupted: the outputs hold the frames before Ctrl-C")
    if summary.skipped:
        name, reason = summary.skipped[0]
        more = f" and {len(summary.skipped) - 1} more" if len(summary.skipped) > 1 else ""
        lines.append(f"skipped {len(summary.skipped)} unreadable: {name} ({reason}){more}")
    top = Counter()
    for path in summary.files:
        relative = path.relative_to(summary.output_dir)
        top[relative.parts[0] + ("/" if len(relative.parts) > 1 else "")] += 1
    listed = ", ".join(name if name[-1] != "/" else f"{name} ({count} files)" for name, count in top.items())
    lines.append(f"wrote {summary.output_dir}: {listed}")
    return "\n".join(lines)


class _Formatter(logging.Formatter):
    """``warning: message``, the way command-line tools report."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text
