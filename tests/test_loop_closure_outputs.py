"""Loop closure in the frame loop and its outputs: ``streamvggt reconstruct --loop-closure`` (and reconstruct-many,
view) writes every output with the map's corrected cameras and scaled depth, re-places the spooled points, and
lists the accepted loops in loops.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import streamvggt.pipeline.reconstructor as reconstructor_module
from streamvggt.io.inputs.preprocess import Preprocessor
from streamvggt.io.inputs.sources import Frame
from streamvggt.io.outputs.interchange import ExportOptions
from streamvggt.io.outputs.points import VoxelGrid, confident_points
from streamvggt.io.outputs.writer import ReconstructionWriter
from streamvggt.mapping import GlobalMap, MapOptions
from streamvggt.mapping.simulate import Drift, ate_rmse, make_sequence
from streamvggt.pipeline.loop_closure import MapFollower
from streamvggt.pipeline.run import WriteFrames, run_frames
from tests.helpers import run_cli

pytest.importorskip("gtsam")
trimesh = pytest.importorskip("trimesh")

CONF = 0.0  # keep every valid pixel: the expected clouds are then simple to rebuild


class Replay:
    """A stepper that plays precomputed results (a drifting stream of a rendered sequence)."""

    def __init__(self, results: list) -> None:
        self.results = iter(results)
        self.preprocessor = Preprocessor("crop", 70)

    def step(self, frame: Frame):
        return next(self.results)


def ply_points(path: Path) -> np.ndarray:
    return np.asarray(trimesh.load(path).vertices, dtype=np.float64)


def expected_points(results: list, gmap: GlobalMap, indices: list[int]) -> np.ndarray:
    """Every frame's confident depth points, moved by its frame's correction, in stream order."""
    parts = []
    for row, result in enumerate(results):
        xyz, conf = result.points("depth")
        records = confident_points(xyz, conf, result.image, result.valid, result.index, CONF)
        parts.append(gmap.correction(row).apply(records["xyz"].astype(np.float64)))
    return np.concatenate(parts)


def check_outputs(out: Path, follower: MapFollower, raw: list, rgbd: bool = False) -> None:
    """The files of ``out`` agree with the map's read-back, given the stream's raw results."""
    gmap = follower.gmap
    poses, scales = gmap.poses(), gmap.scales()
    cameras = json.loads((out / "cameras.json").read_text())
    frames = cameras["frames"]
    assert [f["index"] for f in frames] == follower.indices == [r.index for r in raw]
    written = np.array([f["extrinsic"] for f in frames], dtype=np.float64)
    np.testing.assert_allclose(written, poses, atol=1e-9)
    tum = np.loadtxt(out / "trajectory.tum", comments="#")
    centres = -np.einsum("nji,nj->ni", poses[:, :, :3], poses[:, :, 3])
    np.testing.assert_allclose(tum[:, 1:4], centres, atol=1e-6)
    for row, result in enumerate(raw):
        depth = np.load(out / "depth" / f"{result.index:06d}.npy")
        np.testing.assert_allclose(depth, result.depth * scales[row], rtol=1e-6)
        if rgbd:
            png = np.asarray(Image.open(out / "rgbd" / "depth" / f"{result.index:06d}.png")).astype(np.float64)
            ideal = np.rint(result.depth.astype(np.float64) * scales[row] * 5000)
            assert np.abs(png - ideal).max() <= 1 + scales[row]  # rounded twice: once as streamed, once scaled
            pointmap = np.load(out / "pointmap" / f"{result.index:06d}.npy")
            moved = gmap.correction(row).apply(result.world_points.reshape(-1, 3).astype(np.float64))
            np.testing.assert_allclose(pointmap.reshape(-1, 3), moved, atol=1e-5)
    report = json.loads((out / "loops.json").read_text())
    assert [(loop["earlier"], loop["later"]) for loop in report["loops"]] == [
        (follower.indices[a], follower.indices[b]) for a, b in gmap.loops
    ]
    for loop in report["loops"]:
        assert {"similarity", "inlier_fraction", "residual", "scale", "transform"} <= set(loop)
    assert report["frames"] == len(raw) and report["keyframes"] == len(gmap.keyframes)


@pytest.fixture(scope="module")
def circle():
    """Two laps of a circle, rendered, with a drifting stream's results."""
    sequence = make_sequence("circle", seed=0, frames_per_lap=36)
    return sequence, list(sequence.engine_results(Drift(), seed=0))


def run_pipeline(tmp: Path, sequence, results, voxel_size: float | None = None) -> tuple[MapFollower, Path]:
    """The frame loop of ``reconstruct`` with the drifting stream and a ground-truth verification predictor."""
    out = tmp / ("voxels" if voxel_size else "out")
    exports = ExportOptions(rgbd=True)
    frames = [Frame(sequence.image(i), f"{i:06d}", i) for i in range(len(results))]
    with ReconstructionWriter(
        out, conf_threshold=CONF, voxel_size=voxel_size, pointmaps=True, exports=exports, correctable=True
    ) as writer:
        # As reconstruct does: keyframe images are read back from images/ (lossless), not kept.
        gmap = GlobalMap(sequence.predictor(), MapOptions(exclusion_gap=20), image_source=writer.read_image)
        follower = MapFollower(gmap, descriptor="image")
        run_frames(Replay(results), frames, [WriteFrames(writer, Preprocessor("crop", 70)), follower])
        writer.finish({}, follower.corrections())
    return follower, out


