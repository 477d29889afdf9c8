"""Every option the commands share, declared once, and the mapping from parsed arguments to
:class:`~streamvggt.pipeline.options.ReconstructOptions`.

Defaults come from the option dataclasses, so the command line and the library agree.
"""

from __future__ import annotations

import argparse

from streamvggt.evaluate.options import REFERENCE_PRECISION
from streamvggt.pipeline.options import (
    MAP_DESCRIPTORS,
    MapSettings,
    ModelOptions,
    OutputOptions,
    ReconstructOptions,
    StreamOptions,
    ViewerOptions,
)

INPUT_HELP = (
    "a folder of images (natural order), a glob ('frames/*.png'), an image or video file, a camera index (0) or "
    "a stream URL (rtsp://...)"
)
VIDEO_FPS_HELP = "keep F frames per second of video or stream (default: 1)"
_MODEL, _STREAM, _OUTPUT, _VIEWER = ModelOptions(), StreamOptions(), OutputOptions(), ViewerOptions()


def add_model_options(parser: argparse.ArgumentParser, evaluation: bool = False) -> None:
    """Which model runs where: every command that runs the model. ``evaluation``: eval's precision, whose default
    is the mode the published numbers were made in rather than this machine's fastest."""
    parser.add_argument(
        "--checkpoint",
        metavar="SOURCE",
        help="a .pt/.pth/.safetensors file, a folder, or a Hugging Face repo id (default: the bundled model)",
    )
    parser.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda, cuda:1, mps (default: auto)")
    modes = (
        "auto (the fastest mode accurate on this device, measured once per CPU), fp32, bf16, fp16 (GPU) or int8 (CPU)"
    )
    default = REFERENCE_PRECISION if evaluation else _MODEL.precision
    if evaluation:
        modes = (
            f"{REFERENCE_PRECISION} (the mode the published numbers were made in: bf16 autocast on CUDA, fp16 where "
            f"the GPU has no bf16, fp32 elsewhere), {modes}; recorded in the results"
        )
    parser.add_argument(
        "--precision", default=default, metavar="P", help=f"trunk precision: {modes} (default: {default})"
    )


def add_compile_option(parser: argparse.ArgumentParser) -> None:
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


def add_regions_compile_option(parser: argparse.ArgumentParser) -> None:
    """Compiling regions only: reconstruct-many (a batch's slot resets keep its steps from compiling whole)."""
    parser.add_argument(
        "--compile",
        choices=("regions",),
        default=False,
        help="'regions' compiles the transformer blocks and dense heads once (faster CPU frames for large models)",
    )


def add_cache_option(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """The session's key/value cache policy (reconstruct, view, reconstruct-many, eval)."""
    parser.add_argument(
        "--cache",
        default=_STREAM.cache,
        metavar="POLICY",
        help=help
        or "key/value cache: full (exact), window:K (first + K recent frames) or budget:N (N tokens per layer); "
        f"bounded policies bound memory on long inputs (default: {_STREAM.cache})",
    )


def add_stream_options(parser: argparse.ArgumentParser, fps_help: str = VIDEO_FPS_HELP) -> None:
    """How frames are sampled, prepared and turned into points: reconstruct, view, reconstruct-many."""
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument("--stride", type=int, metavar="N", help="keep every N-th frame (default for images: 1)")
    sampling.add_argument("--fps", type=float, metavar="F", help=fps_help)
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    add_cache_option(parser)
    parser.add_argument(
        "--preprocess",
        choices=("crop", "pad"),
        default=_STREAM.preprocess,
        help="crop: width SIZE, height a multiple of 14, centre-cropped to SIZE; pad: longest side SIZE, padded "
        f"with white to a square (default: {_STREAM.preprocess})",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=_STREAM.size,
        metavar="PX",
        help=f"processing size, a multiple of 14 ({_STREAM.size})",
    )
    parser.add_argument(
        "--conf-threshold",
        type=float,
        default=_OUTPUT.conf_threshold,
        metavar="P",
        help="drop each frame's pixels below the P-th percentile of its confidence, 0-100; the viewer's slider "
        f"starts there (default: {_OUTPUT.conf_threshold:g})",
    )
    parser.add_argument(
        "--points",
        choices=("depth", "pointmap"),
        default=_OUTPUT.points,
        help="depth: depth maps unprojected with the predicted cameras; pointmap: the point head; the viewer can "
        f"switch (default: {_OUTPUT.points})",
    )


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """Extra files per reconstruction: reconstruct and reconstruct-many."""
    parser.add_argument("--voxel-size", type=float, metavar="V", help="merge points into voxels of V (model units)")
    parser.add_argument("--depth-png", action="store_true", help="also write a colour PNG of each depth map")
    parser.add_argument(
        "--pointmaps",
        action="store_true",
        help="also write each frame's point map (pointmap/), so that `streamvggt view OUTDIR` can show that source",
    )


def add_export_options(parser: argparse.ArgumentParser) -> None:
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
        "--colmap-points",
        type=_point_count,
        metavar="N|all",
        # The default is ExportOptions' COLMAP_POINTS, named here: importing the writers would slow down --help.
        help="points in the COLMAP model, a uniform sample of points.ply; 'all' keeps every point (several GB for "
        "long runs at full size) (default: 200000)",
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


def _point_count(text: str) -> int | str:
    """--colmap-points: a positive count, or "all"."""
    if text == "all":
        return text
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of points or 'all', got '{text}'") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 point (or 'all'), got {count}")
    return count


def _point_limit(value: int | str) -> int | None:
    return None if value == "all" else int(value)  # None: ExportOptions keeps every point


