"""Bundle adjustment over track correspondences (``--use-ba``) and the streaming track pass that feeds it."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from streamvggt.evaluate.bundle_adjust import (
    bundle_adjust,
    reprojection_errors,
    require_pycolmap,
    select_observations,
    triangulate,
)
from streamvggt.evaluate.metrics import relative_pose_errors
from streamvggt.evaluate.runner import stream_sequence
from streamvggt.evaluate.tracks import grid_queries, track_sequence
from streamvggt.io.errors import InputError
from streamvggt.io.inputs.preprocess import Preprocessor
from tests.reconstruct_helpers import frame_pixels, tiny_model

WIDTH, HEIGHT = 320, 240
K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])


def synthetic_problem(seed: int = 0, frames: int = 6, points: int = 300):
    """Exact pixels of random points 4-6 m ahead, seen by cameras near the first one (frame 0 = identity)."""
    rng = np.random.default_rng(seed)
    world = rng.uniform([-1, -1, 4], [1, 1, 6], (points, 3))
    extrinsics = np.zeros((frames, 3, 4))
    extrinsics[0, :, :3] = np.eye(3)
    for i in range(1, frames):
        extrinsics[i, :, :3] = Rotation.from_euler("xyz", rng.normal(0, 0.05, 3)).as_matrix()
        extrinsics[i, :, 3] = rng.normal(0, 0.3, 3)
    intrinsics = np.repeat(K[None], frames, axis=0)
    cam = np.einsum("sij,nj->sni", extrinsics[:, :, :3], world) + extrinsics[:, None, :, 3]
    tracks = cam[..., :2] / cam[..., 2:] * 300.0 + [160.0, 120.0]
    return world, extrinsics, intrinsics, tracks, rng


def perturbed(extrinsics: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every camera but the first turned by ~1 degree and moved by ~5 cm."""
    noisy = extrinsics.copy()
    for i in range(1, len(noisy)):
        noisy[i, :, :3] = Rotation.from_rotvec(rng.normal(0, 0.02, 3)).as_matrix() @ noisy[i, :, :3]
        noisy[i, :, 3] += rng.normal(0, 0.05, 3)
    return noisy


def test_triangulation_recovers_points_from_exact_pixels():
    world, extrinsics, intrinsics, tracks, _ = synthetic_problem()
    observed = np.ones(tracks.shape[:2], dtype=bool)
    observed[2:, :10] = False  # tracks seen in two frames only are still solved
    points, valid = triangulate(extrinsics, intrinsics, tracks, observed)
    assert valid.all()
    np.testing.assert_allclose(points, world, atol=1e-9)
    assert reprojection_errors(extrinsics, intrinsics, points, tracks).max() < 1e-6


def test_a_track_seen_once_cannot_be_triangulated():
    _, extrinsics, intrinsics, tracks, _ = synthetic_problem(points=5)
    observed = np.zeros(tracks.shape[:2], dtype=bool)
    observed[0] = True
    _, valid = triangulate(extrinsics, intrinsics, tracks, observed)
    assert not valid.any()


def test_bundle_adjustment_recovers_poses_from_noisy_start():
    _, truth, intrinsics, tracks, rng = synthetic_problem()
    noisy = perturbed(truth, rng)
    rra_before, rta_before = relative_pose_errors(noisy, truth)
    result = bundle_adjust(noisy, intrinsics, (HEIGHT, WIDTH), tracks, np.ones(tracks.shape[:2], dtype=bool))
    rra_after, rta_after = relative_pose_errors(result.extrinsics, truth)
    assert rra_before.max() > 1.0 and rta_before.max() > 5.0  # degrees: a real error to remove
    assert rra_after.max() < 1e-3 and rta_after.max() < 1e-3
    np.testing.assert_array_equal(result.extrinsics[0], noisy[0])  # the first camera is held fixed
    assert result.refined_frames.tolist() == [False] + [True] * 5
    assert result.initial_error > 1.0 and result.final_error < 1e-3  # pixels
    assert result.observations == tracks.shape[0] * tracks.shape[1]


def test_bundle_adjustment_drops_outlier_observations():
    _, truth, intrinsics, tracks, rng = synthetic_problem(seed=1)
    tracks = tracks.copy()
    tracks[3, :20] += 60.0  # 20 wrong correspondences in frame 3
    noisy = perturbed(truth, rng)
    result = bundle_adjust(noisy, intrinsics, (HEIGHT, WIDTH), tracks, np.ones(tracks.shape[:2], dtype=bool))
    rra, rta = relative_pose_errors(result.extrinsics, truth)
    assert rra.max() < 1e-3 and rta.max() < 1e-3
    assert result.observations == tracks.shape[0] * tracks.shape[1] - 20


def test_bundle_adjustment_without_shared_tracks_keeps_the_input_poses():
    _, truth, intrinsics, tracks, _ = synthetic_problem(points=20)
    observed = np.zeros(tracks.shape[:2], dtype=bool)
    observed[0] = True  # nothing seen twice
    result = bundle_adjust(truth, intrinsics, (HEIGHT, WIDTH), tracks, observed)
    np.testing.assert_array_equal(result.extrinsics, truth)
    assert not result.refined_frames.any() and np.isnan(result.final_error)


def test_observations_need_visibility_and_confidence():
    visibility = np.array([[0.9, 0.9, 0.1], [0.5, 0.21, 0.9]])
    confidence = np.array([[0.9, 0.1, 0.9], [0.5, 0.9, 0.9]])
    assert select_observations(visibility, confidence).tolist() == [[True, False, False], [True, True, True]]


def test_missing_pycolmap_is_a_one_line_input_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # import fails as if not installed
    with pytest.raises(InputError, match="--use-ba needs pycolmap"):
        require_pycolmap()


def test_grid_queries_cover_the_frame_at_cell_centres():
    queries = grid_queries(32, 48, step=16)
    assert queries.tolist() == [[7.5, 7.5], [23.5, 7.5], [39.5, 7.5], [7.5, 23.5], [23.5, 23.5], [39.5, 23.5]]


def test_track_pass_gives_the_plain_pass_cameras_and_starts_at_the_queries():
    model = tiny_model()
    frames = [(f"{i}", frame_pixels(i, 70, 56)) for i in range(3)]
    preprocessor = Preprocessor("resize", 70)
    tracked = track_sequence(model, frames, preprocessor=preprocessor, step=14)
    plain = stream_sequence(model, frames, preprocessor=preprocessor)
    np.testing.assert_allclose(tracked.extrinsics, np.stack([r.extrinsic for r in plain]), atol=1e-6)
    np.testing.assert_allclose(tracked.intrinsics, np.stack([r.intrinsic for r in plain]), rtol=1e-6)
    assert tracked.image_size == (56, 70) and tracked.tracks.shape == (3, 20, 2)
    np.testing.assert_allclose(tracked.tracks[0], grid_queries(56, 70, 14), atol=1e-4)
    assert ((tracked.visibility > 0) & (tracked.visibility < 1)).all()
