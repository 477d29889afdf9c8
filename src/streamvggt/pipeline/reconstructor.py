"""The main job: frames in, a 3D reconstruction out.

:class:`Reconstructor` streams frames through a model session one at a time and yields a
:class:`~streamvggt.results.FrameResult` per frame (camera, depth, point map, the processed image).
:func:`reconstruct` runs it on an input (folder, glob, video, camera, stream URL) and writes the outputs (see
:mod:`streamvggt.io.outputs.writer`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from streamvggt.geometry import pose_encoding_to_extri_intri, relative_to_first_camera, transform_points
from streamvggt.io.inputs.preprocess import DEFAULT_SIZE, Preprocessor
from streamvggt.io.inputs.sources import Frame, ReadPosition
from streamvggt.io.outputs.previous_outputs import check_source_outside_outputs
from streamvggt.io.outputs.writer import FrameCorrections, ReconstructionWriter, WriterState
from streamvggt.io.run_state import RunStateStore, SavedState, StateError, estimate_state_size
from streamvggt.model.execution import ExecutionPrecision
from streamvggt.model.predictions import Predictions
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.pipeline.loop_closure import MapFollower, build_map
from streamvggt.pipeline.options import ReconstructOptions
from streamvggt.pipeline.resume import (
    SaveRunState,
    check_precision,
    load_resume_state,
    precision_of,
    run_fingerprint,
)
from streamvggt.pipeline.run import (
    FrameCallback,
    FrameConsumer,
    OpenedInput,
    WriteFrames,
    open_input,
    resumed_frames,
    run_frames,
)
from streamvggt.pipeline.warm_up import warm_up
from streamvggt.results import FrameResult
from streamvggt.runtime.regional_compile import regions_compiled
from streamvggt.streaming.cache import parse_policy
from streamvggt.streaming.session import StreamSession
from streamvggt.weights import load_model

# FrameResult lives in streamvggt.results (the writers need it too); importing it from here keeps working.
__all__ = ["FrameResult", "ReconstructOptions", "ReconstructionSummary", "Reconstructor", "map_follower", "reconstruct"]

log = logging.getLogger(__name__)

LARGE_STATE = 1 << 30  # a full cache's saved state larger than this is announced as a warning


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
        # Frame 0's camera in the model's own world (close to, not exactly, frame 0's camera): every result is
        # re-expressed relative to it, so the world is exactly the first camera. One per stream, as the session.
        self.first_extrinsic: torch.Tensor | None = None
        self._index_offset = 0  # stream index of the session's first frame, after a restart (re-anchoring)

    @classmethod
    def for_input(
        cls,
        model: StreamVGGT | str | os.PathLike | None,
        options: ReconstructOptions,
        opened: OpenedInput,
        device: torch.device | None,
        session: FrameStream | None = None,
    ) -> Reconstructor:
        """A reconstructor for an opened input, warmed up at its first frame's size. ``model``: a loaded
        StreamVGGT, or a checkpoint source (None: ``options.model.checkpoint``) loaded now on ``device`` (from
        :meth:`ReconstructOptions.check`) in the options' precision."""
        if not isinstance(model, StreamVGGT):
            checkpoint = model if model is not None else options.model.checkpoint
            model = load_model(checkpoint, device=device, precision=options.model.precision)
        stream = options.stream
        reconstructor = cls(
            model,
            stream.cache,
            opened.preprocessor,
            query_points=stream.query_points,
            session=session,
            compile=options.model.compile,
        )
        reconstructor.warm_up(opened.first_size)
        return reconstructor

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
        valid = np.zeros(prepared.image.shape[:2], dtype=bool)
        top, left, height, width = prepared.valid
        valid[top : top + height, left : left + width] = True
        return self._step_image(prepared.image, valid, frame)

    def restart(self, images: Sequence[np.ndarray]) -> list[FrameResult]:
        """Re-anchor the stream: a fresh session (same cache, no query points) fed ``images`` first, processed
        frames [H, W, 3] uint8 such as a map's replayed keyframes; returns their results, in the new session's
        world. Frames stepped afterwards keep their stream indices. Not for a given ``session`` (a slot of a
        batched session cannot restart alone) or with query points (their tracks start at the first frame)."""
        if self.query_points is not None:
            raise ValueError("a stream with query points cannot restart: its tracks start at the first frame")
        next_index = self._index_offset + self.session.num_frames
        self.session = StreamSession(self.model, cache=self.cache, compile=self.compile)
        self._index_offset = next_index - len(images)  # replayed results get indices before the next frame's
        results = []
        for k, image in enumerate(images):
            replay = Frame(image=image, name=f"replay-{k}", index=-1, timestamp=None)
            results.append(self._step_image(image, np.ones(image.shape[:2], dtype=bool), replay))
        return results

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(meta, tensors) to continue this stream in another process (a saved run state): the session's state
        and the first camera every result is expressed relative to. Not for a session that cannot save its state
        (``resumable`` False)."""
        if not getattr(self.session, "resumable", False):
            raise ValueError("this stream's session cannot save its state")
        meta, tensors = self.session.state_dict()
        first = None if self.first_extrinsic is None else self.first_extrinsic.tolist()
        return {"session": meta, "first_extrinsic": first, "index_offset": self._index_offset}, tensors

    def load_state_dict(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Continue from a :meth:`state_dict`: the next frames give the results the saved stream would have."""
        session_meta = meta["session"]
        if self.query_points is not None and session_meta["num_frames"] > 0:
            queries = tensors["query_points"].to(self.device)  # fixed at the first frame, as step would have
            self.session = StreamSession(self.model, cache=self.cache, query_points=queries, compile=self.compile)
        elif not getattr(self.session, "resumable", False):
            raise ValueError("this stream's session cannot be restored")
        self.session.load_state_dict(session_meta, {k: t.to(self.device) for k, t in tensors.items()})
        first = meta["first_extrinsic"]
        self.first_extrinsic = None if first is None else torch.tensor(first, dtype=torch.float64)
        self._index_offset = int(meta["index_offset"])

    def patch_tokens(self) -> torch.Tensor | None:
        """The last step's patch tokens [P, 2C] from the earliest layer the heads keep (None when the session does
        not expose them). The earliest kept layer: later layers mix in more of the stream's context through global
        attention, and a place descriptor should depend on the view, not on what the stream saw before it."""
        tokens = getattr(self.session, "last_tokens", None)
        if not tokens:
            return None
        return tokens[min(tokens)][0, -1, self.model.patch_start_idx :]

    def _step_image(self, prepared_image: np.ndarray, valid: np.ndarray, frame: Frame) -> FrameResult:
        """Step a processed frame [H, W, 3] uint8 whose content lies in ``valid`` [H, W]."""
        image = torch.tensor(prepared_image, device=self.device).permute(2, 0, 1).float().div(255)
        size = prepared_image.shape[:2]
        self.warm_up(size)
        if self.query_points is not None and self.session.num_frames == 0:
            queries = self._queries(size)
            self.session = StreamSession(self.model, cache=self.cache, query_points=queries, compile=self.compile)
        out = self.session.step(image[None])
        # Cameras in float64 on the CPU (MPS has no float64): they go into text files and invert cleanly.
        extrinsic, intrinsic = pose_encoding_to_extri_intri(out.pose_enc[0].cpu().double(), size)
        if self.session.num_frames == 1 or self.first_extrinsic is None:
            self.first_extrinsic = extrinsic
        world_points = transform_points(out.world_points[0].cpu().double(), self.first_extrinsic)
        extrinsic = relative_to_first_camera(extrinsic, self.first_extrinsic)

        def cpu(tensor: torch.Tensor) -> np.ndarray:
            return tensor[0].float().cpu().numpy()

        return FrameResult(
            index=self._index_offset + self.session.num_frames - 1,
            name=frame.name,
            source_index=frame.index,
            timestamp=frame.timestamp,
            image=prepared_image,
            valid=valid,
            extrinsic=extrinsic.numpy(),
            intrinsic=intrinsic.numpy(),
            depth=cpu(out.depth)[..., 0],
            depth_conf=cpu(out.depth_conf),
            world_points=world_points.float().numpy(),
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
    resumed_from: int | None = None  # --resume: the frames an interrupted run had saved (None: not resumed)
    already_finished: bool = False  # --resume of a run that had finished: nothing was done
    state_saves: int = 0  # run states saved (see streamvggt.pipeline.resume)
    state_seconds: float = 0.0  # time spent saving them, of ``stream_seconds``

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.stream_seconds if self.stream_seconds > 0 else float("nan")


def reconstruct(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    model: StreamVGGT | str | os.PathLike | None = None,
    *,
    options: ReconstructOptions | None = None,
    on_frame: Callable[[FrameResult], None] | None = None,
    session: FrameStream | None = None,
    on_stream_end: Callable[[], None] | None = None,
    consumers: Sequence[FrameConsumer] = (),
    on_correction: Callable[[FrameCorrections], None] | None = None,
    **keywords: Any,
) -> ReconstructionSummary:
    """Reconstruct ``source`` into ``output_dir``; returns a summary.

    source: a folder of images (natural order), a glob, an image or video file, a camera index, or a stream URL.
    model: a loaded StreamVGGT, or a checkpoint source for :func:`streamvggt.load_model` (None: the default model),
    loaded on ``device`` (None or "auto": CUDA, else MPS, else CPU) in ``precision`` (auto, fp32, bf16, fp16, int8:
    see :mod:`streamvggt.runtime.precision`; a loaded model runs in its own ``model.execution``). The requested and
    resolved modes go into cameras.json and the summary.
    options: a :class:`~streamvggt.pipeline.options.ReconstructOptions`, or the same as keywords: stride, fps,
    max_frames, cache, preprocess, size, query_points (the stream); device, precision, compile (the model); points,
    conf_threshold, voxel_size, depth_png, pointmaps, exports (the outputs); progress (a tqdm bar on stderr).
    compile: run the streaming steps compiled (True or "step": :mod:`streamvggt.runtime.compiled_step`; "regions":
    :mod:`streamvggt.runtime.regional_compile`); the model is warmed up at the first frame's size before streaming
    starts (:meth:`Reconstructor.warm_up`).
    on_frame: called with each frame's result once it is written (e.g. a live viewer's ``add_frame``);
    consumers: more :class:`~streamvggt.pipeline.run.FrameConsumer` that follow the stream, after the writer.
    session: the session to feed (see :class:`Reconstructor`; default: a new one); on_stream_end: called after
    the last frame, before the outputs are written (a slot of a batched session is free for the next input then).
    loop_closure: keep a keyframe map beside the stream (:mod:`streamvggt.mapping`; options reanchor_every,
    reanchor_replay, map_descriptor, map_options): every output is written with the corrected cameras and scaled
    depth, and loops.json lists the accepted loops (docs/long_videos.md). on_correction: called with the frames
    whose correction changed (after each accepted loop and at the end), e.g. a live viewer's ``apply_corrections``.

    state_every: save the run's state into ``output_dir/.streamvggt-state`` every N frames (None: about every
    minute of work; 0: never), so that a killed run can go on: resume=True continues the run saved there (frames
    already done are skipped, or a video seeks) and gives the outputs of an uninterrupted run; it refuses, with a
    StateError of one line and the earlier outputs untouched, a camera or stream, a damaged state, and a state of
    another input, checkpoint, precision or option. A finished run is not redone (``summary.already_finished``).

    Options, inputs and outputs are checked before the model is loaded. Ctrl-C stops the stream: the outputs are
    written for the frames so far (``summary.interrupted``). Raises InputError, OutputError, CheckpointError or
    ValueError with a one-line message; no half-written file stays behind.
    """
    started = time.perf_counter()
    options = _options("reconstruct", options, keywords)
    device = options.check(loads_model=not isinstance(model, StreamVGGT))
    check_source_outside_outputs(str(source), Path(output_dir))
    output = options.output
    store = RunStateStore.in_output(output_dir)
    with contextlib.ExitStack() as stack:
        opened = stack.enter_context(open_input(source, options.stream))
        live = opened.source.kind == "stream"
        # A given session saves and restores only if it says it can (a batched session's slots do).
        own_session = session is None or getattr(session, "resumable", False)
        saving = options.state_every != 0 and not live and own_session
        fingerprint = saved = None
        if saving or options.resume:
            checkpoint = model if model is not None else options.model.checkpoint
            fingerprint = run_fingerprint(opened.source, source, checkpoint, "", options)
        if options.resume:  # refused here, before the model loads and before any output is touched
            if not own_session:
                raise StateError("a slot of a batch larger than 1 cannot be resumed: resume with a batch of 1")
            saved = load_resume_state(store, fingerprint, live)
            if saved is None:
                log.warning("nothing to resume in %s: starting from the first frame", output_dir)
            elif saved.meta.get("finished"):
                return _finished_summary(saved.meta, Path(output_dir), started)
        frames = opened.frames
        if saved is not None:
            position = ReadPosition.from_dict(saved.meta["position"])
            frames = stack.enter_context(resumed_frames(source, options.stream, position))
        writer = stack.enter_context(
            ReconstructionWriter(
                output_dir,
                output.points,
                output.conf_threshold,
                output.voxel_size,
                output.depth_png,
                pointmaps=output.pointmaps,
                exports=output.exports,
                spool_path=store.spool_path if saving or saved is not None else None,
                correctable=options.map.loop_closure,
            )
        )
        reconstructor = Reconstructor.for_input(model, options, opened, device, session=session)
        precision = precision_of(reconstructor.model)
        if fingerprint is not None:
            fingerprint["precision"] = precision
        if saved is not None:
            check_precision(saved, precision, output_dir)
        if saving or saved is not None:  # once the model has loaded: a run that cannot start leaves nothing here
            store.lock()
            stack.callback(store.unlock)
        followers = [WriteFrames(writer, reconstructor.preprocessor), *consumers]
        if on_frame is not None:
            followers.append(FrameCallback(on_frame))
        follower = None
        if options.map.loop_closure:  # last: the frame is written and shown before a loop moves it
            follower = map_follower(reconstructor, options, opened, writer.read_image, on_correction)
            followers.append(follower)
        done_before = 0
        if saved is not None:
            _restore(saved, writer, reconstructor, follower)
            done_before = int(saved.meta["frames"])
            log.info("resuming %s after frame %d", output_dir, done_before)
        else:
            store.clear()  # an earlier interrupted run's state: this run starts over
        saver = None
        if saving:
            parts: dict[str, Any] = {"stream": reconstructor}
            if follower is not None:
                parts["map"] = follower
            saver = SaveRunState(
                store,
                writer,
                parts,
                fingerprint,
                every=options.state_every,
                save_on_interrupt=follower is None,  # a loop-closed finish rewrites the per-frame files
            )
            followers.append(saver)
            _announce_state_size(reconstructor, options, opened)
        total = None if opened.total is None else opened.total - done_before
        loop = run_frames(reconstructor, frames, followers, total=total, progress=options.progress)
        if on_stream_end is not None:
            on_stream_end()
        preprocessor = reconstructor.preprocessor
        metadata = {
            "source": opened.source.description,
            "preprocess": {
                "mode": preprocessor.mode,
                "size": preprocessor.size,
                "content_box": list(preprocessor.content_box),  # top, left, height, width: the image, not padding
            },
            "cache": str(parse_policy(options.stream.cache)),
            "precision": reconstructor.model.execution.to_json(),
        }
        corrections = None
        if follower is not None:
            corrections = follower.corrections()
            metadata["loop_closure"] = {"loops": len(follower.gmap.loops), "restarts": follower.restarts}
        if corrections is not None and (saving or saved is not None):
            store.retire()  # finish rescales the per-frame depth files the saved state relies on
        written = writer.finish(metadata, corrections, progress=options.progress)
        frames_done = done_before + loop.frames
        if saving or saved is not None:
            if not loop.interrupted:
                store.mark_finished(
                    {
                        "fingerprint": fingerprint,
                        "frames": frames_done,
                        "points": written.points,
                        "scene_points": written.scene_points,
                        "precision": reconstructor.model.execution.to_json(),
                    }
                )
            elif follower is not None:
                store.clear()
                log.warning("a run with --loop-closure stopped by Ctrl-C cannot be resumed: its outputs are final")
    summary = ReconstructionSummary(
        output_dir=Path(output_dir),
        frames=frames_done,
        seconds=time.perf_counter() - started,
        stream_seconds=loop.seconds,
        points=written.points,
        scene_points=written.scene_points,
        files=written.files,
        skipped=list(opened.source.skipped),
        interrupted=loop.interrupted,
        live=live,
        precision=reconstructor.model.execution,
        resumed_from=done_before if saved is not None else None,
        state_saves=0 if saver is None else saver.saves,
        state_seconds=0.0 if saver is None else saver.save_seconds,
    )
    log.info("reconstructed %d frames into %s (%d points)", frames_done, output_dir, written.points)
    return summary


def _restore(
    saved: SavedState, writer: ReconstructionWriter, reconstructor: Reconstructor, follower: MapFollower | None
) -> None:
    """Set the writer, the stream and the map to a saved state (StateError, one line, when it does not fit)."""
    meta = saved.meta
    if (follower is not None) != ("map" in meta):
        raise StateError("the saved state and this run differ in --loop-closure: run without --resume to start over")
    try:
        writer.restore_state(WriterState(meta["writer"], saved.arrays("writer")))
        reconstructor.load_state_dict(meta["stream"], saved.tensors("stream", reconstructor.device))
        if follower is not None:
            follower.load_state_dict(meta["map"], saved.arrays("map"))
    except (KeyError, ValueError) as error:
        if isinstance(error, StateError):
            raise
        raise StateError(
            f"the saved state in {saved.path} does not fit this run ({error}): run without --resume to start over"
        ) from None


def _finished_summary(meta: dict[str, Any], output_dir: Path, started: float) -> ReconstructionSummary:
    """The summary of a run that had finished: nothing is done again."""
    log.info("%s holds a finished run of %d frames: nothing to resume", output_dir, meta.get("frames", 0))
    precision = ExecutionPrecision(**meta["precision"]) if "precision" in meta else ExecutionPrecision()
    return ReconstructionSummary(
        output_dir=output_dir,
        frames=int(meta.get("frames", 0)),
        seconds=time.perf_counter() - started,
        stream_seconds=0.0,
        points=int(meta.get("points", 0)),
        scene_points=int(meta.get("scene_points", 0)),
        precision=precision,
        already_finished=True,
    )


def _announce_state_size(reconstructor: Reconstructor, options: ReconstructOptions, opened: OpenedInput) -> None:
    """Say how large the saved state gets: a warning when the full cache's state (it grows with the stream) will
    pass :data:`LARGE_STATE` bytes (or the stream's length is unknown), else an info line."""
    model = reconstructor.model
    policy = parse_policy(options.stream.cache)
    dtype = model.execution.trunk_dtype or next(model.parameters()).dtype
    size = estimate_state_size(policy, model.config, opened.first_size, dtype, next(model.parameters()).dtype)
    large = opened.total is None or size.at(opened.total) > LARGE_STATE
    if policy.kind == "full" and large:
        log.warning("%s; a bounded cache (--cache window:K) keeps it bounded", size.describe(opened.total))
    else:
        log.info("%s", size.describe(opened.total))


def map_follower(
    reconstructor: Reconstructor,
    options: ReconstructOptions,
    opened: OpenedInput,
    image_source: Callable[[int], np.ndarray] | None = None,
    on_correction: Callable[[FrameCorrections], None] | None = None,
) -> MapFollower:
    """The long-video map of a run (``options.map``), verified by the reconstructor's model, its cache window from
    the stream's cache policy; ``image_source`` reads processed frames back by stream index (None: the map keeps
    its keyframes' images)."""
    model = reconstructor.model
    frame_tokens = model.aggregator.tokens_per_frame(*opened.first_size)
    gmap = build_map(
        model, options.map_options(), parse_policy(options.stream.cache), frame_tokens, image_source=image_source
    )
    restartable = reconstructor if options.map.map_descriptor != "image" or gmap.options.reanchor_every else None
    return MapFollower(gmap, restartable, options.map.map_descriptor, on_correction)


def _options(function: str, options: ReconstructOptions | None, keywords: dict[str, Any]) -> ReconstructOptions:
    """``options``, or the options the flat ``keywords`` name (not both)."""
    if options is None:
        return ReconstructOptions.from_keywords(function, **keywords)
    if keywords:
        raise TypeError(f"{function}() takes options or keyword options, not both: {', '.join(keywords)}")
    return options
