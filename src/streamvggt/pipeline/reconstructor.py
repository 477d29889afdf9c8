"""The main job: frames in, a 3D reconstruction out.

:class:`Reconstructor` streams frames through a model session one at a time and yields a
:class:`~streamvggt.results.FrameResult` per frame (camera, depth, point map, the processed image).
:func:`reconstruct` runs it on an input (folder, glob, video, camera, stream URL) and writes the outputs (see
:mod:`streamvggt.io.outputs.writer`).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from streamvggt.geometry import pose_encoding_to_extri_intri
from streamvggt.io.inputs.preprocess import DEFAULT_SIZE, Preprocessor
from streamvggt.io.inputs.sources import Frame, expected_frames, open_source, read_frames
from streamvggt.io.outputs.interchange import ExportOptions, SourceFrame
from streamvggt.io.outputs.previous_outputs import check_source_outside_outputs
from streamvggt.io.outputs.writer import ReconstructionWriter
from streamvggt.model.execution import ExecutionPrecision
from streamvggt.model.predictions import Predictions
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.pipeline.warm_up import warm_up
from streamvggt.results import FrameResult
from streamvggt.runtime.device import select_device
from streamvggt.runtime.precision import resolve_precision
from streamvggt.runtime.regional_compile import regions_compiled
from streamvggt.streaming.cache import parse_policy
from streamvggt.streaming.session import StreamSession
from streamvggt.weights import load_model

# FrameResult lives in streamvggt.results (the writers need it too); importing it from here keeps working.
__all__ = ["FrameResult", "ReconstructionSummary", "Reconstructor", "reconstruct"]

log = logging.getLogger(__name__)


class FrameStream(Protocol):
    """What a :class:`Reconstructor` feeds: a :class:`~streamvggt.streaming.session.StreamSession` of batch
    size 1, or one slot of a batched session. ``step`` takes a frame [1, 3, H, W] in [0, 1]; ``num_frames`` counts
    steps."""

    num_frames: int

    def step(self, frame: torch.Tensor) -> Predictions: ...


class Reconstructor:
    """Streams frames through ``model`` one at a time (a :meth:`StreamVGGT.stream` session); one per stream.

    cache: the session's cache policy ("full", "window:K", "budget:N"); bounded policies bound memory.
    preprocess: "crop" or "pad" (see :class:`streamvggt.io.inputs.preprocess.Preprocessor`); size: its target size.
    query_points: pixels (x, y) [N, 2] of the first processed frame to track through the stream, or a function
    of that frame's size (H, W) returning them (the size is known only once the first frame is preprocessed);
    each result then carries ``tracks``, ``track_vis`` and ``track_conf``.
    session: the stream to feed instead of a new session of ``model`` (without query points), such as one slot of
    a batched session (:mod:`streamvggt.collection`).
    compile: True or "step" runs the session's steps compiled (see :mod:`streamvggt.runtime.compiled_step`; not for
    a given ``session``), "regions" the model's blocks and heads (:mod:`streamvggt.runtime.regional_compile`).
    The model is warmed up at the first frame's size before its first step (see :meth:`warm_up`).
    """

    def __init__(
        self,
        model: StreamVGGT,
        cache: str = "full",
        preprocess: str | Preprocessor = "crop",
        size: int = DEFAULT_SIZE,
        query_points: np.ndarray | Callable[[tuple[int, int]], np.ndarray] | None = None,
        session: FrameStream | None = None,
        compile: bool | str = False,
    ) -> None:
        self.model = model
        self.preprocessor = preprocess if isinstance(preprocess, Preprocessor) else Preprocessor(preprocess, size)
        self.cache = cache
        self.query_points = query_points
        self.compile = compile
        self.session = session if session is not None else StreamSession(model, cache=cache, compile=compile)
        self.device = next(model.parameters()).device
        self.warmed = False

    def warm_up(self, size: tuple[int, int]) -> None:
        """Make the kernels for frames of ``size`` (H, W) in the model's precision (``model.execution``), once, so
        that the first step does not pay for them (bf16 kernels on CPU take seconds to create). CPU fp32 kernels
        cost nothing to make: there a blank frame through the model would cost a whole step for nothing (unless
        regions are compiled: the warm-up frame compiles them)."""
        if self.warmed:
            return
        self.warmed = True
        mode = self.model.execution.resolved
        if mode == "fp32" and self.device.type == "cpu" and not regions_compiled(self.model):
            return
        started = time.perf_counter()
        if warm_up(self.model, *size, device=self.device):
            log.info(
                "warmed up %s kernels for %dx%d frames in %.1f s", mode, size[1], size[0], time.perf_counter() - started
            )

    def step(self, frame: Frame) -> FrameResult:
        """Process the next frame of the stream."""
        prepared = self.preprocessor(frame.image, frame.name)
        image = torch.tensor(prepared.image, device=self.device).permute(2, 0, 1).float().div(255)
        size = prepared.image.shape[:2]
        self.warm_up(size)
        if self.query_points is not None and self.session.num_frames == 0:
            queries = self._queries(size)
            self.session = StreamSession(self.model, cache=self.cache, query_points=queries, compile=self.compile)
        out = self.session.step(image[None])
        # Cameras in float64 on the CPU (MPS has no float64): they go into text files and invert cleanly.
        extrinsic, intrinsic = pose_encoding_to_extri_intri(out.pose_enc[0].cpu().double(), size)
        valid = np.zeros(size, dtype=bool)
        top, left, height, width = prepared.valid
        valid[top : top + height, left : left + width] = True

        def cpu(tensor: torch.Tensor) -> np.ndarray:
            return tensor[0].float().cpu().numpy()

        return FrameResult(
            index=self.session.num_frames - 1,
            name=frame.name,
            source_index=frame.index,
            timestamp=frame.timestamp,
            image=prepared.image,
            valid=valid,
            extrinsic=extrinsic.numpy(),
            intrinsic=intrinsic.numpy(),
            depth=cpu(out.depth)[..., 0],
            depth_conf=cpu(out.depth_conf),
            world_points=cpu(out.world_points),
            world_points_conf=cpu(out.world_points_conf),
            **self._tracks(out),
        )

    def _queries(self, size: tuple[int, int]) -> torch.Tensor:
        """The query points [1, N, 2] float32 on the model's device for a first frame of ``size`` (H, W)."""
        points = self.query_points(size) if callable(self.query_points) else self.query_points
        return torch.as_tensor(np.asarray(points), dtype=torch.float32, device=self.device)[None]

    @staticmethod
    def _tracks(out: Predictions) -> dict[str, np.ndarray]:
        """The tracker's outputs of a step as FrameResult fields; none without query points."""
        if out.track is None or out.track_vis is None:
            return {}
        visibility = out.track_vis[0].float().cpu().numpy()
        confidence = out.track_conf
        return {
            "tracks": out.track[0].cpu().double().numpy(),
            "track_vis": visibility,
            "track_conf": np.ones_like(visibility) if confidence is None else confidence[0].float().cpu().numpy(),
        }

    def run(self, frames: Iterable[Frame]) -> Iterator[FrameResult]:
        """Process ``frames`` in order, yielding each result as soon as it is ready."""
        for frame in frames:
            yield self.step(frame)


