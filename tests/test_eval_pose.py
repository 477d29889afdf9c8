"""The camera-pose protocols: CO3D relative-pose AUC, TUM / ScanNet / Sintel ATE and RPE, and ``--use-ba``."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from streamvggt.evaluate import pose
from streamvggt.evaluate.datasets.co3d import Co3dDataset, pytorch3d_to_opencv
from streamvggt.evaluate.datasets.scannet import ScanNetDataset
from streamvggt.evaluate.datasets.tum import TumDataset
from streamvggt.evaluate.runner import stream_sequence
from streamvggt.evaluate.tracks import TrackedSequence
from streamvggt.io.errors import InputError
from tests.eval_fakes import FAKE_MODEL
from tests.eval_fakes_mv import camera_to_world, write_co3d, write_scannet, write_sintel, write_tum
from tests.hand_metrics import auc, homogeneous, pair_angles, sim3_trajectory_errors
from tests.reconstruct_helpers import tiny_model

SIZE = 70  # model input size for the tests (the protocols use 518)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


# ------------------------------------------------------------------------------------------------------ readers


def test_pytorch3d_camera_becomes_opencv():
    # PyTorch3D: x_cam = x_world R + T with x left, y up. Identity R, camera 5 m behind the origin.
    extrinsic = pytorch3d_to_opencv(np.eye(3), [0.0, 0.0, 5.0])
    # A point 1 m to the world's +x is on the PyTorch3D camera's left, so on OpenCV's negative x; up is -y.
    np.testing.assert_allclose(extrinsic @ [1.0, 2.0, 0.0, 1.0], [-1.0, -2.0, 5.0, 1.0])
    # A rotated camera: R maps row vectors, so OpenCV's rotation is R^T with x and y flipped.
    rotation = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    extrinsic = pytorch3d_to_opencv(rotation, [0.1, 0.2, 3.0])
    point = np.array([0.3, -0.4, 0.5])
    pt3d_cam = point @ rotation + [0.1, 0.2, 3.0]
    np.testing.assert_allclose(extrinsic[:3, :3] @ point + extrinsic[:3, 3], pt3d_cam * [-1, -1, 1])


def test_co3d_reader_skips_short_or_insane_sequences_and_draws_like_the_reference(tmp_path):
    # The file lists d_long before b_long: both reference scripts iterate sorted(annotation.keys()), so b_long
    # takes the first draw whatever the file's order.
    write_co3d(tmp_path, {"d_long": 50, "a_short": 49, "c_far": 50, "b_long": 50}, bad_translation="c_far")
    data = Co3dDataset(tmp_path)
    assert data.categories() == ["apple"]
    assert list(data.read_annotations("apple")) == ["d_long", "a_short", "c_far", "b_long"]
    sequences = data.sequences("apple", np.random.RandomState(0), num_frames=10)
    assert [s.name for s in sequences] == ["apple/b_long", "apple/d_long"]
    np.random.seed(0)  # the reference: one global seed, one draw per usable sequence in sorted order
    draws = [np.random.choice(50, 10, replace=False) for _ in range(2)]
    for sequence, drawn in zip(sequences, draws, strict=True):
        assert [p.name for p in sequence.images] == [f"frame{i + 1:06d}.jpg" for i in drawn]
        np.testing.assert_allclose(sequence.cam_from_world, [np.linalg.inv(camera_to_world(i)) for i in drawn])


def test_tum_reader_turns_quaternions_into_camera_from_world(tmp_path):
    (sequence,) = TumDataset(write_tum(tmp_path, frames=3)).sequences()
    assert len(sequence.images) == 3 and sequence.images[0].suffix == ".png"
    np.testing.assert_allclose(sequence.cam_from_world, [np.linalg.inv(camera_to_world(i)) for i in range(3)],
                               atol=1e-8)  # fmt: skip


def test_scannet_reader_keeps_unknown_poses_non_finite(tmp_path):
    (sequence,) = ScanNetDataset(write_scannet(tmp_path, frames=4, invalid=1)).sequences()
    assert not np.isfinite(sequence.cam_from_world[1]).all()
    np.testing.assert_allclose(sequence.cam_from_world[2], np.linalg.inv(camera_to_world(2)), atol=1e-8)


def test_reader_rejects_images_and_poses_that_do_not_pair(tmp_path):
    write_tum(tmp_path, frames=3)
    next((tmp_path).glob("*/rgb_90/*.png")).unlink()
    with pytest.raises(InputError, match="2 images but 3 poses"):
        TumDataset(tmp_path).sequences()


# ------------------------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize(
    ("dataset", "writer", "sequence"),
    [("tum", write_tum, "rgbd_dataset_freiburg3_walking_xyz"), ("scannet", write_scannet, "scene0707_00"),
     ("sintel", write_sintel, "alley_2")],
)  # fmt: skip
def test_trajectory_protocol_writes_ate_and_rpe(tmp_path, model, monkeypatch, dataset, writer, sequence):
    streamed = record_stream(monkeypatch)
    writer(tmp_path / "data", frames=4)
    summary = pose.run_pose(dataset, tmp_path / "data", model, tmp_path / "out", size=SIZE)
    assert set(summary) == {"ate", "rpe_trans", "rpe_rot_deg", "frames"} and summary["frames"] == 4
    # Recomputed from the cameras the session predicted and the fake's true cameras.
    (predicted,) = streamed
    pred_c2w, gt_c2w = np.linalg.inv(homogeneous(predicted)), np.stack([camera_to_world(i) for i in range(4)])
    expected = sim3_trajectory_errors(pred_c2w, gt_c2w)
    for key in ("ate", "rpe_trans", "rpe_rot_deg"):
        assert summary[key] == pytest.approx(expected[key], rel=1e-5), key
    document = json.loads((tmp_path / "out" / f"pose-{dataset}.json").read_text())
    assert list(document["per_sequence"]) == [sequence] and document["meta"]["use_ba"] is False
    assert (tmp_path / "out" / "plots" / f"pose-{dataset}" / f"{sequence}.png").is_file()


def test_scannet_frames_without_pose_are_left_out_of_the_metrics(tmp_path, model):
    write_scannet(tmp_path, frames=5, invalid=2)
    assert pose.run_pose("scannet", tmp_path, model, tmp_path / "out", size=SIZE, plots=False)["frames"] == 4
    assert not (tmp_path / "out" / "plots").exists()


def test_co3d_protocol_reports_auc_per_category(tmp_path, model, monkeypatch):
    streamed = record_stream(monkeypatch)
    write_co3d(tmp_path, {"s1": 50})
    summary = pose.run_pose("co3d", tmp_path, model, tmp_path / "out", num_frames=3, size=SIZE)
    assert set(summary) == {"auc_30", "auc_15", "auc_5", "auc_3", "r_acc_5", "t_acc_5", "sequences"}
    assert summary["sequences"] == 1
    # Recomputed from the session's cameras and the drawn frames' true cameras, pair by pair.
    (predicted,) = streamed
    truth = Co3dDataset(tmp_path).sequences("apple", np.random.RandomState(0), 3)[0].cam_from_world
    rra, rta = pair_angles(homogeneous(predicted), homogeneous(truth))
    for threshold in (30, 15, 5, 3):
        assert summary[f"auc_{threshold}"] == pytest.approx(auc(rra, rta, threshold), abs=1e-12)
    assert summary["r_acc_5"] == pytest.approx((rra < 5).mean()) and summary["t_acc_5"] == pytest.approx(
        (rta < 5).mean()
    )
    document = json.loads((tmp_path / "out" / "pose-co3d.json").read_text())
    assert list(document["per_sequence"]) == ["apple"] and document["meta"]["num_frames"] == 3


def record_stream(monkeypatch) -> list[np.ndarray]:
    """Let the protocol stream as usual, and keep each sequence's predicted cameras [S, 3, 4]."""
    streamed: list[np.ndarray] = []

    def recording(model, frames, cache="full", preprocessor=None):
        results = stream_sequence(model, frames, cache, preprocessor)
        streamed.append(np.stack([result.extrinsic for result in results]))
        return results

    monkeypatch.setattr(pose, "stream_sequence", recording)
    return streamed


