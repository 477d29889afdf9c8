"""The Python API: per-frame results from a Reconstructor, and reconstruct() writing a folder."""

from __future__ import annotations

import json

import numpy as np
import pycolmap
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

import streamvggt
from streamvggt.geometry import (
    pose_encoding_to_extri_intri,
    relative_to_first_camera,
    transform_points,
    unproject_depth,
)
from streamvggt.io import InputError, open_source, read_frames
from streamvggt.io.outputs.interchange import ExportOptions
from streamvggt.io.outputs.writer import ReconstructionWriter
from streamvggt.pipeline.reconstructor import FrameResult, Reconstructor, reconstruct
from tests.reconstruct_helpers import HEIGHT, WIDTH, tiny_model, write_images


@pytest.fixture(scope="module")
def model() -> streamvggt.StreamVGGT:
    return tiny_model()


@pytest.fixture
def frames_dir(tmp_path):
    write_images(tmp_path / "frames", ["1.png", "2.png", "3.png"])
    return tmp_path / "frames"


def leftovers(folder) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_reconstructor_yields_one_result_per_frame_matching_the_session(model, frames_dir):
    with open_source(frames_dir) as source:
        frames = list(read_frames(source))
    results = list(Reconstructor(model, preprocess="crop", size=70).run(frames))
    assert [r.index for r in results] == [0, 1, 2]
    assert [r.name for r in results] == ["1.png", "2.png", "3.png"]

    session = model.stream()
    for frame, result in zip(frames, results, strict=True):
        assert isinstance(result, FrameResult)
        assert result.image_size == (HEIGHT, WIDTH) and result.image.dtype == np.uint8
        assert result.depth.shape == result.depth_conf.shape == (HEIGHT, WIDTH)
        assert result.world_points.shape == (HEIGHT, WIDTH, 3)
        assert result.valid.all()  # crop mode: no padding
        out = session.step(torch.tensor(frame.image).permute(2, 0, 1)[None].float() / 255)
        np.testing.assert_allclose(result.depth, out["depth"][0, ..., 0].numpy(), rtol=1e-5, atol=1e-6)
        extrinsic, intrinsic = pose_encoding_to_extri_intri(out["pose_enc"][0].double(), (HEIGHT, WIDTH))
        # Results are relative to frame 0's predicted camera: the world is exactly the first camera.
        if result.index == 0:
            first = extrinsic
        expected = relative_to_first_camera(extrinsic, first)
        np.testing.assert_allclose(result.extrinsic, expected.numpy(), rtol=1e-5, atol=1e-6)
        points = transform_points(out["world_points"][0].double(), first)
        np.testing.assert_allclose(result.world_points, points.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result.intrinsic, intrinsic.numpy(), rtol=1e-5)


def test_frame_points_from_depth_or_point_map(model, frames_dir):
    with open_source(frames_dir) as source:
        result = Reconstructor(model, size=70).step(next(read_frames(source)))
    points, conf = result.points("depth")
    expected = unproject_depth(
        torch.from_numpy(result.depth), torch.from_numpy(result.extrinsic), torch.from_numpy(result.intrinsic)
    )
    np.testing.assert_allclose(points, expected.numpy(), rtol=1e-6)
    assert conf is result.depth_conf
    points, conf = result.points("pointmap")
    assert points is result.world_points and conf is result.world_points_conf
    with pytest.raises(ValueError, match="point source"):
        result.points("mesh")


def test_reconstruct_writes_every_output_and_reports(model, frames_dir, tmp_path):
    out = tmp_path / "out"
    summary = reconstruct(frames_dir, out, model, size=70)
    assert summary.frames == 3 and not summary.interrupted and summary.skipped == []
    assert summary.frames_per_second > 0 and summary.seconds >= summary.stream_seconds
    names = {p.relative_to(out).as_posix() for p in summary.files}
    assert {"points.ply", "scene.glb", "cameras.json", "trajectory.tum"} <= names
    assert {"colmap/cameras.txt", "colmap/images.txt", "colmap/points3D.txt", "depth/000002_conf.npy"} <= names
    assert all(p.is_file() for p in summary.files)
    assert len(trimesh.load(out / "points.ply").vertices) == summary.points > 0
    assert leftovers(out) == []


