"""Rendered sequences with known drift, for checking the map without a model: tests, benchmarks, tuning.

A sequence has exact cameras and depth from the procedural renderer (:mod:`streamvggt.scenes.procedural_room`).
:meth:`Sequence.engine_results` plays a stream whose relative poses carry a Sim(3) random-walk drift, with depth
noise and outliers, as a drifting streaming model would; :meth:`Sequence.predictor` is a ground-truth
``predict`` hook: exact relative geometry of the frames it is given, in its own arbitrary units.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from streamvggt.geometry import umeyama, unproject_depth
from streamvggt.mapping.predictor import FramePrediction
from streamvggt.mapping.sim3 import Sim3, rotation_angle
from streamvggt.results import FrameResult
from streamvggt.scenes.procedural_room import SyntheticScene, look_at

TRAJECTORIES = ("circle", "figure8", "line", "twin_rooms")


@dataclass(frozen=True)
class Drift:
    """Per-frame odometry noise: rotation (rad, per axis), translation (fraction of the step, per axis), log-scale;
    depth noise (relative, per pixel) and the fraction of pixels with a wrong depth (outliers)."""

    rotation: float = math.radians(0.15)
    translation: float = 0.02
    scale: float = 0.003
    depth_noise: float = 0.01
    outliers: float = 0.05


def camera_path(kind: str, room: np.ndarray, frames_per_lap: int) -> tuple[np.ndarray, np.ndarray]:
    """Render poses (cam-to-world [F, 4, 4], in the room) and true world poses [F, 4, 4] for a trajectory kind.

    circle: two laps around the room centre looking outwards (the second lap 5 cm wider and higher);
    figure8: two laps of a lemniscate looking along the path; line: one walk across the room looking ahead;
    twin_rooms: a lap in one room, then the same lap in an identical room beside it (render poses repeat, world
    poses do not).
    """
    if kind not in TRAJECTORIES:
        raise ValueError(f"unknown trajectory '{kind}': use one of {', '.join(TRAJECTORIES)}")
    half = room[[0, 2]] / 2
    n = frames_per_lap
    if kind in ("circle", "twin_rooms"):
        radius = 0.3 * float(half.min())
        laps = []
        for lap in range(2):
            angle = 2 * np.pi * np.arange(n) / n
            r = radius + (0.05 * lap if kind == "circle" else 0.0)
            h = 1.4 + (0.05 * lap if kind == "circle" else 0.0)
            for a in angle:
                centre = np.array([r * np.cos(a), h, r * np.sin(a)])
                target = centre + np.array([np.cos(a), -0.1, np.sin(a)])
                laps.append(look_at(centre, target))
        render = np.stack(laps)
        world = render.copy()
        if kind == "twin_rooms":
            world[n:, 0, 3] += room[0] + 2.0  # the second room stands beside the first, 2 m of wall between
        return render, world
    if kind == "figure8":
        a = 0.4 * float(half.min())
        theta = 2 * np.pi * np.arange(2 * n) / n
        ground = np.stack((a * np.sin(theta), a * np.sin(theta) * np.cos(theta)), -1)
        tangent = np.stack((a * np.cos(theta), a * np.cos(2 * theta)), -1)
        poses = []
        for g, t in zip(ground, tangent, strict=True):
            centre = np.array([g[0], 1.4, g[1]])
            direction = np.array([t[0], 0.0, t[1]]) / np.linalg.norm(t)
            poses.append(look_at(centre, centre + direction + np.array([0.0, -0.1, 0.0])))
        render = np.stack(poses)
        return render, render.copy()
    xs = np.linspace(-0.7, 0.5, n) * half[0]
    poses = [look_at(np.array([x, 1.4, 0.0]), np.array([x + 1.0, 1.3, 0.2 * np.sin(x)])) for x in xs]
    render = np.stack(poses)
    return render, render.copy()


@dataclass
class Sequence:
    """A rendered trajectory: images, exact depth and cameras, and what a drifting stream reports."""

    name: str
    scene: SyntheticScene
    render_poses: np.ndarray  # [F, 4, 4] cam-to-world in the room (what the images show)
    world_poses: np.ndarray  # [F, 4, 4] true cam-to-world
    width: int
    height: int
    _cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    _by_hash: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def num_frames(self) -> int:
        return len(self.world_poses)

    @property
    def intrinsic(self) -> np.ndarray:
        return self.scene.intrinsics(self.width, self.height)

    def view(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Image [H, W, 3] uint8 and exact depth [H, W] float32 of a frame (rendered once, then cached)."""
        if frame not in self._cache:
            self.scene.cam_to_world = self.render_poses
            image, depth = self.scene.render(frame, self.width, self.height)
            self._cache[frame] = (image, depth)
            self._by_hash.setdefault(hashlib.sha1(image.tobytes()).hexdigest(), frame)
        return self._cache[frame]

    def image(self, frame: int) -> np.ndarray:
        return self.view(frame)[0]

    def true_extrinsics(self) -> np.ndarray:
        """True camera-from-world [F, 3, 4] in the first camera's frame (the stream's world)."""
        first_inv = np.linalg.inv(self.world_poses[0])
        rel = np.linalg.inv(first_inv @ self.world_poses)  # camera-from-first-camera
        return rel[:, :3, :]

    def engine_results(self, drift: Drift | None, seed: int = 0) -> Iterator[FrameResult]:
        """FrameResults of a stream that drifts: relative motions perturbed by a Sim(3) random walk, depth in the
        drifting units with noise and outliers. drift None: exact results."""
        rng = np.random.default_rng(seed)
        true = [Sim3.from_extrinsic(e) for e in self.true_extrinsics()]
        estimate = true[0]
        for frame in range(self.num_frames):
            if frame > 0:
                step = true[frame - 1].inverse() @ true[frame]
                if drift is not None:
                    rotvec = rng.normal(0.0, drift.rotation, 3)
                    noise_rot = torch.from_numpy(rotvec)
                    angle = float(noise_rot.norm())
                    rot = _rotvec_to_matrix(rotvec) if angle > 0 else np.eye(3)
                    length = float(np.linalg.norm(step.translation))
                    trans = rng.normal(0.0, drift.translation * length, 3)
                    step = Sim3(float(np.exp(rng.normal(0.0, drift.scale))), rot, trans) @ step
                estimate = estimate @ step
            image, depth = self.view(frame)
            depth = depth.astype(np.float64) * estimate.scale
            if drift is not None:
                depth = depth * (1.0 + rng.normal(0.0, drift.depth_noise, depth.shape))
                wrong = rng.random(depth.shape) < drift.outliers
                depth = np.where(wrong, rng.uniform(0.2, 3.0, depth.shape) * np.median(depth), depth)
            depth = depth.astype(np.float32)
            extrinsic = estimate.extrinsic()
            intrinsic = self.intrinsic
            points = unproject_depth(torch.from_numpy(depth), torch.from_numpy(extrinsic), torch.from_numpy(intrinsic))
            yield FrameResult(
                index=frame,
                name=f"{frame:06d}",
                source_index=frame,
                timestamp=None,
                image=image,
                valid=np.ones(depth.shape, bool),
                extrinsic=extrinsic,
                intrinsic=intrinsic,
                depth=depth,
                depth_conf=np.ones_like(depth),
                world_points=points.numpy().astype(np.float32),
                world_points_conf=np.ones_like(depth),
            )

    def predictor(self, units: float = 0.7):
        """A ground-truth ``predict``: exact geometry of the frames it is given, from what the images show (their
        render poses: in identical rooms it sees one room, as a model would), ``units`` times metric."""

        def predict(images: list[np.ndarray]) -> list[FramePrediction]:
            frames = []
            for image in images:
                key = hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()
                if key not in self._by_hash:
                    raise KeyError("the ground-truth predictor was given an image it did not render")
                frames.append(self._by_hash[key])
            first = self.render_poses[frames[0]]
            out = []
            for frame in frames:
                cam_from_first = np.linalg.inv(self.render_poses[frame]) @ first
                extrinsic = cam_from_first[:3].copy()
                extrinsic[:, 3] *= units
                depth = self.view(frame)[1] * units
                out.append(FramePrediction(extrinsic, self.intrinsic, depth, np.ones_like(depth)))
            return out

        return predict


