"""Acceptance: ``streamvggt reconstruct`` end to end on generated frames with a tiny random checkpoint.

Every output is opened with an independent reader (trimesh, pycolmap, numpy) and checked for counts, shapes and
conventions: each camera's frustum and each point project back into that camera's image.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pycolmap
import pytest
import torch
import trimesh
from safetensors.torch import load_file, save_file

from streamvggt.cli import build_parser, main
from streamvggt.pipeline.reconstructor import Reconstructor
from tests.helpers import run_cli
from tests.reconstruct_helpers import HEIGHT, WIDTH, frame_pixels, tiny_checkpoint, write_images, write_video

FRAME_NAMES = ["10.png", "2.png", "1.png", "30.png"]  # natural order: 1, 2, 10, 30
ORDER = [2, 1, 0, 3]  # the index in FRAME_NAMES of each frame in natural order (frame_pixels seed)
OPENCV_FROM_GLTF = np.diag([1.0, -1.0, -1.0, 1.0])  # the flip scene.glb documents (its own inverse)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint"))


def reconstruct_frames(tmp_path: Path, checkpoint: Path) -> tuple[int, str, str]:
    """``reconstruct tmp_path/frames -o tmp_path/out`` with the tiny checkpoint at the test size."""
    frames, out = tmp_path / "frames", tmp_path / "out"
    return run_cli("reconstruct", frames, "-o", out, "--checkpoint", checkpoint, "--size", 70, "--no-progress")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, checkpoint):
    """One run on four PNG frames; the tests below read its outputs."""
    root = tmp_path_factory.mktemp("run")
    write_images(root / "frames", FRAME_NAMES)
    code, stdout, stderr = run_cli(
        "reconstruct", root / "frames", "-o", root / "out", "--checkpoint", checkpoint, "--size", 70
    )
    assert code == 0, stderr
    return root / "out", stdout, stderr


@pytest.fixture(scope="module")
def cameras(image_run) -> dict:
    return json.loads((image_run[0] / "cameras.json").read_text())


@pytest.fixture(scope="module")
def colmap(image_run):
    model = pycolmap.Reconstruction()
    model.read_text(str(image_run[0] / "colmap"))
    return model


def camera_matrices(frame: dict) -> tuple[np.ndarray, np.ndarray]:
    return np.array(frame["extrinsic"]), np.array(frame["intrinsic"])


def project(points: np.ndarray, extrinsic: np.ndarray, intrinsic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels [N, 2] and depths [N] of world points [N, 3] (numpy, independent of the library)."""
    cam = points @ extrinsic[:, :3].T + extrinsic[:, 3]
    pixels = cam @ intrinsic.T
    return pixels[:, :2] / pixels[:, 2:], cam[:, 2]


def assert_clean_failure(code: int, stderr: str, *phrases: str) -> None:
    assert code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("streamvggt reconstruct: error: ")
    assert "Traceback" not in stderr
    for phrase in phrases:
        assert phrase in lines[0]


def assert_same_points(actual: np.ndarray, expected: np.ndarray, atol: float = 1e-5) -> None:
    """The two clouds hold the same points, in any order (each point's nearest neighbour within atol)."""
    assert actual.shape == expected.shape
    for start in range(0, len(actual), 1000):
        chunk = actual[start : start + 1000]
        nearest = np.sqrt(((chunk[:, None, :] - expected[None]) ** 2).sum(-1)).min(axis=1)
        assert nearest.max() < atol


def files_in(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ------------------------------------------------------------------------------------------------- the happy path


def test_summary_reports_frames_rate_points_and_files(image_run):
    out, stdout, stderr = image_run
    assert "4 frames in" in stdout and "frames/s" in stdout
    points = int(stdout.split(" points")[0].rsplit(" ", 1)[1].replace(",", ""))
    assert points == len(trimesh.load(out / "points.ply").vertices)
    assert (
        "points.ply, scene.glb, colmap/ (3 files), transforms.json, cameras.json, trajectory.tum, depth/ (8 files)"
        in stdout
    )
    assert "4/4" in stderr and "frame/s" in stderr  # the progress bar
    # no temporary file left; the run's saved state (its finished marker, for --resume) is no temporary file
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name != ".streamvggt-state"]