@dataclass(frozen=True)
class ReconstructionSummary:
    """What :func:`reconstruct` did."""

    output_dir: Path
    frames: int
    seconds: float  # wall time of the whole call, model loading and writing included
    stream_seconds: float  # time spent reading and processing frames
    points: int  # points in points.ply
    scene_points: int  # points in scene.glb and colmap/ (a uniform sample when points.ply holds more)
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (frame, reason) of unreadable frames
    interrupted: bool = False  # stopped by Ctrl-C; the outputs hold the frames before it
    live: bool = False  # a camera or stream: no end of its own, so Ctrl-C is the normal way to end it
    precision: ExecutionPrecision = field(default_factory=ExecutionPrecision)  # what the model ran in

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.stream_seconds if self.stream_seconds > 0 else float("nan")


def reconstruct(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    model: StreamVGGT | str | os.PathLike | None = None,
    *,
    stride: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    cache: str = "full",
    conf_threshold: float = 50.0,
    device: str | torch.device | None = None,
    precision: str = "auto",
    compile: bool | str = False,
    preprocess: str = "crop",
    size: int = DEFAULT_SIZE,
    points: str = "depth",
    voxel_size: float | None = None,
    depth_png: bool = False,
    pointmaps: bool = False,
    exports: ExportOptions | None = None,
    progress: bool = False,
    on_frame: Callable[[FrameResult], None] | None = None,
    session: FrameStream | None = None,
    on_stream_end: Callable[[], None] | None = None,
) -> ReconstructionSummary:
    """Reconstruct ``source`` into ``output_dir``; returns a summary.

    source: a folder of images (natural order), a glob, an image or video file, a camera index, or a stream URL.
    model: a loaded StreamVGGT, or a checkpoint source for :func:`streamvggt.load_model` (None: the default model),
    loaded on ``device`` (None or "auto": CUDA, else MPS, else CPU) in ``precision`` (auto, fp32, bf16, fp16, int8:
    see :mod:`streamvggt.runtime.precision`; a loaded model runs in its own ``model.execution``). The requested and
    resolved modes go into cameras.json and the summary.
    compile: run the streaming steps compiled (True or "step": :mod:`streamvggt.runtime.compiled_step`; "regions":
    :mod:`streamvggt.runtime.regional_compile`); the model is warmed up at the first frame's size before streaming
    starts (:meth:`Reconstructor.warm_up`).
    stride / fps: keep every stride-th frame, or fps frames per second (default: every image; 1 fps of video).
    Other options: see :class:`Reconstructor` and :class:`streamvggt.io.outputs.writer.ReconstructionWriter`;
    exports: the COLMAP, transforms.json and RGB-D options (:class:`streamvggt.io.outputs.interchange.ExportOptions`).
    progress: show a progress bar (tqdm, on stderr) with frames per second.
    on_frame: called with each frame's result once it is written (e.g. a live viewer's ``add_frame``).
    session: the session to feed (see :class:`Reconstructor`; default: a new one); on_stream_end: called after
    the last frame, before the outputs are written (a slot of a batched session is free for the next input then).

    Inputs and outputs are checked before the model is loaded. Ctrl-C stops the stream: the outputs are written
    for the frames so far (``summary.interrupted``). Raises InputError, OutputError, CheckpointError or ValueError
    with a one-line message; no half-written file stays behind.
    """
    started = time.perf_counter()
    parse_policy(cache)  # reject bad settings before anything slow
    check_source_outside_outputs(str(source), Path(output_dir))
    preprocessor = Preprocessor(preprocess, size)
    if not isinstance(model, StreamVGGT):
        device = select_device(device)
        resolve_precision(device, precision)  # a bad precision fails before the input is read or a folder made
    with (
        open_source(source) as frames_source,
        ReconstructionWriter(
            output_dir, points, conf_threshold, voxel_size, depth_png, pointmaps=pointmaps, exports=exports
        ) as writer,
    ):
        frames = read_frames(frames_source, stride, fps, max_frames)
        first = next(frames)  # the input's problems surface before the model loads
        preprocessor.check(first.image.shape[1], first.image.shape[0], first.name)
        if not isinstance(model, StreamVGGT):
            model = load_model(model, device=device, precision=precision)
        reconstructor = Reconstructor(model, cache, preprocessor, session=session, compile=compile)
        reconstructor.warm_up(preprocessor(first.image, first.name).image.shape[:2])
        total = expected_frames(frames_source, stride, fps, max_frames)
        stream_started = time.perf_counter()
        count, interrupted = _stream(reconstructor, itertools.chain([first], frames), writer, total, progress, on_frame)
        stream_seconds = time.perf_counter() - stream_started
        if on_stream_end is not None:
            on_stream_end()
        metadata = {
            "source": frames_source.description,
            "preprocess": {
                "mode": preprocessor.mode,
                "size": preprocessor.size,
                "content_box": list(preprocessor.content_box),  # top, left, height, width: the image, not padding
            },
            "cache": str(parse_policy(cache)),
            "precision": model.execution.to_json(),
        }
        written = writer.finish(metadata)
    summary = ReconstructionSummary(
        output_dir=Path(output_dir),
        frames=count,
        seconds=time.perf_counter() - started,
        stream_seconds=stream_seconds,
        points=written.points,
        scene_points=written.scene_points,
        files=written.files,
        skipped=list(frames_source.skipped),
        interrupted=interrupted,
        live=frames_source.kind == "stream",
        precision=model.execution,
    )
    log.info("reconstructed %d frames into %s (%d points)", count, output_dir, written.points)
    return summary


def _stream(
    reconstructor: Reconstructor,
    frames: Iterable[Frame],
    writer: ReconstructionWriter,
    total: int | None,
    progress: bool,
    on_frame: Callable[[FrameResult], None] | None = None,
) -> tuple[int, bool]:
    """Feed frames to the writer; returns (frames processed, whether Ctrl-C stopped it)."""
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="frame", disable=not progress, dynamic_ncols=True) as bar:
        try:
            for frame in frames:
                result = reconstructor.step(frame)
                source = None
                if writer.exports.needs_source:  # the trainer exports use the frames at full resolution
                    source = SourceFrame(frame.image, reconstructor.preprocessor.resized_box())
                writer.add(result, source)
                if on_frame is not None:
                    on_frame(result)
                bar.update()
        except KeyboardInterrupt:
            if not writer.cameras:
                raise
            log.warning("interrupted: writing the outputs of the first %d frames", len(writer.cameras))
            return len(writer.cameras), True
    return len(writer.cameras), False