def ground_truth_prediction(scale: float):
    """A stand-in for stream_sequence returning the fake datasets' true cameras with translations scaled."""

    def predict(model, frames, cache="full", preprocessor=None):
        results = []
        for index, _ in enumerate(list(frames)):
            extrinsic = np.linalg.inv(camera_to_world(index))[:3]
            extrinsic[:, 3] *= scale
            results.append(SimpleNamespace(extrinsic=extrinsic))
        return results

    return predict


def test_a_perfect_trajectory_scores_zero_ate(tmp_path, monkeypatch):
    monkeypatch.setattr(pose, "stream_sequence", ground_truth_prediction(scale=2.5))  # Sim(3) removes the scale
    write_tum(tmp_path, frames=5)
    summary = pose.run_pose("tum", tmp_path, FAKE_MODEL, tmp_path / "out", size=SIZE)
    assert summary["ate"] < 1e-9 and summary["rpe_trans"] < 1e-9 and summary["rpe_rot_deg"] < 1e-5


def test_perfect_co3d_cameras_score_auc_one(tmp_path, monkeypatch):
    write_co3d(tmp_path, {"s1": 50})
    frames_drawn = Co3dDataset(tmp_path).sequences("apple", np.random.RandomState(0), 4)[0]

    def predict(model, frames, cache="full", preprocessor=None):
        return [SimpleNamespace(extrinsic=e[:3] * [1, 1, 1, 3.0]) for e, _ in zip(frames_drawn.cam_from_world, frames,
                                                                                   strict=True)]  # fmt: skip

    monkeypatch.setattr(pose, "stream_sequence", predict)
    summary = pose.run_pose("co3d", tmp_path, FAKE_MODEL, tmp_path / "out", num_frames=4, size=SIZE)
    assert summary["auc_30"] == 1.0 and summary["auc_3"] == 1.0 and summary["r_acc_5"] == 1.0