def test_cameras_json_has_conventions_and_one_camera_per_frame(cameras):
    assert {"extrinsic", "intrinsic", "world", "image_size"} <= set(cameras["convention"])
    assert "camera-from-world" in cameras["convention"]["extrinsic"]
    assert "OpenCV" in cameras["convention"]["extrinsic"]
    assert [f["name"] for f in cameras["frames"]] == ["1.png", "2.png", "10.png", "30.png"]
    for i, frame in enumerate(cameras["frames"]):
        extrinsic, intrinsic = camera_matrices(frame)
        assert frame["index"] == i and frame["image_size"] == [HEIGHT, WIDTH]
        assert extrinsic.shape == (3, 4) and intrinsic.shape == (3, 3)
        np.testing.assert_allclose(extrinsic[:, :3] @ extrinsic[:, :3].T, np.eye(3), atol=1e-6)
        assert np.linalg.det(extrinsic[:, :3]) == pytest.approx(1.0)
        assert intrinsic[0, 2] == WIDTH / 2 and intrinsic[1, 2] == HEIGHT / 2
        assert intrinsic[0, 0] > 0 and intrinsic[1, 1] > 0 and intrinsic[2].tolist() == [0, 0, 1]


def test_depth_files_match_the_frames(image_run, cameras):
    out = image_run[0]
    for frame in cameras["frames"]:
        depth, conf = np.load(out / frame["depth"]), np.load(out / frame["depth_conf"])
        assert depth.dtype == conf.dtype == np.float32
        assert depth.shape == conf.shape == (HEIGHT, WIDTH)
        assert (depth > 0).all() and (conf > 0).all()


def test_point_count_follows_the_confidence_percentile(image_run, cameras):
    out = image_run[0]
    expected = 0
    for frame in cameras["frames"]:
        conf = np.load(out / frame["depth_conf"])
        expected += int((conf >= np.percentile(conf, 50)).sum())
    assert len(trimesh.load(out / "points.ply").vertices) == expected


def test_colmap_model_matches_cameras_json(image_run, colmap, cameras):
    out = image_run[0]
    assert len(colmap.images) == len(colmap.cameras) == 4
    for image_id, image in colmap.images.items():
        frame = cameras["frames"][image_id - 1]
        extrinsic, intrinsic = camera_matrices(frame)
        assert image.name == Path(frame["image"]).name and (out / "images" / image.name).is_file()
        np.testing.assert_allclose(image.cam_from_world().matrix(), extrinsic, atol=1e-6)
        camera = colmap.cameras[image.camera_id]
        assert (camera.width, camera.height) == (WIDTH, HEIGHT)
        fx, fy, cx, cy = camera.params
        np.testing.assert_allclose([fx, fy, cx, cy], [intrinsic[0, 0], intrinsic[1, 1], 35.5, 28.5], rtol=1e-6)


def test_points_project_back_to_their_pixels_in_their_images(image_run, colmap, cameras):
    """Depth mode: each point is its pixel's depth unprojected, so it projects back onto that pixel (COLMAP and
    cameras.json agree), at the depth stored in depth/, with that pixel's colour."""
    out = image_run[0]
    ply = trimesh.load(out / "points.ply")
    assert len(colmap.points3D) == len(ply.vertices)  # fewer than the scene cap: the same points
    by_frame: dict[int, list] = {}
    for point in colmap.points3D.values():
        element = point.track.elements[0]  # each track starts with the point's own frame
        image = colmap.images[element.image_id]
        observed = image.points2D[element.point2D_idx].xy
        projected = colmap.cameras[image.camera_id].img_from_cam(image.cam_from_world() * point.xyz)
        np.testing.assert_allclose(projected, observed, atol=2e-3)
        by_frame.setdefault(element.image_id - 1, []).append((point.xyz, observed - 0.5, point.color))
    for index, items in by_frame.items():
        frame = cameras["frames"][index]
        xyz = np.array([p for p, _, _ in items])
        pixels = np.array([uv for _, uv, _ in items])
        colours = np.array([c for _, _, c in items])
        uv, z = project(xyz, *camera_matrices(frame))
        np.testing.assert_allclose(uv, pixels, atol=2e-3)
        u, v = np.round(pixels).astype(int).T
        assert (u >= 0).all() and (u < WIDTH).all() and (v >= 0).all() and (v < HEIGHT).all()
        np.testing.assert_allclose(z, np.load(out / frame["depth"])[v, u], rtol=1e-4)
        np.testing.assert_array_equal(colours, frame_pixels(ORDER[index])[v, u])
    assert_same_points(ply.vertices, np.array([p.xyz for p in colmap.points3D.values()]))


