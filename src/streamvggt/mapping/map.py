"""The keyframe map beside the stream: revisit detection, loop verification and the Sim(3) pose graph."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamvggt.mapping.descriptors import image_descriptor, token_descriptor, whiten
from streamvggt.mapping.graph import Edge, PoseGraph, SolveReport
from streamvggt.mapping.keyframes import ImageStore, Keyframe, camera_points_at, sample_points
from streamvggt.mapping.options import MapOptions
from streamvggt.mapping.sim3 import Sim3, SimFit, fit_sim3, rotation_angle
from streamvggt.results import FrameResult

log = logging.getLogger(__name__)

MAX_PREDICT_FRAMES = 48
# predict(images) -> one prediction per image with extrinsic [3, 4] (camera-from-world in the first image's
# camera), intrinsic [3, 3], depth [H, W] and depth_conf [H, W] (numpy or torch).
Predictor = Callable[[list[np.ndarray]], Sequence[Any]]


@dataclass(frozen=True)
class Loop:
    """An accepted loop between the keyframes of frames ``earlier`` and ``later``.

    transform: the later keyframe's camera into the earlier one's (a Sim(3): the stream's units differ at both
    ends); similarity: the descriptors' cosine; inlier_fraction and residual: the worse of both sides' fits;
    scale: the loop's relative scale over the odometry's (1: no scale drift in between).
    """

    earlier: int
    later: int
    transform: Sim3
    similarity: float
    inlier_fraction: float
    residual: float
    scale: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (loops.json)."""
        return {
            "earlier": self.earlier,
            "later": self.later,
            "similarity": round(self.similarity, 6),
            "inlier_fraction": round(self.inlier_fraction, 6),
            "residual": round(self.residual, 6),
            "scale": round(self.scale, 6),
            "transform": [[round(float(v), 9) for v in row] for row in self.transform.matrix()[:3]],
        }


@dataclass
class _Rejection:
    reason: str