def add_map_options(parser: argparse.ArgumentParser, reanchor: bool = True) -> None:
    """The long-video map (docs/long_videos.md): reconstruct, view, reconstruct-many (``reanchor``: whether the
    command can restart its stream)."""
    group = parser.add_argument_group("long videos: loop closure (docs/long_videos.md)")
    group.add_argument(
        "--loop-closure",
        action="store_true",
        help="keep a keyframe map beside the stream, recognise revisits and correct the drift: every output is "
        "written with the corrected cameras and scaled depth, loops.json lists the loops (needs streamvggt[mapping])",
    )
    if reanchor:
        group.add_argument(
            "--reanchor-every",
            type=int,
            metavar="N",
            help="with --loop-closure: restart the stream every N frames with the last keyframes replayed, aligned to "
            "the map (very long inputs, far from the first frame; default: never)",
        )
        group.add_argument(
            "--reanchor-replay",
            type=int,
            metavar="K",
            help="keyframes replayed into a restarted stream (default: 3)",
        )
    group.add_argument(
        "--map-descriptor",
        choices=MAP_DESCRIPTORS,
        default=MapSettings.map_descriptor,
        help="revisit descriptor: the model's patch tokens, an image thumbnail, or auto (tokens where the stream "
        f"gives them) (default: {MapSettings.map_descriptor})",
    )


def add_viewer_options(parser: argparse.ArgumentParser) -> None:
    """The browser viewer's server: view, and reconstruct --view."""
    parser.add_argument(
        "--host",
        default=_VIEWER.host,
        help=f"viewer address (default: {_VIEWER.host}, this machine only; 0.0.0.0 opens it to the network)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=_VIEWER.port,
        metavar="P",
        help=f"viewer port ({_VIEWER.port}; the next free one if taken; 0: any)",
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


def add_resume_options(parser: argparse.ArgumentParser, resume: bool = True) -> None:
    """Saved run state: reconstruct (--resume and --state-every) and reconstruct-many (--state-every: it resumes
    an interrupted input by itself)."""
    group = parser.add_argument_group("interruption")
    if resume:
        group.add_argument(
            "--resume",
            action="store_true",
            help="continue the interrupted run saved in OUTDIR (same input, checkpoint, precision and options); "
            "a finished run is left as it is",
        )
    group.add_argument(
        "--state-every",
        type=int,
        metavar="N",
        help="save the run's state every N frames so that --resume can continue after a kill (default: about "
        "every minute of work; 0: never)",
    )


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Terminal output: every command that runs the model."""
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details; tracebacks for bugs")


def viewer_options_given(args: argparse.Namespace) -> list[str]:
    """The viewer flags given with values other than their defaults (reconstruct allows them only with --view)."""
    return [
        flag
        for flag, value, default in (
            ("--host", args.host, _VIEWER.host),
            ("--port", args.port, _VIEWER.port),
            ("--exit-when-done", args.exit_when_done, False),
            ("--allow-remote-export", args.allow_remote_export, False),
        )
        if value != default
    ]


def depth_scale_without_rgbd(args: argparse.Namespace) -> str | None:
    """The usage error of --depth-scale given without --rgbd (it would do nothing), or None."""
    if args.depth_scale is not None and not args.rgbd:
        return "--depth-scale applies only with --rgbd (it scales the RGB-D depth and trajectory)"
    return None


def reconstruct_options(args: argparse.Namespace) -> ReconstructOptions:
    """The :class:`ReconstructOptions` of parsed arguments: the model and stream options of every command that
    streams, the output and export options where the command has them, the viewer's where it has them."""
    from streamvggt.io.outputs.interchange import ExportOptions  # numpy and the writers: not for --help

    model = ModelOptions(checkpoint=args.checkpoint, device=args.device, precision=args.precision, compile=args.compile)
    stream = StreamOptions(
        cache=args.cache,
        preprocess=args.preprocess,
        size=args.size,
        stride=args.stride,
        fps=args.fps,
        max_frames=args.max_frames,
    )
    output = OutputOptions(points=args.points, conf_threshold=args.conf_threshold)
    if hasattr(args, "voxel_size"):
        exports = ExportOptions(
            colmap_format=args.colmap_format,
            colmap_images=args.colmap_images,
            shared_camera=args.shared_camera,
            transforms_depth=args.transforms_depth,
            rgbd=args.rgbd,
            depth_scale=1.0 if args.depth_scale is None else args.depth_scale,
            **({} if args.colmap_points is None else {"colmap_points": _point_limit(args.colmap_points)}),
        )
        output = OutputOptions(
            points=args.points,
            conf_threshold=args.conf_threshold,
            voxel_size=args.voxel_size,
            depth_png=args.depth_png,
            pointmaps=args.pointmaps,
            exports=exports,
        )
    viewer = _VIEWER
    if hasattr(args, "host"):
        viewer = ViewerOptions(
            host=args.host,
            port=args.port,
            wait=not args.exit_when_done,
            allow_remote_export=args.allow_remote_export,
            export_dir=getattr(args, "export_dir", None),
        )
    map_settings = MapSettings()
    if hasattr(args, "loop_closure"):
        map_settings = MapSettings(
            loop_closure=args.loop_closure,
            reanchor_every=getattr(args, "reanchor_every", None),
            reanchor_replay=getattr(args, "reanchor_replay", None),
            map_descriptor=args.map_descriptor,
        )
    return ReconstructOptions(
        model=model,
        stream=stream,
        output=output,
        viewer=viewer,
        map=map_settings,
        progress=not args.no_progress,
        resume=getattr(args, "resume", False),
        state_every=getattr(args, "state_every", None),
    )