def test_glb_holds_the_points_and_a_frustum_per_camera_in_its_image(image_run, colmap, cameras):
    scene = trimesh.load(image_run[0] / "scene.glb", process=False)
    frustums = {}
    points = None
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph[node]
        geometry = scene.geometry[geometry_name]
        # glTF viewers apply the node transform; converting glTF axes back to OpenCV gives world coordinates.
        world = trimesh.transform_points(geometry.vertices, OPENCV_FROM_GLTF @ transform)
        if isinstance(geometry, trimesh.PointCloud):
            points = world
        else:
            frustums[node] = world
    assert points is not None
    assert_same_points(points, np.array([p.xyz for p in colmap.points3D.values()]))
    assert sorted(frustums) == [f"camera_{i:06d}" for i in range(4)]
    corners = np.array([[-0.5, -0.5], [WIDTH - 0.5, -0.5], [WIDTH - 0.5, HEIGHT - 0.5], [-0.5, HEIGHT - 0.5]])
    for i, frame in enumerate(cameras["frames"]):
        extrinsic, intrinsic = camera_matrices(frame)
        vertices = frustums[f"camera_{i:06d}"]
        centre = -extrinsic[:, :3].T @ extrinsic[:, 3]
        np.testing.assert_allclose(vertices[0], centre, atol=1e-5)
        uv, z = project(vertices[1:], extrinsic, intrinsic)
        np.testing.assert_allclose(uv, corners, atol=1e-3)  # the frustum outlines exactly this image
        assert (z > 0).all()


def test_trajectory_is_camera_to_world(image_run, cameras):
    lines = [line for line in (image_run[0] / "trajectory.tum").read_text().splitlines() if not line.startswith("#")]
    rows = np.array([[float(x) for x in line.split()] for line in lines])
    assert rows.shape == (4, 8)
    assert rows[:, 0].tolist() == [0, 1, 2, 3]  # images have no time: the stream index
    for row, frame in zip(rows, cameras["frames"], strict=True):
        extrinsic, _ = camera_matrices(frame)
        qx, qy, qz, qw = row[4:]
        world_from_cam = trimesh.transformations.quaternion_matrix([qw, qx, qy, qz])[:3, :3]
        np.testing.assert_allclose(world_from_cam, extrinsic[:, :3].T, atol=1e-6)
        np.testing.assert_allclose(row[1:4], -extrinsic[:, :3].T @ extrinsic[:, 3], atol=1e-6)


def test_video_input_samples_by_rate(tmp_path, checkpoint):
    video = write_video(tmp_path / "clip.mp4", frames=12, fps=10)
    code, stdout, stderr = run_cli(
        "reconstruct",
        video,
        "-o",
        tmp_path / "out",
        "--checkpoint",
        checkpoint,
        "--size",
        70,
        "--fps",
        5,
        "--max-frames",
        3,
        "--points",
        "pointmap",
        "--voxel-size",
        0.01,
        "--depth-png",
        "--no-progress",
    )
    assert code == 0, stderr
    assert "3 frames in" in stdout and stderr == ""
    cameras = json.loads((tmp_path / "out" / "cameras.json").read_text())
    assert [f["name"] for f in cameras["frames"]] == ["frame_000000", "frame_000002", "frame_000004"]
    assert [f["timestamp"] for f in cameras["frames"]] == pytest.approx([0.0, 0.2, 0.4])
    assert cameras["points"] == {"source": "pointmap", "conf_threshold_percentile": 50.0}
    tum = (tmp_path / "out" / "trajectory.tum").read_text().splitlines()[1:]
    assert [float(line.split()[0]) for line in tum] == pytest.approx([0.0, 0.2, 0.4])
    assert len(list((tmp_path / "out" / "depth").glob("*.png"))) == 3


def test_stream_url_input(tmp_path, checkpoint):
    video = write_video(tmp_path / "clip.mp4", frames=4, fps=10)
    code, stdout, stderr = run_cli(
        "reconstruct", f"file:{video}", "-o", tmp_path / "out", "--checkpoint", checkpoint, "--size", 70, "--stride", 2
    )
    assert code == 0, stderr
    assert "2 frames in" in stdout