def test_use_ba_reports_refined_numbers_beside_the_unchanged_plain_ones(tmp_path, model, monkeypatch):
    adjusted = []
    adjust = pose.bundle_adjust

    def recording_adjust(*args, **kwargs):
        result = adjust(*args, **kwargs)
        adjusted.append(result.extrinsics)
        return result

    monkeypatch.setattr(pose, "bundle_adjust", recording_adjust)
    write_tum(tmp_path / "data", frames=4)
    plain = pose.run_pose("tum", tmp_path / "data", model, tmp_path / "plain", size=SIZE)
    both = pose.run_pose("tum", tmp_path / "data", model, tmp_path / "ba", use_ba=True, size=SIZE)
    for key in ("ate", "rpe_trans", "rpe_rot_deg"):
        assert both[key] == pytest.approx(plain[key], rel=1e-5, abs=1e-7)
    # The _ba numbers are those of the cameras bundle adjustment returned.
    (refined,) = adjusted
    pred_c2w, gt_c2w = np.linalg.inv(homogeneous(refined)), np.stack([camera_to_world(i) for i in range(4)])
    expected = sim3_trajectory_errors(pred_c2w, gt_c2w)
    for key in ("ate", "rpe_trans", "rpe_rot_deg"):
        assert both[f"{key}_ba"] == pytest.approx(expected[key], rel=1e-5), key
    table = (tmp_path / "ba" / "pose-tum.md").read_text()
    assert "ate_ba" in table and "| ate |" in table


def test_use_ba_with_exact_tracks_repairs_perturbed_cameras(tmp_path, monkeypatch):
    # The track pass returns exact pixels of points 4-6 m ahead under the true cameras, and cameras 1..5 turned by
    # about 1 degree and moved by about 5 cm: bundle adjustment must bring them back.
    write_tum(tmp_path / "data", frames=6)
    rng = np.random.default_rng(0)
    true = np.stack([np.linalg.inv(camera_to_world(i))[:3] for i in range(6)])
    world = rng.uniform([-0.5, -0.5, 4.0], [0.5, 0.5, 6.0], (300, 3))
    k = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])
    cam = np.einsum("sij,nj->sni", true[:, :, :3], world) + true[:, None, :, 3]
    tracks = cam[..., :2] / cam[..., 2:] * 300.0 + [160.0, 120.0]
    noisy = true.copy()
    for i in range(1, 6):
        noisy[i, :, :3] = Rotation.from_rotvec(rng.normal(0, 0.02, 3)).as_matrix() @ noisy[i, :, :3]
        noisy[i, :, 3] += rng.normal(0, 0.05, 3)
    ones = np.ones(tracks.shape[:2])
    tracked = TrackedSequence(
        names=[str(i) for i in range(6)],
        image_size=(240, 320),
        extrinsics=noisy,
        intrinsics=np.repeat(k[None], 6, 0),
        tracks=tracks,
        visibility=ones,
        confidence=ones,
    )
    monkeypatch.setattr(pose, "track_sequence", lambda *args, **kwargs: tracked)
    summary = pose.run_pose("tum", tmp_path / "data", FAKE_MODEL, tmp_path / "out", use_ba=True, plots=False)
    assert summary["ate"] > 0.01 and summary["rpe_rot_deg"] > 0.5
    assert summary["ate_ba"] < summary["ate"] / 10 and summary["rpe_rot_deg_ba"] < summary["rpe_rot_deg"] / 10


def test_use_ba_without_pycolmap_fails_before_streaming(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycolmap", None)
    write_tum(tmp_path, frames=3)
    with pytest.raises(InputError, match="--use-ba needs pycolmap"):
        pose.run_pose("tum", tmp_path, FAKE_MODEL, tmp_path / "out", use_ba=True)


def test_pose_rejects_unknown_datasets_and_too_few_frames(tmp_path):
    with pytest.raises(ValueError, match="unknown pose dataset 'kitti'"):
        pose.run_pose("kitti", tmp_path, FAKE_MODEL, tmp_path / "out")
    with pytest.raises(ValueError, match="at least 2"):
        pose.run_pose("tum", tmp_path, FAKE_MODEL, tmp_path / "out", max_frames=1)
