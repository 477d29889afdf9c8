"""Loop closure in the frame loop: a :class:`~streamvggt.mapping.GlobalMap` that follows the stream.

:class:`MapFollower` is a :class:`~streamvggt.pipeline.run.FrameConsumer`: it adds each result to the map (with
the model's patch tokens when the stepper exposes them), re-anchors the stepper when the map asks for it, and
reports the frames whose correction changed (a live viewer re-places them). At the end :meth:`MapFollower.corrections`
is what :meth:`ReconstructionWriter.finish <streamvggt.io.outputs.writer.ReconstructionWriter.finish>` applies to
every output, with the contents of ``loops.json``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from streamvggt.io.outputs.writer import FrameCorrections
from streamvggt.mapping import GlobalMap, MapOptions
from streamvggt.mapping.map import GrowingArray

if TYPE_CHECKING:
    import torch

    from streamvggt.io.inputs.sources import Frame
    from streamvggt.results import FrameResult
    from streamvggt.streaming.cache import CachePolicy

log = logging.getLogger(__name__)

# A correction that moved less than this (relative, on the [sR | t] entries) is not re-sent to a viewer.
RESEND_TOLERANCE = 1e-6


class RestartableStepper(Protocol):
    """What re-anchoring needs of the stepper (a :class:`streamvggt.Reconstructor`)."""

    def restart(self, images: list[np.ndarray]) -> list[FrameResult]: ...

    def patch_tokens(self) -> torch.Tensor | None: ...


def cache_window(policy: CachePolicy, frame_tokens: int) -> int:
    """Frames the stream still attends to besides the first (loop candidates must be older): a window's K, a
    budget's tokens in frames; 0 for the full cache, which still drifts (every frame is predicted against the first
    alone), so revisits there are candidates once past the map's exclusion gap."""
    if policy.kind == "window" and policy.frames is not None:
        return int(policy.frames)
    if policy.kind == "budget" and policy.tokens is not None:
        return max(1, int(policy.tokens) // max(frame_tokens, 1))
    return 0


class MapFollower:
    """Feeds a stream's results to ``gmap``; a :class:`~streamvggt.pipeline.run.FrameConsumer`.

    stepper: the stream's stepper, for patch tokens and re-anchoring (None: image descriptors, no re-anchoring).
    descriptor: "tokens", "image" or "auto" (tokens when the stepper gives them for the first frame).
    on_correction: called with the :class:`FrameCorrections` of the frames (already seen) whose correction changed:
    after an accepted loop, for each frame of a re-anchored segment, and at the end.
    """

    def __init__(
        self,
        gmap: GlobalMap,
        stepper: RestartableStepper | None = None,
        descriptor: str = "auto",
        on_correction: Callable[[FrameCorrections], None] | None = None,
    ) -> None:
        if descriptor not in ("auto", "tokens", "image"):
            raise ValueError(f"unknown map descriptor '{descriptor}': use auto, tokens or image")
        self.gmap = gmap
        self.stepper = stepper
        self.descriptor = descriptor
        self.on_correction = on_correction
        self.indices: list[int] = []  # the stream index of each frame added (the map's frames, in order)
        self.restarts = 0
        self._use_tokens: bool | None = None if descriptor == "auto" else descriptor == "tokens"
        self._sent = GrowingArray((3, 4), np.float64)  # per frame: the correction a viewer shows it with
        self.finished = False

    def on_frame(self, result: FrameResult, frame: Frame) -> None:
        tokens = self._tokens()
        loop = self.gmap.add(result, tokens)
        self.indices.append(result.index)
        self._sent.append(_IDENTITY)  # the viewer got the frame as streamed
        if self.gmap.should_restart():
            self._restart()
        if self.on_correction is None:
            return
        if loop is not None:
            self._send_changed()
        elif self.gmap.segments > 1:  # a re-anchored segment: its frames arrive in the segment's world
            self._send_changed(last_only=True)

    def on_finish(self, frames: int, interrupted: bool) -> None:
        if self.gmap.num_frames:
            self.gmap.finish()
            if self.on_correction is not None:
                self._send_changed()
        self.finished = True

    def state_dict(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(meta, arrays): the map's state and this follower's (stream indices, restarts, what a viewer was
        sent); the stepper's own state is saved with it by the run (:mod:`streamvggt.pipeline.resume`)."""
        meta, arrays = self.gmap.state_dict()
        arrays = {f"map.{k}": v for k, v in arrays.items()}
        arrays["follower.indices"] = np.asarray(self.indices, dtype=np.int64)
        arrays["follower.sent"] = self._sent.values.copy()
        follower = {"restarts": self.restarts, "use_tokens": self._use_tokens}
        return {"map": meta, "follower": follower}, arrays

    def load_state_dict(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Continue from a :meth:`state_dict`."""
        self.gmap.load_state_dict(meta["map"], {k[4:]: v for k, v in arrays.items() if k.startswith("map.")})
        self.indices = [int(i) for i in arrays["follower.indices"]]
        self._sent = GrowingArray.holding(np.asarray(arrays["follower.sent"], dtype=np.float64).reshape(-1, 3, 4))
        self.restarts = int(meta["follower"]["restarts"])
        self._use_tokens = meta["follower"]["use_tokens"]

    def corrections(self) -> FrameCorrections:
        """Every frame's corrected camera, depth scale and world-point similarity, with loops.json's contents."""
        transforms = self.gmap.frame_corrections()
        return FrameCorrections(
            np.asarray(self.indices, dtype=np.int64),
            self.gmap.poses(),
            self.gmap.scales(),
            transforms,
            self.report(),
        )

    def report(self) -> dict[str, Any]:
        """loops.json: the accepted loops with their scores, and what the map did."""
        gmap = self.gmap
        index = self.indices
        loops = []
        for loop in gmap.loop_details:
            entry = loop.to_dict()
            entry["earlier"], entry["later"] = index[loop.earlier], index[loop.later]  # stream indices
            loops.append(entry)
        return {
            "loops": loops,
            "frames": gmap.num_frames,
            "keyframes": len(gmap.keyframes),
            "descriptor": gmap.descriptor_kind,
            "verifications": gmap.predictor_calls,
            "restarts": self.restarts,
            "options": _json_ready(dataclasses.asdict(gmap.options)),
        }

    def _tokens(self) -> torch.Tensor | None:
        if self._use_tokens is False or self.stepper is None:
            return None
        tokens = self.stepper.patch_tokens()
        if self._use_tokens is None:  # auto: decided once, so every keyframe's descriptor is of one kind
            self._use_tokens = tokens is not None
            log.info("loop closure: %s descriptors", "patch-token" if tokens is not None else "image")
        elif tokens is None:
            raise ValueError("the stream gives no patch tokens: use the image descriptor (--map-descriptor image)")
        return tokens

    def _restart(self) -> None:
        if self.stepper is None:
            raise ValueError("re-anchoring needs the stream's stepper (MapFollower(stepper=...))")
        frames = self.gmap.replay_frames()
        replayed = self.stepper.restart([self.gmap.keyframe_image(f) for f in frames])
        fit = self.gmap.start_segment(frames, replayed)
        self.restarts += 1
        log.info(
            "re-anchored the stream after frame %d: %d keyframes replayed, %.0f%% inliers",
            self.indices[-1],
            len(frames),
            100 * fit.inlier_fraction,
        )

    def _send_changed(self, last_only: bool = False) -> None:
        """Send the frames whose correction moved since it was last sent (only the newest with ``last_only``)."""
        transforms = self.gmap.frame_corrections()
        start = len(transforms) - 1 if last_only else 0
        sent = self._sent.values
        moved = np.abs(transforms[start:] - sent[start:]).max(axis=(1, 2)) > RESEND_TOLERANCE
        rows = np.nonzero(moved)[0] + start
        if not len(rows):
            return
        sent[rows] = transforms[rows]
        poses = self.gmap.poses_of(rows.tolist())
        scales = self.gmap.scales_of(rows.tolist())
        self.on_correction(
            FrameCorrections(np.asarray(self.indices, dtype=np.int64)[rows], poses, scales, transforms[rows])
        )


_IDENTITY = np.concatenate((np.eye(3), np.zeros((3, 1))), axis=1)


def build_map(
    model: Any,
    map_options: MapOptions,
    policy: CachePolicy,
    frame_tokens: int,
    image_source: Callable[[int], np.ndarray] | None = None,
) -> GlobalMap:
    """A map verified by ``model``'s stateless re-runs, with the cache window of ``policy`` (frames of
    ``frame_tokens`` tokens) unless ``map_options`` names one."""
    if map_options.cache_window == 0:
        map_options = dataclasses.replace(map_options, cache_window=cache_window(policy, frame_tokens))
    return GlobalMap.for_model(model, map_options, image_source=image_source)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value