# ------------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("make_input", "phrases"),
    [
        (lambda d: d / "missing", ["input not found"]),
        (lambda d: (d / "empty").mkdir() or d / "empty", ["is empty"]),
        (lambda d: write_text(d / "docs" / "a.txt") and d / "docs", ["no images in folder"]),
        (lambda d: write_text(d / "fake.jpg"), ["cannot read image", "fake.jpg: cannot identify image file"]),
        (lambda d: write_text(d / "fake.mp4"), ["cannot open video", "Invalid data"]),
        (lambda d: write_images(d / "dot", ["a.png"], 1, 1)[0], ["a.png is 1x1 pixels", "at least 14x14"]),
    ],
    ids=["missing", "empty-folder", "non-images", "text-as-jpg", "text-as-mp4", "1x1-image"],
)
def test_bad_input_fails_with_one_line_and_writes_nothing(tmp_path, checkpoint, make_input, phrases):
    source = make_input(tmp_path)
    code, stdout, stderr = run_cli("reconstruct", source, "-o", tmp_path / "out", "--checkpoint", checkpoint)
    assert_clean_failure(code, stderr, *phrases)
    assert stdout == ""
    assert not (tmp_path / "out").exists()


def write_text(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not what the name says\n")
    return path


def test_truncated_jpeg_among_good_frames_is_skipped(tmp_path, checkpoint):
    write_images(tmp_path / "frames", ["0.jpg", "1.jpg", "2.jpg"])
    data = (tmp_path / "frames" / "1.jpg").read_bytes()
    (tmp_path / "frames" / "1.jpg").write_bytes(data[: len(data) // 2])
    code, stdout, stderr = reconstruct_frames(tmp_path, checkpoint)
    assert code == 0
    assert stderr.startswith("warning: skipping 1.jpg")
    assert "2 frames in" in stdout and "skipped 1 unreadable: 1.jpg" in stdout
    names = [f["name"] for f in json.loads((tmp_path / "out" / "cameras.json").read_text())["frames"]]
    assert names == ["0.jpg", "2.jpg"]


def test_mixed_sizes_are_resized_to_the_first_frame(tmp_path, checkpoint):
    write_images(tmp_path / "frames", ["0.png"])
    write_images(tmp_path / "frames", ["1.png", "2.png"], width=140, height=84)
    code, _, stderr = reconstruct_frames(tmp_path, checkpoint)
    assert code == 0
    assert stderr.count("warning:") == 1 and "1.png is 140x84" in stderr and "resizing" in stderr
    cameras = json.loads((tmp_path / "out" / "cameras.json").read_text())
    assert [f["image_size"] for f in cameras["frames"]] == [[HEIGHT, WIDTH]] * 3


def test_unwritable_output_folder(tmp_path, checkpoint):
    write_images(tmp_path / "frames", ["0.png"])
    (tmp_path / "file").write_text("x")
    code, _, stderr = run_cli(
        "reconstruct", tmp_path / "frames", "-o", tmp_path / "file" / "out", "--checkpoint", checkpoint
    )
    assert_clean_failure(code, stderr, "cannot write to output folder")


def test_checkpoint_with_nan_is_a_clear_error(tmp_path, checkpoint):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((checkpoint / "config.json").read_text())
    state = load_file(checkpoint / "model.safetensors")
    name = next(iter(state))
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, bad / "model.safetensors")
    write_images(tmp_path / "frames", ["0.png"])
    code, _, stderr = run_cli("reconstruct", tmp_path / "frames", "-o", tmp_path / "out", "--checkpoint", bad)
    assert_clean_failure(code, stderr, "corrupt", "NaN")
    assert files_in(tmp_path / "out") == []


def test_without_a_checkpoint_or_bundled_model_the_message_says_one_is_needed(tmp_path, monkeypatch):
    import streamvggt.weights as weights

    monkeypatch.setattr(weights, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    write_images(tmp_path / "frames", ["0.png"])
    code, _, stderr = run_cli("reconstruct", tmp_path / "frames", "-o", tmp_path / "out")
    assert_clean_failure(code, stderr, "a checkpoint is needed")


@pytest.mark.parametrize(
    ("option", "phrase"),
    [
        (["--cache", "lru"], "unknown cache policy"),
        (["--conf-threshold", "100"], "percentile"),
        (["--size", "500"], "multiple of 14"),
        (["--stride", "0"], "stride"),
        (["--device", "gpu"], "unknown device 'gpu'"),
    ],
)
def test_bad_options_fail_with_one_line(tmp_path, checkpoint, option, phrase):
    write_images(tmp_path / "frames", ["0.png"])
    code, _, stderr = run_cli(
        "reconstruct", tmp_path / "frames", "-o", tmp_path / "out", "--checkpoint", checkpoint, *option
    )
    assert_clean_failure(code, stderr, phrase)
    assert not (tmp_path / "out").exists()


def test_colmap_points_caps_the_colmap_model_to_a_sample_of_points_ply(tmp_path, checkpoint):
    write_images(tmp_path / "frames", FRAME_NAMES)
    code, _, stderr = run_cli(
        "reconstruct", tmp_path / "frames", "-o", tmp_path / "out", "--checkpoint", checkpoint, "--size", 70,
        "--no-progress", "--colmap-points", 50,
    )  # fmt: skip
    assert code == 0, stderr
    model = pycolmap.Reconstruction()
    model.read_text(str(tmp_path / "out" / "colmap"))
    ply = trimesh.load(tmp_path / "out" / "points.ply")
    assert len(model.points3D) == 50 < len(ply.vertices)
    sample = np.array([p.xyz for p in model.points3D.values()])
    nearest = np.linalg.norm(sample[:, None] - np.asarray(ply.vertices)[None], axis=-1).min(axis=1)
    assert nearest.max() < 1e-5  # points of points.ply, not new ones


@pytest.mark.parametrize("command", ["reconstruct", "reconstruct-many"])
@pytest.mark.parametrize(
    ("given", "limit"), [([], 200_000), (["--colmap-points", "50"], 50), (["--colmap-points", "all"], None)]
)
def test_colmap_points_maps_to_the_export_option_and_all_keeps_every_point(command, given, limit):
    from streamvggt.cli.options import reconstruct_options
    from streamvggt.io.outputs.interchange import COLMAP_POINTS

    args = build_parser().parse_args([command, "in", "-o", "out", *given])
    assert reconstruct_options(args).output.exports.colmap_points == limit
    assert f"(default: {COLMAP_POINTS})" in subcommand_options(command)["--colmap-points"].help


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_colmap_point_count_is_a_usage_error(tmp_path, value):
    stderr = io.StringIO()
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(stderr):
        main(["reconstruct", str(tmp_path), "-o", str(tmp_path / "out"), "--colmap-points", value])
    assert exit_info.value.code == 2
    assert "argument --colmap-points: expected" in stderr.getvalue() and "'all'" in stderr.getvalue()


def test_stride_and_fps_are_exclusive(tmp_path):
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(io.StringIO()):
        main(["reconstruct", str(tmp_path), "-o", str(tmp_path / "o"), "--stride", "2", "--fps", "1"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("command", "option", "needed"),
    [
        ("reconstruct", ["--depth-scale", "0.5"], "--rgbd"),
        ("reconstruct-many", ["--depth-scale", "1"], "--rgbd"),
        ("reconstruct", ["--port", "9000"], "--view"),
        ("reconstruct", ["--allow-remote-export"], "--view"),
    ],
)
def test_an_option_that_needs_another_is_a_one_line_usage_error(tmp_path, command, option, needed):
    code, _, stderr = run_cli(command, tmp_path, "-o", tmp_path / "out", *option)
    assert code == 2
    assert stderr.strip() == f"streamvggt {command}: error: {option[0]} applies only with {needed}" + (
        " (it scales the RGB-D depth and trajectory)" if needed == "--rgbd" else " (it configures the browser viewer)"
    )
    assert not (tmp_path / "out").exists()


def test_write_failure_leaves_no_half_written_file(tmp_path, checkpoint, monkeypatch):
    def disk_full(path, *args):
        Path(path).write_bytes(b"partial glb")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("streamvggt.io.outputs.writer.write_glb", disk_full)
    write_images(tmp_path / "frames", ["0.png", "1.png"])
    code, _, stderr = reconstruct_frames(tmp_path, checkpoint)
    assert_clean_failure(code, stderr, "scene.glb", "No space left on device")
    assert [name for name in files_in(tmp_path / "out") if "tmp" in name or "glb" in name] == []


def test_an_unexpected_error_is_one_line_with_a_hint(tmp_path, checkpoint, monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr("streamvggt.io.outputs.writer.write_tum", bug)
    write_images(tmp_path / "frames", ["0.png"])
    code, _, stderr = reconstruct_frames(tmp_path, checkpoint)
    assert_clean_failure(code, stderr, "unexpected RuntimeError: something broke", "--verbose")
    assert [name for name in files_in(tmp_path / "out") if "tmp" in name or "trajectory" in name] == []


def test_interrupt_before_the_first_frame_exits_130(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("streamvggt.pipeline.reconstructor.load_model", interrupt)
    write_images(tmp_path / "frames", ["0.png"])
    code, _, stderr = run_cli("reconstruct", tmp_path / "frames", "-o", tmp_path / "out")
    assert code == 130 and stderr.strip() == "streamvggt: interrupted"
    assert not (tmp_path / "out").exists()


def interrupt_third_frame(monkeypatch) -> None:
    """Ctrl-C while the third frame is processed."""
    step, calls = Reconstructor.step, []

    def interrupt_third(self, frame):
        calls.append(frame)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return step(self, frame)

    monkeypatch.setattr(Reconstructor, "step", interrupt_third)


def test_interrupting_a_folder_keeps_its_frames_so_far_and_exits_130(tmp_path, checkpoint, monkeypatch):
    interrupt_third_frame(monkeypatch)
    write_images(tmp_path / "frames", ["0.png", "1.png", "2.png", "3.png"])
    code, stdout, stderr = reconstruct_frames(tmp_path, checkpoint)
    assert code == 130
    assert stderr.splitlines()[-1] == "streamvggt: interrupted after 2 frames (the outputs hold them)"
    assert "2 frames in" in stdout
    assert len(json.loads((tmp_path / "out" / "cameras.json").read_text())["frames"]) == 2


def test_interrupting_a_stream_is_how_it_ends_and_exits_0(tmp_path, checkpoint, monkeypatch):
    interrupt_third_frame(monkeypatch)
    video = write_video(tmp_path / "clip.mp4", frames=4, fps=10)
    code, stdout, stderr = run_cli(
        "reconstruct", f"file:{video}", "-o", tmp_path / "out", "--checkpoint", checkpoint, "--size", 70, "--stride", 1
    )
    assert code == 0, stderr
    assert "2 frames in" in stdout and "interrupted: the outputs hold the frames before Ctrl-C" in stdout


def test_the_installed_module_runs_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "streamvggt", "reconstruct", str(tmp_path / "missing"), "-o", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_clean_failure(result.returncode, result.stderr, "input not found")


# ---------------------------------------------------------------------------------------------- the parser itself


def subcommand_options(name: str) -> dict[str, argparse.Action]:
    """The options of ``streamvggt NAME`` by their first flag (positionals by name)."""
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {(a.option_strings or [a.dest])[0]: a for a in commands.choices[name]._actions if a.dest != "help"}


def described(action: argparse.Action) -> tuple:
    return action.help, action.default, action.choices, action.type, action.metavar, action.required


def test_reconstruct_and_view_declare_their_shared_options_alike():
    reconstruct, view = subcommand_options("reconstruct"), subcommand_options("view")
    shared = sorted(set(reconstruct) & set(view) - {"input"})
    assert len(shared) == 22  # model, compile, sampling, preprocessing, points, viewer server, map and terminal options
    for flag in shared:
        assert described(reconstruct[flag]) == described(view[flag]), flag
    assert view["input"].help.startswith(reconstruct["input"].help)


def test_demo_declares_the_model_and_terminal_options_as_reconstruct_does():
    reconstruct, demo = subcommand_options("reconstruct"), subcommand_options("demo")
    assert sorted(set(reconstruct) & set(demo)) == [
        "--checkpoint",
        "--device",
        "--no-progress",
        "--precision",
        "-o",
        "-v",
    ]
    for flag in ("--checkpoint", "--device", "--precision", "--no-progress", "-v"):
        assert described(reconstruct[flag]) == described(demo[flag]), flag


@pytest.mark.parametrize(
    ("command", "usage"), [("data", "usage: streamvggt data"), ("train", "usage: streamvggt train")]
)
def test_delegated_commands_pass_every_argument_to_their_tool(command, usage):
    out = io.StringIO()
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stdout(out):
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert out.getvalue().startswith(usage)
    assert f"(see streamvggt {command} --help)" in " ".join(build_parser().format_help().split())
