"""Bundle adjustment of predicted cameras over point tracks (``--use-ba``), solved by pycolmap (COLMAP's Ceres BA).

Recipe: keep the track observations the track head trusts, triangulate each track with the predicted cameras
(linear DLT), drop observations that reproject badly, then refine the camera poses and the points jointly by
minimising the reprojection error. The intrinsics stay fixed, as does the first camera (it defines the world
frame); the scale is left free, which the pose metrics ignore (angles, Sim(3)-aligned trajectories). Rounds with
tightening outlier thresholds (32, 16, 8 px) replace a robust loss, whose pycolmap option moved between versions.
The visibility and final reprojection thresholds follow VGGT's own BA demo.

pycolmap is an optional dependency (the ``eval`` extra): :func:`require_pycolmap` turns its absence into a
one-line error before any work is done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from streamvggt.extras import MissingExtraError, require
from streamvggt.io.errors import InputError
from streamvggt.io.outputs.colmap import PIXEL_OFFSET

log = logging.getLogger(__name__)

VIS_THRESHOLD = 0.2  # keep an observation when visibility and confidence exceed this (VGGT demo: vis > 0.2)
MAX_REPROJECTION_ERROR = 8.0  # pixels (VGGT demo)
MIN_TRACK_VIEWS = 2  # observations a track needs to be triangulated
INLIER_ITERATIONS = 3  # triangulate / re-select rounds per outlier threshold
MIN_FRAME_OBSERVATIONS = 8  # a frame seeing fewer points keeps its predicted pose: 6 DoF need a margin
# Outlier thresholds of the successive rounds, in units of the final one: the predicted cameras can be tens of
# pixels off, so a strict first threshold would discard the observations of exactly the frames that need them.
ROUND_THRESHOLD_FACTORS = (4.0, 2.0, 1.0)


def require_pycolmap() -> ModuleType:
    """The pycolmap module, or an :class:`InputError` saying how to install it."""
    try:
        return require("pycolmap", "eval", purpose="--use-ba")
    except MissingExtraError as error:
        raise InputError(str(error)) from None


@dataclass(frozen=True)
class BundleAdjustmentResult:
    """Refined cameras and what the adjustment used."""

    extrinsics: np.ndarray  # [S, 3, 4] float64 camera-from-world; unrefined frames keep their input pose
    points: np.ndarray  # [M, 3] the triangulated and refined points
    refined_frames: np.ndarray  # [S] bool: frames whose pose the adjustment changed (never frame 0)
    observations: int  # observations in the final round
    initial_error: float  # mean reprojection error (pixels) of those observations before the adjustment
    final_error: float  # and after it


def select_observations(visibility: np.ndarray, confidence: np.ndarray, threshold: float = VIS_THRESHOLD) -> np.ndarray:
    """Observations [S, N] bool the track head trusts: visibility and confidence both above ``threshold``."""
    return (np.asarray(visibility) > threshold) & (np.asarray(confidence) > threshold)


def triangulate(
    extrinsics: np.ndarray, intrinsics: np.ndarray, tracks: np.ndarray, observed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Linear (DLT) triangulation of every track from its observed pixels.

    extrinsics [S, 3, 4], intrinsics [S, 3, 3], tracks [S, N, 2] pixels, observed [S, N] bool. Returns points
    [N, 3] and valid [N] (at least two observations and a finite solution). Unobserved frames contribute zero rows,
    which leave the null space unchanged, so all tracks are solved in one batched SVD.
    """
    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]
    cx, cy = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None]
    x = (tracks[..., 0] - cx) / fx  # normalised image coordinates [S, N]: better conditioned than pixels
    y = (tracks[..., 1] - cy) / fy
    rows_x = x[..., None] * extrinsics[:, None, 2, :] - extrinsics[:, None, 0, :]  # [S, N, 4]
    rows_y = y[..., None] * extrinsics[:, None, 2, :] - extrinsics[:, None, 1, :]
    system = np.concatenate((rows_x, rows_y), axis=0) * np.concatenate((observed, observed), axis=0)[..., None]
    _, _, vh = np.linalg.svd(np.nan_to_num(system).transpose(1, 0, 2))  # [N, 2S, 4]
    homogeneous = vh[:, -1]
    w = homogeneous[:, 3]
    valid = (observed.sum(axis=0) >= MIN_TRACK_VIEWS) & (np.abs(w) > 1e-12)
    points = homogeneous[:, :3] / np.where(valid, w, 1.0)[:, None]
    return points, valid & np.isfinite(points).all(axis=-1)


