"""``streamvggt demo``: the held-out synthetic sequence, the outputs, and the scores against ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from streamvggt.evaluate.synthetic import DEMO_SEED, HELD_OUT_SEED, score, synthetic_sequence
from streamvggt.geometry import unproject_depth
from tests.hand_metrics import auc, depth_errors, evo_ate, homogeneous, pair_angles, weiszfeld_scale
from tests.reconstruct_helpers import tiny_checkpoint
from tests.test_cli import run_cli


def test_synthetic_sequence_geometry_is_consistent():
    """The first camera is the world frame, and frame 1's depth unprojects onto points frame 0 also sees."""
    import torch

    # A scene of large planes: nearest-pixel depth lookups are exact enough there (boxes add occlusion edges).
    seq = synthetic_sequence(3, seed=HELD_OUT_SEED)
    assert seq.images.shape == (3, 84, 112, 3) and seq.depth.shape == (3, 84, 112)
    np.testing.assert_allclose(seq.extrinsics[0], np.eye(4), atol=1e-12)
    points = unproject_depth(
        torch.from_numpy(seq.depth[1]).double(),
        torch.from_numpy(seq.extrinsics[1][:3]),
        torch.from_numpy(seq.intrinsic),
    )
    # Depth of frame 0 at the pixel where a world point projects equals the point's camera-0 z (where visible).
    cam0 = points.reshape(-1, 3).numpy()
    u = seq.intrinsic[0, 0] * cam0[:, 0] / cam0[:, 2] + seq.intrinsic[0, 2]
    v = seq.intrinsic[1, 1] * cam0[:, 1] / cam0[:, 2] + seq.intrinsic[1, 2]
    inside = (u >= 0) & (u <= 111) & (v >= 0) & (v <= 83) & (cam0[:, 2] > 0)
    sampled = seq.depth[0][np.round(v[inside]).astype(int), np.round(u[inside]).astype(int)]
    close = np.abs(sampled - cam0[inside, 2]) < 0.05 * cam0[inside, 2]
    assert inside.mean() > 0.5 and close.mean() > 0.8


def test_perfect_prediction_scores_perfectly_and_beats_baselines():
    seq = synthetic_sequence(4)
    metrics = score(seq.depth * 3.0, seq.extrinsics, seq)
    model = metrics["model"]
    assert model["depth_abs_rel"] == pytest.approx(0, abs=1e-6) and model["rra_deg"] == pytest.approx(0, abs=1e-4)
    assert model["auc_30"] == pytest.approx(1.0)
    assert metrics["baseline_constant_depth"]["depth_abs_rel"] > 0.01
    assert metrics["baseline_identity_pose"]["rta_deg"] == pytest.approx(90.0)


def test_demo_command_writes_outputs_and_metrics(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "checkpoint")
    out = tmp_path / "demo"
    code, stdout, stderr = run_cli("demo", "-o", out, "--checkpoint", checkpoint, "--frames", "3", "--no-progress")
    assert code == 0, stderr
    assert "depth Abs Rel" in stdout and "metrics.json" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"] == 3 and metrics["image_size"] == [84, 112]
    assert f"depth Abs Rel {metrics['model']['depth_abs_rel']:.3f}" in stdout
    assert Image.open(out / "demo.png").size[0] > 400
    truth = synthetic_sequence(3, seed=DEMO_SEED)
    for index, path in enumerate(sorted((out / "frames").glob("*.png"))):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), truth.images[index])  # the frames streamed
    assert len(trimesh.load(out / "points.ply").vertices) > 0

    # metrics.json recomputed by hand from the written depth maps and cameras and the scene's ground truth.
    cameras = json.loads((out / "cameras.json").read_text())["frames"]
    assert len(cameras) == 3
    depth = np.stack([np.load(out / camera["depth"]) for camera in cameras]).astype(np.float64)
    extrinsics = homogeneous(np.array([camera["extrinsic"] for camera in cameras]))
    model = metrics["model"]
    expected_depth = depth_errors(weiszfeld_scale(depth, truth.depth) * depth, truth.depth)
    assert model["depth_abs_rel"] == pytest.approx(expected_depth["abs_rel"], rel=1e-6)
    assert model["depth_delta_1.25"] == pytest.approx(expected_depth["delta_1.25"], abs=1e-12)
    rra, rta = pair_angles(extrinsics, truth.extrinsics)
    assert model["rra_deg"] == pytest.approx(rra.mean(), rel=1e-6, abs=1e-9)
    assert model["rta_deg"] == pytest.approx(rta.mean(), rel=1e-6, abs=1e-9)
    assert model["auc_30"] == pytest.approx(auc(rra, rta), abs=1e-12)
    ate = evo_ate(np.linalg.inv(extrinsics), np.linalg.inv(truth.extrinsics))
    assert model["ate"] == pytest.approx(ate, rel=1e-6)

    constant = np.ones_like(truth.depth)
    flat = depth_errors(weiszfeld_scale(constant, truth.depth) * constant, truth.depth)
    assert metrics["baseline_constant_depth"]["depth_abs_rel"] == pytest.approx(flat["abs_rel"], rel=1e-6)
    still_rra, _ = pair_angles(np.tile(np.eye(4), (3, 1, 1)), truth.extrinsics)
    assert metrics["baseline_identity_pose"]["rra_deg"] == pytest.approx(still_rra.mean(), rel=1e-6)
    assert metrics["baseline_identity_pose"]["rta_deg"] == pytest.approx(90.0)


def test_demo_rejects_a_single_frame(tmp_path):
    code, _, stderr = run_cli("demo", "-o", tmp_path / "demo", "--frames", "1")
    assert code == 1 and "at least 2" in stderr


def test_the_bundled_model_ships_and_is_the_default(tmp_path):
    """``load_model()`` and ``reconstruct`` without --checkpoint use the weights inside the package."""
    from streamvggt import ModelConfig, load_model
    from streamvggt.weights import DEFAULT_MODEL_DIR
    from tests.reconstruct_helpers import write_images

    weights = DEFAULT_MODEL_DIR / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 25 * 2**20
    assert (DEFAULT_MODEL_DIR / "README.md").is_file(), "the model card ships beside the weights"
    model = load_model(device="cpu")
    assert model.config == ModelConfig.preset("default")
    write_images(tmp_path / "frames", ["0.png", "1.png"])
    code, _, stderr = run_cli("reconstruct", tmp_path / "frames", "-o", tmp_path / "out", "--size", "112")
    assert code == 0, stderr
    assert len(json.loads((tmp_path / "out" / "cameras.json").read_text())["frames"]) == 2


def test_demo_into_a_file_fails_before_rendering_or_loading(tmp_path):
    from streamvggt.demo import run_demo
    from streamvggt.io.errors import OutputError

    (tmp_path / "taken").write_text("")
    with pytest.raises(OutputError, match="it is a file, not a folder"):
        run_demo(tmp_path / "taken", tmp_path / "missing.pt", num_frames=2)


def test_a_two_frame_demo_scores_pairs_without_a_trajectory_error():
    from streamvggt.evaluate.synthetic import score, synthetic_sequence

    sequence = synthetic_sequence(2)
    metrics = score(sequence.depth, sequence.extrinsics, sequence)
    assert metrics["model"]["rra_deg"] == pytest.approx(0, abs=1e-6) and "ate" not in metrics["model"]