def _rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues' formula."""
    angle = float(np.linalg.norm(rotvec))
    axis = rotvec / angle
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def make_sequence(kind: str, seed: int = 0, frames_per_lap: int = 90, width: int = 64, height: int = 48) -> Sequence:
    """A rendered sequence of trajectory ``kind`` (see :func:`camera_path`) in a random room of ``seed``."""
    rng = np.random.default_rng(seed)
    scene = SyntheticScene(rng, num_frames=2)
    render, world = camera_path(kind, scene.room, frames_per_lap)
    centres = render[:, :3, 3]

    def clear(centre: np.ndarray, radius: float) -> bool:
        return float(np.linalg.norm(centres - centre, axis=1).min()) > radius + 0.4

    # The room's objects were placed for its own path: keep those clear of this one.
    scene.boxes = [b for b in scene.boxes if clear(b.center, float(np.linalg.norm(b.half_size)))]
    scene.spheres = [s for s in scene.spheres if clear(s.center, s.radius)]
    scene.textures = [*scene.room_textures, *(b.texture for b in scene.boxes), *(s.texture for s in scene.spheres)]
    scene.cam_to_world = render
    return Sequence(kind, scene, render, world, width, height)


def ate_rmse(extrinsics: np.ndarray, true_extrinsics: np.ndarray) -> float:
    """Absolute trajectory error: RMS distance of camera centres [N] after the Sim(3) that best aligns the
    estimate to the truth (Umeyama), in the truth's units."""
    est = np.stack([Sim3.from_extrinsic(e).translation for e in extrinsics])
    ref = np.stack([Sim3.from_extrinsic(e).translation for e in true_extrinsics])
    scale, rot, trans = umeyama(torch.from_numpy(est), torch.from_numpy(ref))
    aligned = float(scale) * est @ rot.numpy().T + trans.numpy()
    return float(np.sqrt(np.mean(np.sum((aligned - ref) ** 2, axis=1))))


def true_revisits(
    sequence: Sequence, keyframes: list[int], gap: int, distance: float = 0.3, angle_deg: float = 15.0
) -> dict[int, list[int]]:
    """For each keyframe (frame index) that truly revisits an earlier keyframe at least ``gap`` frames older:
    those earlier keyframes whose camera is within ``distance`` median depths (of the later view) and
    ``angle_deg`` of its orientation, in the true world."""
    poses = sequence.world_poses
    out: dict[int, list[int]] = {}
    for later in keyframes:
        median = float(np.median(sequence.view(later)[1]))
        matches = []
        for earlier in keyframes:
            if earlier > later - gap:
                break
            offset = np.linalg.norm(poses[later, :3, 3] - poses[earlier, :3, 3]) / median
            turn = math.degrees(rotation_angle(poses[earlier, :3, :3].T @ poses[later, :3, :3]))
            if offset <= distance and turn <= angle_deg:
                matches.append(earlier)
        if matches:
            out[later] = matches
    return out