def reprojection_errors(
    extrinsics: np.ndarray, intrinsics: np.ndarray, points: np.ndarray, tracks: np.ndarray
) -> np.ndarray:
    """Pixel distance [S, N] between each point [N, 3] projected into each frame and its track; inf behind the
    camera."""
    cam = np.einsum("sij,nj->sni", extrinsics[:, :, :3], points) + extrinsics[:, None, :, 3]
    z = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = intrinsics[:, 0, 0, None] * cam[..., 0] / z + intrinsics[:, 0, 2, None]
        v = intrinsics[:, 1, 1, None] * cam[..., 1] / z + intrinsics[:, 1, 2, None]
        error = np.hypot(u - tracks[..., 0], v - tracks[..., 1])
    return np.where((z > 0) & np.isfinite(error), error, np.inf)


def _inliers(
    extrinsics: np.ndarray,
    intrinsics: np.ndarray,
    tracks: np.ndarray,
    observed: np.ndarray,
    max_error: float,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate from the inliers (first ``start``, default all ``observed``), then re-select the inliers among
    all ``observed`` by reprojection error below ``max_error``; a few times, so a good observation rejected because
    an outlier pulled the first point comes back.

    Returns points [N, 3] and the kept observations [S, N] (tracks left with too few are dropped entirely)."""
    kept = observed if start is None else start
    for _ in range(INLIER_ITERATIONS):
        points, valid = triangulate(extrinsics, intrinsics, tracks, kept)
        errors = reprojection_errors(extrinsics, intrinsics, points, tracks)
        kept = observed & valid & (errors < max_error)
        kept &= kept.sum(axis=0) >= MIN_TRACK_VIEWS
    points, valid = triangulate(extrinsics, intrinsics, tracks, kept)
    return points, kept & valid


def bundle_adjust(
    extrinsics: np.ndarray,
    intrinsics: np.ndarray,
    image_size: tuple[int, int],
    tracks: np.ndarray,
    observed: np.ndarray,
    max_error: float = MAX_REPROJECTION_ERROR,
) -> BundleAdjustmentResult:
    """Refine ``extrinsics`` [S, 3, 4] (camera-from-world) with fixed ``intrinsics`` [S, 3, 3] over ``tracks``
    [S, N, 2] (pixels in frames of ``image_size`` (H, W)) observed where ``observed`` [S, N] is True.

    Frame 0 is held fixed, and so is any frame with fewer than 8 inlier observations. Without enough data (no
    track seen twice, or no frame besides the first to refine) the input poses are returned unchanged, with a
    warning.
    """
    pycolmap = require_pycolmap()
    extrinsics = np.asarray(extrinsics, dtype=np.float64)
    intrinsics = np.asarray(intrinsics, dtype=np.float64)
    tracks = np.asarray(tracks, dtype=np.float64)
    observed = np.asarray(observed, dtype=bool)
    frames = {len(extrinsics), len(intrinsics), len(tracks)}
    if tracks.ndim != 3 or tracks.shape[:2] != observed.shape or len(frames) != 1:
        raise ValueError(
            f"bundle adjustment needs matching frames: extrinsics {extrinsics.shape}, intrinsics "
            f"{intrinsics.shape}, tracks {tracks.shape}, observed {observed.shape}"
        )
    observed = observed & np.isfinite(tracks).all(axis=-1)
    current = extrinsics.copy()
    points, initial = _inliers(current, intrinsics, tracks, observed, max_error)
    initial_error = _mean_error(current, intrinsics, points, tracks, initial)
    kept = None
    refined_any = np.zeros(len(current), dtype=bool)
    for factor in ROUND_THRESHOLD_FACTORS:
        # Each round re-selects inliers among all trusted observations with the current cameras, so a frame whose
        # predicted pose was too far off for the strict threshold joins in once the loose rounds have moved it.
        points, kept = _inliers(current, intrinsics, tracks, observed, factor * max_error, start=kept)
        refined = kept.sum(axis=1) >= MIN_FRAME_OBSERVATIONS
        refined[0] = False
        if not refined.any():
            log.warning(
                "bundle adjustment skipped: no frame besides the first sees %d tracked points", MIN_FRAME_OBSERVATIONS
            )
            break
        current, points = _solve(pycolmap, current, intrinsics, image_size, tracks, kept, points, refined)
        refined_any |= refined
    kept &= reprojection_errors(current, intrinsics, points, tracks) < max_error
    final_error = _mean_error(current, intrinsics, points, tracks, kept)
    used = kept.any(axis=0)
    log.info(
        "bundle adjustment: %d frames refined, %d points, %d observations, reprojection error %.2f -> %.2f px",
        int(refined_any.sum()),
        int(used.sum()),
        int(kept.sum()),
        initial_error,
        final_error,
    )
    return BundleAdjustmentResult(
        extrinsics=current,
        points=points[used],
        refined_frames=refined_any,
        observations=int(kept.sum()),
        initial_error=initial_error,
        final_error=final_error,
    )


def _mean_error(
    extrinsics: np.ndarray, intrinsics: np.ndarray, points: np.ndarray, tracks: np.ndarray, kept: np.ndarray
) -> float:
    if not kept.any():
        return float("nan")
    return float(reprojection_errors(extrinsics, intrinsics, points, tracks)[kept].mean())


def _solve(
    pycolmap: ModuleType,
    extrinsics: np.ndarray,
    intrinsics: np.ndarray,
    image_size: tuple[int, int],
    tracks: np.ndarray,
    kept: np.ndarray,
    points: np.ndarray,
    refined: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One pycolmap BA over the kept observations; returns the adjusted extrinsics [S, 3, 4] and points [N, 3]."""
    height, width = image_size
    reconstruction = pycolmap.Reconstruction()
    config = pycolmap.BundleAdjustmentConfig()
    point2d_index = np.cumsum(kept, axis=1) - 1  # position of each kept observation among its frame's keypoints
    for i, (extrinsic, k) in enumerate(zip(extrinsics, intrinsics, strict=True)):
        # One PINHOLE camera per frame (the model predicts intrinsics per frame), COLMAP pixel convention.
        camera = pycolmap.Camera(
            model="PINHOLE",
            width=width,
            height=height,
            params=[k[0, 0], k[1, 1], k[0, 2] + PIXEL_OFFSET, k[1, 2] + PIXEL_OFFSET],
            camera_id=i + 1,
        )
        reconstruction.add_camera_with_trivial_rig(camera)
        image = pycolmap.Image(
            name=str(i), keypoints=tracks[i][kept[i]] + PIXEL_OFFSET, camera_id=i + 1, image_id=i + 1
        )
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(extrinsic[:, :3]), extrinsic[:, 3])
        reconstruction.add_image_with_trivial_frame(image, pose)
        config.add_image(i + 1)
        config.set_constant_cam_intrinsics(i + 1)
        if not refined[i]:
            config.set_constant_rig_from_world_pose(i + 1)  # trivial frames: frame id = image id
    point_ids = {}
    for j in np.flatnonzero(kept.any(axis=0)):
        track = pycolmap.Track()
        for i in np.flatnonzero(kept[:, j]):
            track.add_element(int(i) + 1, int(point2d_index[i, j]))
        point_ids[int(j)] = reconstruction.add_point3D(points[j], track)
    options = pycolmap.BundleAdjustmentOptions(
        refine_focal_length=False,
        refine_principal_point=False,
        refine_extra_params=False,
        refine_sensor_from_rig=False,
        print_summary=False,
    )
    summary = pycolmap.create_default_bundle_adjuster(options, config, reconstruction).solve()
    if not summary.is_solution_usable():
        log.warning("bundle adjustment did not converge to a usable solution; keeping the predicted poses")
        return extrinsics, points
    adjusted = np.stack([reconstruction.image(i + 1).cam_from_world().matrix() for i in range(len(extrinsics))])
    points = points.copy()
    for j, point_id in point_ids.items():
        points[j] = reconstruction.point3D(point_id).xyz
    return adjusted, points