def test_an_accepted_loop_moves_every_output_to_the_corrected_map(circle, tmp_path):
    sequence, results = circle
    follower, out = run_pipeline(tmp_path, sequence, results)
    gmap = follower.gmap
    assert gmap.loops, "the revisit of the second lap closes no loop"
    check_outputs(out, follower, results, rgbd=True)
    # The loops pulled the trajectory back: the written cameras are closer to the truth than the stream's.
    raw = np.stack([r.extrinsic for r in results])
    written = np.array([f["extrinsic"] for f in json.loads((out / "cameras.json").read_text())["frames"]])
    truth = sequence.true_extrinsics()
    assert ate_rmse(written, truth) < 0.5 * ate_rmse(raw, truth)
    assert np.abs(gmap.scales() - 1).max() > 1e-3  # the depth was really rescaled, not left as streamed
    # points.ply: each spooled point re-placed by its frame's correction, in the stream's order.
    np.testing.assert_allclose(ply_points(out / "points.ply"), expected_points(results, gmap, []), atol=1e-4)
    # The COLMAP model and transforms.json carry the corrected cameras too.
    transforms = json.loads((out / "transforms.json").read_text())["frames"]
    c2w = np.array([f["transform_matrix"] for f in transforms])[:, :3, 3]
    centres = -np.einsum("nji,nj->ni", gmap.poses()[:, :, :3], gmap.poses()[:, :, 3])
    np.testing.assert_allclose(c2w, centres, atol=1e-6)


def test_voxels_are_merged_from_the_corrected_points(circle, tmp_path):
    sequence, results = circle
    follower, out = run_pipeline(tmp_path, sequence, results[:50], voxel_size=0.05)
    grid = VoxelGrid(0.05)
    for row, result in enumerate(results[:50]):
        xyz, conf = result.points("depth")
        records = confident_points(xyz, conf, result.image, result.valid, result.index, CONF)
        records["xyz"] = follower.gmap.correction(row).apply(records["xyz"].astype(np.float64))
        grid.add(records)
    np.testing.assert_allclose(ply_points(out / "points.ply"), grid.records()["xyz"], atol=1e-5)


# ---- the bundled model through the command line


@pytest.fixture(scope="module")
def two_laps(tmp_path_factory) -> Path:
    """Two laps of 8 frames around a rendered room, as a folder of PNGs the model sees unscaled (--size 70)."""
    sequence = make_sequence("circle", seed=1, frames_per_lap=8, width=70, height=56)
    folder = tmp_path_factory.mktemp("two_laps")
    for i in range(sequence.num_frames):
        Image.fromarray(sequence.image(i)).save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture
def captured(monkeypatch):
    """The map follower of the next run and the raw results it received."""
    seen: dict = {"raw": []}
    original = reconstructor_module.map_follower

    def capture(*args, **kwargs):
        follower = original(*args, **kwargs)
        on_frame = follower.on_frame

        def record(result, frame):
            seen["raw"].append(result)
            on_frame(result, frame)

        follower.on_frame = record
        seen["follower"] = follower
        return follower

    monkeypatch.setattr(reconstructor_module, "map_follower", capture)
    return seen


def test_reconstruct_loop_closure_with_the_bundled_model(two_laps, tmp_path, captured):
    out = tmp_path / "out"
    args = ["reconstruct", two_laps, "-o", out, "--size", "70", "--precision", "fp32", "--no-progress"]
    code, _, stderr = run_cli(*args, "--loop-closure", "--reanchor-every", "6", "--reanchor-replay", "2")
    assert code == 0, stderr
    follower = captured["follower"]
    assert follower.restarts == 2 and follower.gmap.segments == 3  # re-anchored at frames 6 and 12
    assert follower.gmap.descriptor_kind == "tokens"
    check_outputs(out, follower, captured["raw"])
    assert json.loads((out / "cameras.json").read_text())["loop_closure"]["restarts"] == 2
    # After a restart the stream predicts in a new world: the corrections move those frames into the map's.
    assert not np.allclose(follower.gmap.frame_corrections()[-1], np.eye(3, 4), atol=1e-6)
    # Without the flag: no map, no loops.json, the cameras as streamed.
    plain = tmp_path / "plain"
    code, _, stderr = run_cli(*args[:3], plain, *args[4:])
    assert code == 0, stderr
    assert not (plain / "loops.json").exists()
    cameras = json.loads((plain / "cameras.json").read_text())
    assert "loop_closure" not in cameras
    first = np.array(cameras["frames"][5]["extrinsic"])
    np.testing.assert_allclose(first, captured["raw"][5].extrinsic, atol=1e-6)  # same stream before the restart


