"""The multi-view reconstruction protocol (7-Scenes, NRGBD): readers, view cropping, ICP, normals, end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from streamvggt.evaluate import recon
from streamvggt.evaluate.datasets.nrgbd import NrgbdDataset, read_poses
from streamvggt.evaluate.datasets.sevenscenes import INTRINSIC, SevenScenesDataset
from streamvggt.evaluate.icp import estimate_normals, icp_point_to_point
from streamvggt.geometry import depth_to_camera_points
from streamvggt.io.errors import InputError
from tests.eval_fakes import FAKE_MODEL
from tests.eval_fakes_mv import RGBD_HEIGHT, RGBD_WIDTH, camera_to_world, depth_map, write_7scenes, write_nrgbd
from tests.hand_metrics import cloud_errors
from tests.reconstruct_helpers import tiny_model

SMALL = {"resolution": (112, 84), "crop": 56}  # a quick version of the protocol's 518 x 392 and 224


# ----------------------------------------------------------------------------------------------- ICP and normals


def test_icp_recovers_a_known_rigid_offset():
    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, (2000, 3)) * [1.0, 0.5, 0.3]
    rotation = Rotation.from_euler("xyz", [2.0, -1.5, 3.0], degrees=True).as_matrix()
    offset = np.array([0.03, -0.02, 0.04])
    source = (target - offset) @ rotation  # so that target = rotation @ source + offset
    result = icp_point_to_point(source, target, threshold=0.1)
    np.testing.assert_allclose(result.transformation[:3, :3], rotation, atol=1e-6)
    np.testing.assert_allclose(result.transformation[:3, 3], offset, atol=1e-6)
    assert result.fitness == 1.0 and result.inlier_rmse < 1e-6


def test_icp_ignores_pairs_beyond_the_threshold():
    rng = np.random.default_rng(1)
    target = rng.uniform(-1, 1, (500, 3))
    source = np.concatenate([target + np.array([0.02, 0.0, 0.0]), rng.uniform(5, 6, (100, 3))])  # 100 far outliers
    result = icp_point_to_point(source, target, threshold=0.1)
    np.testing.assert_allclose(result.transformation[:3, 3], [-0.02, 0.0, 0.0], atol=1e-9)
    assert result.fitness == pytest.approx(500 / 600)


def test_normals_of_a_plane_are_its_normal_up_to_sign():
    rng = np.random.default_rng(2)
    points = (
        np.column_stack([rng.uniform(-1, 1, (300, 2)), np.zeros(300)])
        @ Rotation.from_euler("x", 30, degrees=True).as_matrix().T
    )
    expected = Rotation.from_euler("x", 30, degrees=True).as_matrix() @ [0.0, 0.0, 1.0]
    normals = estimate_normals(points)
    np.testing.assert_allclose(np.abs(normals @ expected), 1.0, atol=1e-9)


# ------------------------------------------------------------------------------------------------------ readers


def test_7scenes_reader_keeps_the_test_split_every_kf_frames(tmp_path):
    data = SevenScenesDataset(write_7scenes(tmp_path / "7scenes", frames=5), kf_every=2)  # 5 frames: 0, 2, 4
    (sequence,) = data.sequences()  # seq-02 is not in TestSplit.txt
    assert sequence.name == "chess/seq-01"
    assert [f.name for f in sequence.frames] == ["frame-000000", "frame-000002", "frame-000004"]
    depth = data.read_depth(sequence.frames[1].depth)
    expected = depth_map(2, RGBD_HEIGHT, RGBD_WIDTH)
    np.testing.assert_allclose(depth[5:-1, 5:-1], expected[5:-1, 5:-1], atol=6e-4)  # millimetre PNG
    assert depth[0, 0] == 0 and depth[-1, -1] == 0  # no measurement; 65535 (65.5 m) is beyond 10 m
    intrinsics, extrinsics = data.cameras(sequence)
    np.testing.assert_array_equal(intrinsics[0], INTRINSIC)
    np.testing.assert_allclose(extrinsics[1], np.linalg.inv(camera_to_world(2)), atol=1e-9)


def test_7scenes_root_may_hold_the_dataset_folder(tmp_path):
    write_7scenes(tmp_path / "7scenes", frames=1)
    assert SevenScenesDataset(tmp_path).root == tmp_path / "7scenes"
    with pytest.raises(InputError, match="no 7scenes dataset"):
        SevenScenesDataset(tmp_path / "7scenes" / "chess")


def test_nrgbd_reader_converts_opengl_poses_and_leaves_out_unknown_ones(tmp_path):
    data = NrgbdDataset(write_nrgbd(tmp_path, frames=4, nan_pose=2))
    (sequence,) = data.sequences()
    assert [f.name for f in sequence.frames] == ["0"]  # step min(500, 4 // 2) = 2: frame 2 has no pose
    data = NrgbdDataset(write_nrgbd(tmp_path / "all", frames=4))
    (sequence,) = data.sequences()
    assert [f.name for f in sequence.frames] == ["0", "2"]
    _, extrinsics = data.cameras(sequence)
    np.testing.assert_allclose(extrinsics[1], np.linalg.inv(camera_to_world(2)), atol=1e-8)


def test_an_opengl_pose_becomes_an_opencv_camera_by_hand(tmp_path):
    # An NRGBD camera at (1, 2, 3) with the identity OpenGL rotation: it looks down world -z with world +y up.
    (tmp_path / "poses.txt").write_text("1 0 0 1\n0 1 0 2\n0 0 1 3\n0 0 0 1\n")
    (c2w,) = read_poses(tmp_path / "poses.txt")
    # OpenCV axes: x right (world +x), y down (world -y), z forward (world -z).
    np.testing.assert_array_equal(c2w, [[1, 0, 0, 1], [0, -1, 0, 2], [0, 0, -1, 3], [0, 0, 0, 1]])
    cam_from_world = np.linalg.inv(c2w)
    # A point 1 m in front of the camera is on its optical axis at z = 1; a point 1 m above it has y = -1.
    np.testing.assert_allclose(cam_from_world @ [1.0, 2.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(cam_from_world @ [1.0, 3.0, 2.0, 1.0], [0.0, -1.0, 1.0, 1.0])


def test_a_7scenes_pose_file_without_four_rows_is_an_error_naming_it(tmp_path):
    root = write_7scenes(tmp_path, frames=1)
    pose_file = root / "chess" / "seq-01" / "frame-000000.pose.txt"
    pose_file.write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n")
    data = SevenScenesDataset(root)
    (sequence,) = data.sequences()
    with pytest.raises(InputError, match=f"{pose_file}: expected a 4 x 4 camera-to-world matrix, got 3 rows of 4"):
        data.cameras(sequence)


# ------------------------------------------------------------------------------------------------ view geometry


def test_views_are_cropped_and_resized_as_the_reference_loader():
    image = np.zeros((480, 640, 3), np.uint8)
    depth = depth_map(0, 480, 640)
    out_image, out_depth, k = recon.crop_resize(image, depth, INTRINSIC, (518, 392))
    assert out_image.shape == (392, 518, 3) and out_depth.shape == (392, 518)
    scale = 392 / 480  # covers 392 rows: 640 x 480 -> 522 x 392, then 2 columns cut on each side
    assert k[0, 0] == pytest.approx(525 * scale) and k[1, 1] == pytest.approx(525 * scale)
    assert k[0, 2] == pytest.approx((320.5 * scale - 0.5 * (640 * scale - 522) - 0.5) - 2)
    assert k[1, 2] == pytest.approx(240.5 * scale - 0.5)
    # nearest-neighbour depth: output pixel (r, c) reads source (floor(r / s), floor((c + 2) / s))
    assert out_depth[100, 100] == depth[int(100 * 480 / 392), int(102 * 640 / 522)]


def test_scale_and_shift_alignment_makes_a_scaled_shifted_copy_exact():
    rng = np.random.default_rng(3)
    gt = rng.uniform(-1, 1, (2, 8, 8, 3)) + np.array([0.0, 0.0, 3.0])
    valid = rng.uniform(size=(2, 8, 8)) > 0.2
    pred = gt * 4.0 + [0.0, 0.0, 1.5]  # a scale and a depth shift of the truth
    pred[~valid] = np.nan  # invalid pixels must not matter
    aligned_gt, aligned_pred = recon.align_scale_shift(gt, pred, valid)
    np.testing.assert_allclose(aligned_pred[valid], aligned_gt[valid], atol=1e-12)


# ------------------------------------------------------------------------------------------------- end to end


def test_recon_on_7scenes_writes_per_scene_and_mean_results(tmp_path, monkeypatch):
    registered = []
    register = recon.icp_point_to_point

    def recording_icp(source, target, threshold, *args, **kwargs):
        result = register(source, target, threshold, *args, **kwargs)
        registered.append((source, target, result.transformation, threshold))
        return result

    monkeypatch.setattr(recon, "icp_point_to_point", recording_icp)
    root = write_7scenes(tmp_path / "7scenes", frames=3)
    summary = recon.run_recon("7scenes", root, tiny_model(), tmp_path / "out", kf_every=1, **SMALL)
    assert summary["frames"] == 3 and 0 < summary["points"] <= 3 * 56 * 56
    # The scores, recomputed by hand from the clouds the protocol registered and the transform ICP found.
    ((pred, gt, transformation, threshold),) = registered
    assert threshold == 0.1 and len(pred) == summary["points"]
    expected = cloud_errors(pred @ transformation[:3, :3].T + transformation[:3, 3], gt)
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
    document = json.loads((tmp_path / "out" / "recon-7scenes.json").read_text())
    assert list(document["per_sequence"]) == ["chess/seq-01"]
    assert document["meta"]["crop"] == 56 and document["meta"]["kf_every"] == 1
    assert "| chess/seq-01 |" in (tmp_path / "out" / "recon-7scenes.md").read_text()
    assert (tmp_path / "out" / "plots" / "recon-7scenes" / "chess_seq-01.png").stat().st_size > 0


def perfect_prediction(model, frames, cache="full", preprocessor=None):
    """The true points of the fake 7-Scenes frames in the first camera's frame, scaled by 3 and moved 1 m
    along z: a perfect prediction up to the protocol's scale and shift."""
    results, first = [], None
    for name, _ in frames:
        index = int(name.removeprefix("frame-"))
        depth = np.round(depth_map(index, RGBD_HEIGHT, RGBD_WIDTH) * 1000) / 1000  # as stored: millimetres
        _, depth, k = recon.crop_resize(np.zeros((*depth.shape, 3), np.uint8), depth, INTRINSIC, SMALL["resolution"])
        first = camera_to_world(index) if first is None else first
        relative = np.linalg.inv(first) @ camera_to_world(index)
        cam = depth_to_camera_points(torch.from_numpy(depth).double(), torch.from_numpy(k)).numpy()
        points = cam @ relative[:3, :3].T + relative[:3, 3]
        results.append(SimpleNamespace(world_points=(points * 3.0 + [0.0, 0.0, 1.0]).astype(np.float32)))
    return results


def test_a_perfect_prediction_scores_zero_error(tmp_path, monkeypatch):
    monkeypatch.setattr(recon, "stream_sequence", perfect_prediction)
    root = write_7scenes(tmp_path / "7scenes", frames=3)
    summary = recon.run_recon("7scenes", root, FAKE_MODEL, tmp_path / "out", kf_every=1, **SMALL)
    assert summary["acc"] < 1e-5 and summary["comp"] < 1e-5  # metres (float32 point maps)
    assert summary["nc"] > 0.999 and summary["icp_fitness"] == 1.0


def test_recon_rejects_an_unknown_dataset_or_folder(tmp_path):
    with pytest.raises(ValueError, match="unknown reconstruction dataset 'dtu'"):
        recon.run_recon("dtu", tmp_path, FAKE_MODEL, tmp_path / "out")
    with pytest.raises(InputError, match="no nrgbd dataset"):
        recon.run_recon("nrgbd", tmp_path, FAKE_MODEL, tmp_path / "out")