@pytest.fixture
def written_and_streamed(model, frames_dir, tmp_path):
    """reconstruct()'s output folder, and the session's own results on the same frames (a second session)."""
    out = tmp_path / "out"
    reconstruct(frames_dir, out, model, size=70)
    with open_source(frames_dir) as source:
        results = list(Reconstructor(model, size=70).run(read_frames(source)))
    return out, results


def test_written_cameras_and_depth_are_the_sessions(written_and_streamed):
    out, results = written_and_streamed
    frames = json.loads((out / "cameras.json").read_text())["frames"]
    assert [frame["name"] for frame in frames] == [result.name for result in results]
    for frame, result in zip(frames, results, strict=True):
        np.testing.assert_allclose(frame["extrinsic"], result.extrinsic, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(frame["intrinsic"], result.intrinsic, rtol=1e-6)
        np.testing.assert_array_equal(np.load(out / frame["depth"]), result.depth)
        np.testing.assert_array_equal(np.load(out / frame["depth_conf"]), result.depth_conf)


def test_written_trajectory_is_each_cameras_centre_and_orientation(written_and_streamed):
    out, results = written_and_streamed
    lines = [line.split() for line in (out / "trajectory.tum").read_text().splitlines() if not line.startswith("#")]
    assert len(lines) == len(results)
    for line, result in zip(lines, results, strict=True):
        stamp, centre, quaternion = float(line[0]), np.array(line[1:4], float), np.array(line[4:8], float)
        rotation, translation = result.extrinsic[:3, :3], result.extrinsic[:3, 3]
        assert stamp == result.index  # an image folder has no times: the stream index
        np.testing.assert_allclose(centre, -rotation.T @ translation, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(Rotation.from_quat(quaternion).as_matrix(), rotation.T, atol=1e-6)


def test_written_points_are_each_frames_confident_half_unprojected(written_and_streamed):
    out, results = written_and_streamed
    expected = []
    for result in results:
        points, conf = result.points("depth")
        expected.append(points[conf >= np.percentile(conf, 50)])  # the default threshold: each frame's median
    expected = np.concatenate(expected)
    written = np.asarray(trimesh.load(out / "points.ply").vertices)
    assert written.shape == expected.shape
    np.testing.assert_allclose(_sorted_rows(written), _sorted_rows(expected), atol=1e-5)


def test_written_colmap_model_holds_the_sessions_cameras_and_points(written_and_streamed):
    out, results = written_and_streamed
    colmap = pycolmap.Reconstruction()
    colmap.read_text(str(out / "colmap"))
    images = sorted(colmap.images.values(), key=lambda image: image.name)
    assert len(images) == len(results)
    for image, result in zip(images, results, strict=True):
        pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
        np.testing.assert_allclose(pose.matrix(), result.extrinsic, atol=1e-5)
        camera = colmap.cameras[image.camera_id]
        assert (camera.height, camera.width) == result.image_size
        # COLMAP puts pixel centres at +0.5 (the image starts at the top-left pixel's corner), OpenCV at +0.
        expected = result.intrinsic + np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
        np.testing.assert_allclose(camera.calibration_matrix(), expected, rtol=1e-6)
    # The COLMAP points are a sample of points.ply's.
    cloud = np.asarray(trimesh.load(out / "points.ply").vertices)
    sample = np.array([point.xyz for point in colmap.points3D.values()])
    assert 0 < len(sample) <= len(cloud)
    assert cKDTree(cloud).query(sample)[0].max() < 1e-5


def _sorted_rows(points: np.ndarray) -> np.ndarray:
    return points[np.lexsort(points.T[::-1])]


def tree(folder) -> list[str]:
    """Every file, folder and link under ``folder``, relative and sorted."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_a_rerun_into_the_same_folder_leaves_what_a_run_into_an_empty_folder_would(model, tmp_path):
    write_images(tmp_path / "frames", [f"{i}.png" for i in range(6)])
    every_export = ExportOptions(colmap_images="original", transforms_depth=True, rgbd=True)
    first = {"exports": every_export, "depth_png": True, "pointmaps": True}
    reconstruct(tmp_path / "frames", tmp_path / "r", model, size=70, **first)
    (tmp_path / "r" / "notes.txt").write_text("mine")
    (tmp_path / "r" / "depth" / "notes.txt").write_text("mine too")
    reconstruct(tmp_path / "frames", tmp_path / "r", model, size=70, max_frames=2)
    reconstruct(tmp_path / "frames", tmp_path / "fresh", model, size=70, max_frames=2)
    assert len(json.loads((tmp_path / "r" / "cameras.json").read_text())["frames"]) == 2
    assert tree(tmp_path / "r") == sorted([*tree(tmp_path / "fresh"), "notes.txt", "depth/notes.txt"])


def test_a_rerun_that_fails_before_its_first_frame_leaves_the_earlier_run(model, tmp_path):
    write_images(tmp_path / "frames", ["0.png", "1.png"])
    reconstruct(tmp_path / "frames", tmp_path / "r", model, size=70)
    before = tree(tmp_path / "r")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        reconstruct(tmp_path / "empty", tmp_path / "r", model, size=70)
    assert tree(tmp_path / "r") == before


def test_an_input_inside_a_folder_the_run_rewrites_is_refused_and_kept(model, tmp_path):
    write_images(tmp_path / "frames", ["0.png", "1.png"])
    reconstruct(tmp_path / "frames", tmp_path / "r", model, size=70)
    before = tree(tmp_path / "r")
    for source in (tmp_path / "r" / "images", f"{tmp_path}/r/images/*.png", tmp_path / "r" / "images" / "000000.png"):
        with pytest.raises(ValueError, match="which this run rewrites"):
            reconstruct(source, tmp_path / "r", model, size=70)
    assert tree(tmp_path / "r") == before
    reconstruct(tmp_path / "r" / "images", tmp_path / "other", model, size=70)  # read from elsewhere: fine
    assert len(json.loads((tmp_path / "other" / "cameras.json").read_text())["frames"]) == 2


def test_reconstruct_checks_the_input_before_loading_a_model(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded for a missing input")

    monkeypatch.setattr("streamvggt.pipeline.reconstructor.load_model", fail)
    with pytest.raises(InputError, match="input not found"):
        reconstruct(tmp_path / "missing", tmp_path / "out", "some-checkpoint")
    assert not (tmp_path / "out").exists()  # the output folder it created is removed again


def test_ctrl_c_keeps_the_frames_so_far(model, frames_dir, tmp_path, monkeypatch):
    step = Reconstructor.step
    calls = []

    def interrupt_third(self, frame):
        calls.append(frame.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return step(self, frame)

    monkeypatch.setattr(Reconstructor, "step", interrupt_third)
    summary = reconstruct(frames_dir, tmp_path / "out", model, size=70)
    assert summary.interrupted and summary.frames == 2
    document = json.loads((tmp_path / "out" / "cameras.json").read_text())
    assert [f["name"] for f in document["frames"]] == ["1.png", "2.png"]


def test_a_fatal_frame_leaves_no_temporary_or_final_file(model, tmp_path):
    write_images(tmp_path / "frames", ["1.png", "2.png"])
    write_images(tmp_path / "frames", ["3.png"], width=1, height=1)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"3\.png is 1x1 pixels"):
        reconstruct(tmp_path / "frames", out, model, size=70)
    assert leftovers(out) == []
    assert not (out / "points.ply").exists() and not (out / "cameras.json").exists()


def test_voxel_size_merges_points(model, frames_dir, tmp_path):
    full = reconstruct(frames_dir, tmp_path / "full", model, size=70, conf_threshold=0)
    merged = reconstruct(frames_dir, tmp_path / "voxel", model, size=70, conf_threshold=0, voxel_size=1e6)
    assert full.points == 3 * HEIGHT * WIDTH
    assert merged.points < 10  # one huge voxel holds everything (a few if the cloud straddles the origin)


def test_pad_mode_writes_no_points_from_the_padding(model, frames_dir, tmp_path):
    out = tmp_path / "out"
    reconstruct(frames_dir, out, model, preprocess="pad", size=70, conf_threshold=0, depth_png=True)
    document = json.loads((out / "cameras.json").read_text())
    assert document["preprocess"] == {"mode": "pad", "size": 70, "content_box": [7, 0, 56, 70]}
    assert document["frames"][0]["image_size"] == [70, 70]
    assert document["frames"][0]["depth_png"] == "depth/000000.png"
    rows = [line.split() for line in (out / "colmap" / "images.txt").read_text().splitlines()[4:]]
    observations = np.array([float(x) for row in rows[1::2] for x in row]).reshape(-1, 3)
    points = [line for line in (out / "colmap" / "points3D.txt").read_text().splitlines() if line[0] != "#"]
    assert len(points) == 3 * 56 * 70  # every content pixel, no padding pixel
    v = np.rint(observations[:, 1] - 0.5)  # the row each observation (its own pixel or a reprojection) falls on
    assert v.min() == 7 and v.max() == 7 + 56 - 1


def test_bounded_cache_policy_writes_what_a_session_with_that_policy_predicts(model, frames_dir, tmp_path):
    summary = reconstruct(frames_dir, tmp_path / "out", model, size=70, cache="window:1")
    assert summary.frames == 3
    document = json.loads((tmp_path / "out" / "cameras.json").read_text())
    assert document["cache"] == "window:1"
    with open_source(frames_dir) as source:
        frames = list(read_frames(source))
    bounded = list(Reconstructor(model, cache="window:1", size=70).run(frames))
    full = list(Reconstructor(model, size=70).run(frames))
    for frame, result in zip(document["frames"], bounded, strict=True):
        np.testing.assert_array_equal(np.load(tmp_path / "out" / frame["depth"]), result.depth)
        np.testing.assert_allclose(frame["extrinsic"], result.extrinsic, rtol=1e-6, atol=1e-9)
    # Frame 2 no longer sees frame 1 (the window keeps the first frame and the current one): its camera moved.
    assert np.abs(np.array(document["frames"][2]["extrinsic"]) - full[2].extrinsic).max() > 1e-3


def test_bad_options_fail_before_reading(tmp_path, frames_dir):
    with pytest.raises(ValueError, match="cache policy"):
        reconstruct(frames_dir, tmp_path / "out", None, cache="lru")
    with pytest.raises(ValueError, match="crop or pad"):
        reconstruct(frames_dir, tmp_path / "out", None, preprocess="stretch")


def test_scene_and_colmap_hold_uniform_samples_of_points_ply_when_points_exceed_their_caps(
    model, frames_dir, tmp_path
):
    exports = ExportOptions(colmap_points=100)
    out = tmp_path / "out"
    with open_source(frames_dir) as source, ReconstructionWriter(out, scene_points=50, exports=exports) as writer:
        for result in Reconstructor(model, size=70).run(read_frames(source)):
            writer.add(result)
        written = writer.finish()
    ply_points = np.asarray(trimesh.load(out / "points.ply").vertices)
    assert written.points == len(ply_points) > 100
    assert (written.scene_points, written.colmap_points) == (50, 100)
    glb_points = trimesh.load(out / "scene.glb").geometry["points"].vertices
    colmap = pycolmap.Reconstruction()
    colmap.read_text(str(out / "colmap"))
    colmap_points = np.array([colmap.points3D[i].xyz for i in sorted(colmap.points3D)])
    assert len(glb_points) == 50 and len(colmap_points) == 100
    tree = cKDTree(ply_points)
    for sample in (glb_points, colmap_points):  # each a subset of points.ply, not new points
        assert tree.query(sample)[0].max() < 1e-5