def test_rerun_without_the_flag_removes_the_old_loops_json(two_laps, tmp_path):
    out = tmp_path / "out"
    args = ["reconstruct", two_laps, "-o", out, "--size", "70", "--precision", "fp32", "--no-progress"]
    assert run_cli(*args, "--max-frames", "3", "--loop-closure")[0] == 0
    assert (out / "loops.json").is_file()
    assert run_cli(*args, "--max-frames", "3")[0] == 0
    assert not (out / "loops.json").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--reanchor-every", "5"], "--reanchor-every applies only with --loop-closure"),
        (["--map-descriptor", "image"], "--map-descriptor applies only with --loop-closure"),
        (["--loop-closure", "--reanchor-every", "2", "--reanchor-replay", "3"], "must exceed the replayed"),
        (["--loop-closure", "--reanchor-every", "5", "--reanchor-replay", "0"], "at least one replayed"),
    ],
)
def test_map_options_are_checked_before_the_model_loads(two_laps, tmp_path, monkeypatch, flags, message):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(reconstructor_module, "load_model", no_loading)
    code, _, stderr = run_cli("reconstruct", two_laps, "-o", tmp_path / "out", *flags)
    assert code != 0 and message in stderr
    assert not (tmp_path / "out").exists()


def test_python_reconstruct_takes_loop_closure(two_laps, tmp_path):
    from streamvggt import load_model, reconstruct

    summary = reconstruct(
        two_laps, tmp_path / "out", load_model(precision="fp32"), size=70, max_frames=4, loop_closure=True
    )
    assert summary.frames == 4 and (tmp_path / "out" / "loops.json").is_file()
    with pytest.raises(ValueError, match="applies only with --loop-closure"):
        reconstruct(two_laps, tmp_path / "x", size=70, reanchor_every=4)


def test_reconstruct_many_with_loop_closure(two_laps, tmp_path):
    manifest = tmp_path / "inputs.txt"
    manifest.write_text(f"{two_laps}\tlaps\n")
    args = ["reconstruct-many", manifest, "-o", tmp_path / "root", "--size", "70", "--precision", "fp32"]
    code, _, stderr = run_cli(*args, "--max-frames", "6", "--loop-closure", "--no-progress")
    assert code == 0, stderr
    report = json.loads((tmp_path / "root" / "laps" / "loops.json").read_text())
    assert report["frames"] == 6 and report["descriptor"] == "image"  # a batch slot gives no tokens
    assert "loop_closure" in json.loads((tmp_path / "root" / "laps" / "cameras.json").read_text())


def test_view_with_loop_closure_re_places_frames(two_laps, tmp_path, monkeypatch):
    pytest.importorskip("viser")
    from streamvggt.viewer import command as viewer_command
    from streamvggt.viewer.server import LiveViewer

    applied = []
    original = LiveViewer.apply_corrections

    def spy(self, corrections):
        applied.append(corrections)
        original(self, corrections)

    monkeypatch.setattr(LiveViewer, "apply_corrections", spy)
    summary = viewer_command.view(
        two_laps, port=0, size=70, precision="fp32", wait=False, loop_closure=True, reanchor_every=6, max_frames=10
    )
    assert summary.frames == 10
    # Frames 6.. arrive in the restarted stream's world: each is re-placed into the map's as it arrives.
    assert applied and {int(i) for c in applied for i in c.indices} >= set(range(6, 10))


def test_viewer_moves_points_and_camera_by_a_correction(circle):
    pytest.importorskip("viser")
    from streamvggt.io.outputs.writer import FrameCorrections
    from streamvggt.mapping.sim3 import Sim3
    from streamvggt.viewer.server import LiveViewer

    _, results = circle
    angle = 0.3
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    move = Sim3(1.5, rotation, np.array([0.2, -0.1, 0.3]))
    with LiveViewer(port=0) as viewer:
        for result in results[:3]:
            viewer.add_frame(result)
        before = viewer.state.frame(1)
        pose = (move @ Sim3.from_extrinsic(results[1].extrinsic)).extrinsic()
        for _ in range(2):  # a second, identical correction is relative to the frame as streamed: no double move
            viewer.apply_corrections(
                FrameCorrections(np.array([1]), pose[None], np.array([1.5]), move.matrix()[None, :3])
            )
        after = viewer.state.frame(1)
        xyz = before.points["depth"][0].reshape(-1, 3).astype(np.float64)
        np.testing.assert_allclose(after.points["depth"][0].reshape(-1, 3), move.apply(xyz), atol=1e-4)
        np.testing.assert_allclose(after.extrinsic, pose)
        np.testing.assert_allclose(viewer._frustums[1].position, after.centre, atol=1e-5)
        assert viewer.state.frame(0) is not None and np.allclose(viewer.state.frame(0).extrinsic, results[0].extrinsic)


def test_the_session_exposes_the_last_tokens():
    from streamvggt import load_model

    model = load_model(precision="fp32")
    session = model.stream(batch_size=1)
    assert session.last_tokens is None
    session.step(torch.rand(1, 3, 28, 42))
    assert set(session.last_tokens) == set(model.head_layers)