class GrowingArray:
    """An append-only array with amortised O(1) appends (capacity doubles), for per-frame records."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._data = np.zeros((64, *shape), dtype)
        self.size = 0

    def append(self, value: Any) -> None:
        if self.size == len(self._data):
            self._data = np.concatenate((self._data, np.zeros_like(self._data)))
        self._data[self.size] = value
        self.size += 1

    @classmethod
    def holding(cls, values: np.ndarray) -> GrowingArray:
        """An array holding ``values`` [N, ...] (with room to grow)."""
        grown = cls(values.shape[1:], values.dtype)
        grown._data = np.concatenate((values, np.zeros((max(64, len(values)), *values.shape[1:]), values.dtype)))
        grown.size = len(values)
        return grown

    @property
    def values(self) -> np.ndarray:
        """The appended records [size, ...]: a view, so assigning into it updates them."""
        return self._data[: self.size]

    @property
    def nbytes(self) -> int:
        return self._data.nbytes


class GlobalMap:
    """A keyframe map over a stream of :class:`FrameResult`: ``add`` each frame, ``finish`` at the end, read back
    corrected ``poses()`` and ``scales()``, and ``correct`` frames' outputs.

    predict: the verification hook (see :data:`Predictor`); without it the map keeps keyframes and odometry but
    closes no loops. image_source: reads a frame back by its index in the stream (position of its ``add`` call)
    for verification; without it, keyframe images are kept as JPEG in memory.
    """

    def __init__(
        self,
        predict: Predictor | None = None,
        options: MapOptions | None = None,
        image_source: Callable[[int], np.ndarray] | None = None,
    ) -> None:
        self.options = options if options is not None else MapOptions()
        self.predict = predict
        self.keyframes: list[Keyframe] = []
        self.graph = PoseGraph()
        self._images = ImageStore(image_source)
        self._ref = GrowingArray((), np.int32)  # per frame: its reference keyframe
        self._rel = GrowingArray((3, 4), np.float64)  # per frame: its [R | t] in the reference keyframe's camera
        self._descriptors = GrowingArray((0,), np.float16)  # replaced on the first keyframe (width known then)
        self._descriptor_kind: str | None = None
        self._path = GrowingArray((), np.float64)  # per keyframe: path length travelled so far, map units
        self._segments: list[Sim3] = [Sim3.identity()]  # per segment: its world into the map's frame
        self._segment_start = 0
        self._force_keyframe = False
        self._streak: list[tuple[int, int, float]] = []  # (keyframe, candidate, similarity) on consecutive keyframes
        self._cooldown = 0
        self._loops: list[Loop] = []
        self._dirty = False
        self.predictor_calls = 0
        self.predicted_frames = 0
        self.last_solve: SolveReport | None = None

    @classmethod
    def for_model(
        cls,
        model: Any,
        options: MapOptions | None = None,
        image_source: Callable[[int], np.ndarray] | None = None,
    ) -> GlobalMap:
        """A map whose verification re-runs ``model`` offline and statelessly (see :func:`model_predictor`)."""
        from streamvggt.mapping.predictor import model_predictor

        return cls(model_predictor(model), options, image_source)

    # ---- the stream side

    @property
    def num_frames(self) -> int:
        return self._ref.size

    def add(self, result: FrameResult, tokens: Any | None = None) -> Loop | None:
        """Take the next frame of the stream; returns the loop accepted on it, if any.

        tokens: the frame's patch tokens [P, C] from the model's trunk (numpy or torch), used for the revisit
        descriptor; without them the descriptor is computed from the image.
        """
        frame = self.num_frames
        raw = self._segments[-1] @ Sim3.from_extrinsic(np.asarray(result.extrinsic, dtype=np.float64))
        if self.keyframes and not self._force_keyframe and not self._is_keyframe(raw):
            last = self.keyframes[-1]
            relative = last.raw.inverse() @ raw  # rigid: both in the same segment (a segment starts on a keyframe)
            self._ref.append(len(self.keyframes) - 1)
            self._rel.append(np.concatenate((relative.rotation, relative.translation[:, None]), axis=1))
            return None
        keyframe = self._add_keyframe(frame, raw, result, tokens)
        self._ref.append(len(self.keyframes) - 1)
        self._rel.append(np.concatenate((np.eye(3), np.zeros((3, 1))), axis=1))
        return self._detect(keyframe)

    def finish(self) -> SolveReport | None:
        """A last optimisation when loops were added since the previous one; the read-back is final after it."""
        if not self._dirty:
            return None
        return self._optimise()

    # ---- saved state (a resumed run goes on with the map it had)

    def state_dict(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(meta, arrays): keyframes, the non-keyframes' relative poses, the graph, the loops and every counter,
        compact (keyframes are bounded records; kept images as their JPEG bytes). Options and the predictor are
        not saved: the resumed run builds the map with its own (the run's fingerprint checks the options)."""
        arrays: dict[str, np.ndarray] = {"ref": self._ref.values.copy(), "rel": self._rel.values.copy()}
        arrays["descriptors"] = self._descriptors.values.copy()
        arrays["path"] = self._path.values.copy()
        kfs = self.keyframes
        _put_sims(arrays, "keyframes.raw", [kf.raw for kf in kfs])
        _put_sims(arrays, "graph.nodes", self.graph.nodes)
        _put_sims(arrays, "graph.edges", [edge.measurement for edge in self.graph.edges])
        _put_sims(arrays, "segments", self._segments)
        _put_sims(arrays, "loops", [loop.transform for loop in self._loops])
        if kfs:
            arrays["keyframes.intrinsic"] = np.stack([kf.intrinsic for kf in kfs])
            arrays["keyframes.descriptor"] = np.stack([kf.descriptor for kf in kfs])
            for name in ("pixels", "points", "conf"):
                arrays[f"keyframes.{name}"] = np.concatenate([getattr(kf, name) for kf in kfs])
        if self.graph.edges:
            arrays["graph.sigmas"] = np.stack([np.asarray(edge.sigmas, np.float64) for edge in self.graph.edges])
        jpeg = self._images._jpeg
        if jpeg:
            arrays["images.jpeg"] = np.frombuffer(b"".join(jpeg.values()), dtype=np.uint8)
        meta: dict[str, Any] = {
            "keyframes": [
                [kf.frame, kf.node, kf.segment, list(kf.image_size), kf.median_depth, len(kf.pixels)] for kf in kfs
            ],
            "edges": [[edge.i, edge.j, edge.robust] for edge in self.graph.edges],
            "loops": [
                [loop.earlier, loop.later, loop.similarity, loop.inlier_fraction, loop.residual, loop.scale]
                for loop in self._loops
            ],
            "images": [[frame, len(data)] for frame, data in jpeg.items()],
            "descriptor_kind": self._descriptor_kind,
            "segment_start": self._segment_start,
            "force_keyframe": self._force_keyframe,
            "streak": [list(item) for item in self._streak],
            "cooldown": self._cooldown,
            "dirty": self._dirty,
            "predictor_calls": self.predictor_calls,
            "predicted_frames": self.predicted_frames,
            "last_solve": None if self.last_solve is None else dataclasses.asdict(self.last_solve),
        }
        return meta, arrays

    def load_state_dict(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Continue from a :meth:`state_dict` (into a map built with the same options)."""
        self._ref, self._rel = GrowingArray.holding(arrays["ref"]), GrowingArray.holding(arrays["rel"])
        self._descriptors, self._path = (
            GrowingArray.holding(arrays["descriptors"]),
            GrowingArray.holding(arrays["path"]),
        )
        raws = _get_sims(arrays, "keyframes.raw")
        offsets = np.cumsum([0] + [int(record[5]) for record in meta["keyframes"]])
        self.keyframes = [
            Keyframe(
                frame=int(frame),
                node=int(node),
                segment=int(segment),
                raw=raws[k],
                intrinsic=arrays["keyframes.intrinsic"][k],
                image_size=(int(size[0]), int(size[1])),
                descriptor=arrays["keyframes.descriptor"][k],
                pixels=arrays["keyframes.pixels"][offsets[k] : offsets[k + 1]],
                points=arrays["keyframes.points"][offsets[k] : offsets[k + 1]],
                conf=arrays["keyframes.conf"][offsets[k] : offsets[k + 1]],
                median_depth=float(median),
            )
            for k, (frame, node, segment, size, median, _) in enumerate(meta["keyframes"])
        ]
        self.graph = PoseGraph()
        self.graph.nodes = _get_sims(arrays, "graph.nodes")
        self.graph.edges = [
            Edge(int(i), int(j), measurement, arrays["graph.sigmas"][e], None if robust is None else float(robust))
            for e, ((i, j, robust), measurement) in enumerate(
                zip(meta["edges"], _get_sims(arrays, "graph.edges"), strict=True)
            )
        ]
        self._segments = _get_sims(arrays, "segments")
        self._loops = [
            Loop(int(a), int(b), transform, *(float(v) for v in values))
            for (a, b, *values), transform in zip(meta["loops"], _get_sims(arrays, "loops"), strict=True)
        ]
        data = arrays["images.jpeg"].tobytes() if "images.jpeg" in arrays else b""
        self._images._jpeg, start = {}, 0
        for frame, length in meta["images"]:
            self._images._jpeg[int(frame)] = data[start : start + int(length)]
            start += int(length)
        self._descriptor_kind = meta["descriptor_kind"]
        self._segment_start = int(meta["segment_start"])
        self._force_keyframe = bool(meta["force_keyframe"])
        self._streak = [(int(a), int(b), float(c)) for a, b, c in meta["streak"]]
        self._cooldown = int(meta["cooldown"])
        self._dirty = bool(meta["dirty"])
        self.predictor_calls = int(meta["predictor_calls"])
        self.predicted_frames = int(meta["predicted_frames"])
        self.last_solve = None if meta["last_solve"] is None else SolveReport(**meta["last_solve"])

    # ---- read-back

    @property
    def loops(self) -> list[tuple[int, int]]:
        """Accepted loops as (earlier frame, later frame) index pairs."""
        return [(loop.earlier, loop.later) for loop in self._loops]

    @property
    def loop_details(self) -> list[Loop]:
        return list(self._loops)

    @property
    def keyframe_indices(self) -> list[int]:
        return [kf.frame for kf in self.keyframes]

    def _frame_transforms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Corrected world-from-camera of every frame: linear part sR [N, 3, 3], translation [N, 3], and scale [N]."""
        nodes = self.graph.nodes
        node_scale = np.array([nodes[kf.node].scale for kf in self.keyframes])
        node_rot = np.stack([nodes[kf.node].rotation for kf in self.keyframes])
        node_t = np.stack([nodes[kf.node].translation for kf in self.keyframes])
        ref, rel = self._ref.values, self._rel.values
        scale = node_scale[ref]
        rot = node_rot[ref] @ rel[:, :, :3]
        trans = scale[:, None] * (node_rot[ref] @ rel[:, :, 3:])[..., 0] + node_t[ref]
        return rot, trans, scale

    def poses(self) -> np.ndarray:
        """Corrected camera-from-world [N, 3, 4] float64 of every frame added (OpenCV axes, the map's frame: the
        first camera's)."""
        if self.num_frames == 0:
            return np.zeros((0, 3, 4))
        rot, trans, _ = self._frame_transforms()
        rot_t = rot.transpose(0, 2, 1)
        return np.concatenate((rot_t, -(rot_t @ trans[..., None])), axis=2)

    def scales(self) -> np.ndarray:
        """Per frame [N]: the factor its depth (and camera-frame points) is multiplied by to fit the corrected map."""
        if self.num_frames == 0:
            return np.zeros(0)
        return self._frame_transforms()[2]

    def frame_corrections(self) -> np.ndarray:
        """Every frame's :meth:`correction` at once, as [N, 3, 4] float64 matrices [sR | t] (one composition per
        keyframe: a frame moves with its keyframe)."""
        if self.num_frames == 0:
            return np.zeros((0, 3, 4))
        nodes, segments = self.graph.nodes, self._segments
        per_keyframe = np.stack(
            [(nodes[kf.node] @ kf.raw.inverse() @ segments[kf.segment]).matrix()[:3] for kf in self.keyframes]
        )
        return per_keyframe[self._ref.values]

    @property
    def segments(self) -> int:
        """Stream segments so far: 1, plus one per re-anchoring (:meth:`start_segment`)."""
        return len(self._segments)

    @property
    def descriptor_kind(self) -> str | None:
        """ "tokens" or "image": what the keyframes' descriptors were made from (None before the first)."""
        return self._descriptor_kind

    def correction(self, index: int) -> Sim3:
        """The world-to-world similarity that moves frame ``index``'s outputs (world points, in the world its
        stream segment predicted them in) to their corrected place: apply it to spooled points."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} not in the map (0..{self.num_frames - 1})")
        kf = self.keyframes[int(self._ref.values[index])]
        return self.graph.nodes[kf.node] @ kf.raw.inverse() @ self._segments[kf.segment]

    def correct(self, result: FrameResult, index: int | None = None) -> FrameResult:
        """``result`` (frame ``index`` of the map; default ``result.index``) with the corrected camera, depth
        scaled by its factor and world points moved by :meth:`correction`."""
        index = result.index if index is None else index
        correction = self.correction(index)
        pose = self.poses_of([index])[0]
        scale = float(self.scales_of([index])[0])
        return dataclasses.replace(
            result,
            extrinsic=pose,
            depth=(result.depth * scale).astype(result.depth.dtype, copy=False),
            world_points=correction.apply(result.world_points),
        )

    def poses_of(self, indices: Sequence[int]) -> np.ndarray:
        """Corrected camera-from-world [len, 3, 4] of the given frames (cheaper than ``poses()`` for a few)."""
        out = []
        for index in indices:
            kf_id = int(self._ref.values[index])
            rel = self._rel.values[index]
            node = self.graph.nodes[self.keyframes[kf_id].node]
            out.append((node @ Sim3(1.0, rel[:, :3], rel[:, 3])).extrinsic())
        return np.stack(out) if out else np.zeros((0, 3, 4))

    def scales_of(self, indices: Sequence[int]) -> np.ndarray:
        return np.array([self.graph.nodes[self.keyframes[int(self._ref.values[i])].node].scale for i in indices])

    def memory(self) -> dict[str, int]:
        """Bytes held: keyframe records, per-frame records (with spare capacity), descriptors, kept images."""
        keyframes = sum(kf.nbytes() for kf in self.keyframes)
        frames = self._ref.nbytes + self._rel.nbytes
        return {
            "keyframes": keyframes,
            "frames": frames,
            "descriptors_capacity": self._descriptors.nbytes,
            "images": self._images.nbytes(),
            "per_keyframe": keyframes // max(1, len(self.keyframes)),
        }

    # ---- re-anchoring

    def should_restart(self) -> bool:
        """True when the current segment has run ``reanchor_every`` frames: time to restart the stream."""
        every = self.options.reanchor_every
        return every > 0 and self.num_frames - self._segment_start >= every

    def replay_frames(self) -> list[int]:
        """The frames to feed a restarted stream first (the last ``replay`` keyframes, oldest first)."""
        return [kf.frame for kf in self.keyframes[-self.options.replay :]]

    def keyframe_image(self, frame: int) -> np.ndarray:
        """The image [H, W, 3] uint8 of a keyframe (from the image source or the kept JPEG)."""
        return self._images.get(frame)

    def start_segment(self, frames: Sequence[int], results: Sequence[FrameResult]) -> SimFit:
        """Align a restarted stream to the map: ``results`` are what it produced for the replayed keyframes
        ``frames``; the Sim(3) from its world to the map's is fitted on their stored points, and every later
        ``add`` is moved by it. The next frame added becomes a keyframe. Returns the fit."""
        if len(frames) != len(results) or not frames:
            raise ValueError(f"start_segment needs one result per replayed frame, got {len(results)} for {len(frames)}")
        by_frame = {kf.frame: kf for kf in self.keyframes}
        src, dst, weights, origins = [], [], [], []
        for frame, result in zip(frames, results, strict=True):
            if frame not in by_frame:
                raise ValueError(f"frame {frame} is not a keyframe: replay the frames replay_frames() names")
            kf = by_frame[frame]
            cam = camera_points_at(result.depth, result.intrinsic, kf.pixels, kf.image_size)
            seg_world = Sim3.from_extrinsic(np.asarray(result.extrinsic, dtype=np.float64))
            src.append(seg_world.apply(cam))
            dst.append(kf.raw.apply(kf.points.astype(np.float64)))
            conf = _read_at(result.depth_conf, kf.pixels, kf.image_size)
            weights.append(kf.conf.astype(np.float64) * conf * (cam[:, 2] > 0))
            origins.append(np.repeat(kf.raw.translation[None], len(cam), 0))
        fit = fit_sim3(
            np.concatenate(src), np.concatenate(dst), np.concatenate(weights), 20, self.options.inlier_threshold
        )
        if fit.inlier_fraction < self.options.min_inlier_fraction:
            log.warning(
                "restarted segment aligned to the map with only %.0f%% inliers: expect a seam",
                100 * fit.inlier_fraction,
            )
        self._segments.append(fit.transform)
        self._segment_start = self.num_frames
        self._force_keyframe = True
        self._streak = []
        return fit

    # ---- internals

    def _is_keyframe(self, raw: Sim3) -> bool:
        last = self.keyframes[-1]
        relative = last.raw.inverse() @ raw
        moved = np.linalg.norm(relative.translation) / max(last.median_depth, 1e-9)
        turned = math.degrees(relative.rotation_angle())
        return moved >= self.options.keyframe_translation or turned >= self.options.keyframe_rotation_deg

    def _add_keyframe(self, frame: int, raw: Sim3, result: FrameResult, tokens: Any | None) -> Keyframe:
        opts = self.options
        depth = np.asarray(result.depth, dtype=np.float32)
        if depth.ndim == 3:
            depth = depth[..., 0]
        conf = np.asarray(result.depth_conf, dtype=np.float32)
        valid = None if result.valid is None else np.asarray(result.valid, dtype=bool)
        pixels, points, point_conf = sample_points(depth, conf, valid, result.intrinsic, opts.points_per_keyframe)
        if len(points) < 3:
            raise ValueError(f"frame {frame} has fewer than 3 valid depth pixels: cannot be a keyframe")
        median_depth = float(np.median(points[:, 2].astype(np.float32)))
        if tokens is not None:
            tokens = tokens.detach().float().cpu().numpy() if hasattr(tokens, "detach") else np.asarray(tokens)
            descriptor, kind = token_descriptor(tokens, opts.seed), "tokens"
        else:
            descriptor, kind = image_descriptor(result.image, valid), "image"
        if self._descriptor_kind is None:
            self._descriptor_kind = kind
            self._descriptors = GrowingArray(descriptor.shape, np.float16)
        elif kind != self._descriptor_kind:
            earlier = self._descriptor_kind
            raise ValueError(f"frame {frame} has a descriptor from {kind}, earlier keyframes from {earlier}")
        if self.keyframes:
            prev = self.keyframes[-1]
            odometry = prev.raw.inverse() @ raw
            node = self.graph.add_node(self.graph.nodes[prev.node] @ odometry)
            sigma_r, sigma_t, sigma_s = opts.odometry_sigmas
            # A segment's first keyframe hangs on the re-anchoring fit, not on the stream: a looser edge.
            loose = 5.0 if self._force_keyframe and len(self._segments) > 1 else 1.0
            sigmas = loose * np.array([sigma_r] * 3 + [sigma_t * prev.median_depth] * 3 + [sigma_s])
            self.graph.add_edge(Edge(prev.node, node, odometry, sigmas))
            step = float(np.linalg.norm(raw.translation - prev.raw.translation))
            self._path.append(self._path.values[-1] + step)
        else:
            node = self.graph.add_node(raw)
            self._path.append(0.0)
        keyframe = Keyframe(
            frame=frame,
            node=node,
            segment=len(self._segments) - 1,
            raw=raw,
            intrinsic=np.asarray(result.intrinsic, dtype=np.float32),
            image_size=(depth.shape[0], depth.shape[1]),
            descriptor=descriptor,
            pixels=pixels,
            points=points,
            conf=point_conf,
            median_depth=median_depth,
        )
        self.keyframes.append(keyframe)
        self._descriptors.append(descriptor)
        self._images.put(frame, result.image)
        self._force_keyframe = False
        return keyframe

    def _detect(self, keyframe: Keyframe) -> Loop | None:
        """Revisit detection on a new keyframe: candidate, confirmation, verification."""
        if self.predict is None:
            return None
        if self._cooldown > 0:
            self._cooldown -= 1
            return None
        opts = self.options
        current = len(self.keyframes) - 1
        horizon = keyframe.frame - max(opts.cache_window, opts.exclusion_gap)
        eligible = int(np.searchsorted(np.array(self.keyframe_indices), horizon, side="right"))
        if eligible == 0:
            self._streak = []
            return None
        # Whitening needs a few keyframes to estimate what all views share.
        values = self._descriptors.values
        desc = whiten(values) if len(self.keyframes) >= 10 else values.astype(np.float32)
        sims = desc[:eligible] @ desc[current]
        candidate = int(np.argmax(sims))
        similarity = float(sims[candidate])
        if similarity < opts.similarity_threshold:
            self._streak = []
            return None
        if self._streak:
            prev_kf, prev_cand, _ = self._streak[-1]
            if prev_kf != current - 1 or abs(prev_cand - candidate) > opts.confirm_spread:
                self._streak = []
        self._streak.append((current, candidate, similarity))
        if len(self._streak) < opts.confirm:
            return None
        # Confirmed: verify this keyframe's candidate, and those of the streak's earlier keyframes that waited for
        # the confirmation (the first keyframes of a revisit would otherwise never be tried).
        pending = self._streak[-opts.confirm :] if len(self._streak) == opts.confirm else self._streak[-1:]
        accepted = None
        for kf_index, cand, sim in pending:
            outcome = self._verify(cand, kf_index, sim)
            if isinstance(outcome, _Rejection):
                pair = (self.keyframes[cand].frame, self.keyframes[kf_index].frame)
                log.debug("loop %d-%d rejected: %s", *pair, outcome.reason)
            else:
                accepted = outcome
        if accepted is not None:
            self._cooldown = opts.loop_cooldown
        return accepted

    def _verify(self, i: int, j: int, similarity: float) -> Loop | _Rejection:
        opts = self.options
        kf_i, kf_j = self.keyframes[i], self.keyframes[j]
        n = opts.verify_neighbours
        side_i = [i, *[k for k in range(i - n, i + n + 1) if k != i and 0 <= k < len(self.keyframes)]]
        side_j = [j, *[k for k in range(j - n, j) if k >= 0 and k not in side_i]]
        order = side_i + side_j
        images = [self._images.get(self.keyframes[k].frame) for k in order]
        predictions = list(self.predict(images))
        self.predictor_calls += 1
        self.predicted_frames += len(images)
        if len(predictions) != len(images):
            raise ValueError(f"predict returned {len(predictions)} predictions for {len(images)} images")
        fit_i = self._align_side(kf_i, predictions[0])
        fit_j = self._align_side(kf_j, predictions[len(side_i)])
        if isinstance(fit_i, _Rejection):
            return fit_i
        if isinstance(fit_j, _Rejection):
            return fit_j
        inlier_fraction = min(fit_i.inlier_fraction, fit_j.inlier_fraction)
        residual = max(fit_i.residual, fit_j.residual)
        if inlier_fraction < opts.min_inlier_fraction:
            return _Rejection(f"inlier fraction {inlier_fraction:.2f} < {opts.min_inlier_fraction}")
        if residual > opts.max_residual:
            return _Rejection(f"residual {residual:.3f} > {opts.max_residual}")
        loop = fit_i.transform.inverse() @ fit_j.transform  # camera j -> camera i
        distance = float(np.linalg.norm(loop.translation)) / kf_i.median_depth
        if distance > opts.max_loop_distance:
            return _Rejection(f"cameras {distance:.2f} median depths apart: not a revisit")
        if math.degrees(loop.rotation_angle()) > opts.max_loop_angle_deg:
            return _Rejection(f"cameras {math.degrees(loop.rotation_angle()):.0f} deg apart: not a revisit")
        odometry = self.graph.nodes[kf_i.node].inverse() @ self.graph.nodes[kf_j.node]
        scale = loop.scale / odometry.scale
        if not 1 / opts.max_scale_change <= scale <= opts.max_scale_change:
            return _Rejection(f"scale change {scale:.2f} beyond {opts.max_scale_change}")
        path = (self._path.values[j] - self._path.values[i]) / kf_i.raw.scale
        allowed = opts.drift_fraction * path + 0.25 * kf_i.median_depth
        disagreement = float(np.linalg.norm(loop.translation - odometry.translation))
        if disagreement > allowed:
            return _Rejection(f"disagrees with the odometry by {disagreement:.2f} > {allowed:.2f}: a look-alike place")
        turn = math.degrees(rotation_angle(loop.rotation @ odometry.rotation.T))
        if turn > opts.max_drift_deg:
            return _Rejection(f"disagrees with the odometry by {turn:.0f} deg: a look-alike place")
        sigma_r, sigma_t, sigma_s = opts.loop_sigmas
        sigmas = np.array([sigma_r] * 3 + [sigma_t * kf_i.median_depth] * 3 + [sigma_s])
        self.graph.add_edge(Edge(kf_i.node, kf_j.node, loop, sigmas, robust=opts.loop_kernel))
        accepted = Loop(kf_i.frame, kf_j.frame, loop, similarity, inlier_fraction, residual, scale)
        self._loops.append(accepted)
        self._dirty = True
        self._optimise()
        log.info("loop closed: frame %d -> frame %d (inliers %.0f%%)", kf_j.frame, kf_i.frame, 100 * inlier_fraction)
        return accepted

    def _align_side(self, kf: Keyframe, prediction: Any) -> SimFit | _Rejection:
        """The Sim(3) from the keyframe's stored camera points to the prediction's world (its first camera)."""
        depth = _numpy(prediction.depth)
        if depth.ndim == 3:
            depth = depth[..., 0]
        extrinsic = _numpy(prediction.extrinsic).astype(np.float64)
        cam = camera_points_at(depth, _numpy(prediction.intrinsic), kf.pixels, kf.image_size)
        camera = Sim3.from_extrinsic(extrinsic)
        weights = kf.conf.astype(np.float64) * _read_at(_numpy(prediction.depth_conf), kf.pixels, kf.image_size)
        weights = np.where(np.isfinite(cam).all(1) & (cam[:, 2] > 0), weights, 0.0)
        if (weights > 0).sum() < 3:
            return _Rejection("the prediction has no valid depth at the keyframe's points")
        return fit_sim3(
            kf.points.astype(np.float64),
            camera.apply(cam),
            weights,
            inlier_threshold=self.options.inlier_threshold,
            dst_origin=camera.translation,
        )

    def _optimise(self) -> SolveReport:
        report = self.graph.optimise(self.options.optimise_iterations, self.options.optimise_seconds)
        self.last_solve = report
        self._dirty = False
        return report


def _put_sims(arrays: dict[str, np.ndarray], prefix: str, sims: Sequence[Sim3]) -> None:
    """Similarities as exact arrays (scale, rotation, translation), not through a matrix that would round them."""
    arrays[f"{prefix}.scale"] = np.array([sim.scale for sim in sims], dtype=np.float64)
    arrays[f"{prefix}.rotation"] = np.array([sim.rotation for sim in sims], dtype=np.float64).reshape(-1, 3, 3)
    arrays[f"{prefix}.translation"] = np.array([sim.translation for sim in sims], dtype=np.float64).reshape(-1, 3)


def _get_sims(arrays: dict[str, np.ndarray], prefix: str) -> list[Sim3]:
    scales, rotations = arrays[f"{prefix}.scale"], arrays[f"{prefix}.rotation"]
    translations = arrays[f"{prefix}.translation"]
    return [Sim3(float(s), r.copy(), t.copy()) for s, r, t in zip(scales, rotations, translations, strict=True)]


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value)


def _read_at(image: np.ndarray, pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Values [N] float64 of a map [h, w] at pixels [N, 2] (row, col) of an image of ``size`` (nearest)."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., 0]
    h, w = image.shape
    r = np.clip(np.floor((pixels[:, 0] + 0.5) * h / size[0]), 0, h - 1).astype(np.int64)
    c = np.clip(np.floor((pixels[:, 1] + 0.5) * w / size[1]), 0, w - 1).astype(np.int64)
    return image[r, c].astype(np.float64)
