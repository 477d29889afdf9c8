"""``--rgbd``: the TUM RGB-D layout, read as its tools read it (text lists split on spaces, 16-bit PNGs with PIL,
quaternions with scipy), against the TUM format description: depth PNG value 5000 is one metre, 0 is no depth."""

from __future__ import annotations

import contextlib
import io
import json
import logging

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from streamvggt.cli import main
from streamvggt.io.outputs.interchange import ExportOptions
from streamvggt.pipeline.reconstructor import reconstruct
from tests.export_scene import FOCAL, FRAMES, HEIGHT, STEP, WALL, WIDTH, image, write_scene
from tests.reconstruct_helpers import tiny_model, write_images


def data_lines(path) -> list[list[str]]:
    """The non-comment lines of a TUM list, split on whitespace."""
    return [line.split() for line in path.read_text().splitlines() if line and not line.startswith("#")]


def read_png(path) -> np.ndarray:
    with Image.open(path) as file:
        return np.asarray(file)


def test_lists_name_every_frame_s_colour_and_depth_files_at_one_timestamp(tmp_path):
    sequence = write_scene(tmp_path / "out", ExportOptions(rgbd=True)) / "rgbd"
    rgb, depth = data_lines(sequence / "rgb.txt"), data_lines(sequence / "depth.txt")
    assert [float(t) for t, _ in rgb] == [float(t) for t, _ in depth] == [0.0, 1.0, 2.0]  # stream index: no video
    assert [name for _, name in rgb] == [f"rgb/{i:06d}.png" for i in range(FRAMES)]
    assert [name for _, name in depth] == [f"depth/{i:06d}.png" for i in range(FRAMES)]
    assert data_lines(sequence / "associate.txt") == [[t, c, t, d] for (t, c), (_, d) in zip(rgb, depth, strict=True)]
    for (_, colour), (_, depth_name) in zip(rgb, depth, strict=True):
        assert read_png(sequence / colour).shape == (HEIGHT, WIDTH, 3)
        assert read_png(sequence / depth_name).dtype == np.uint16  # 16-bit greyscale
    for i, (_, colour) in enumerate(rgb):
        np.testing.assert_array_equal(read_png(sequence / colour), image(i))  # the processed frame


def test_depth_pngs_hold_metres_times_5000_within_the_quantisation_step(tmp_path):
    sequence = write_scene(tmp_path / "out", ExportOptions(rgbd=True, depth_scale=0.25)) / "rgbd"
    for _, name in data_lines(sequence / "depth.txt"):
        metres = read_png(sequence / name) / 5000.0
        assert np.abs(metres - WALL * 0.25).max() <= 0.5 / 5000


def test_groundtruth_is_the_wall_scene_trajectory_in_metres(tmp_path):
    sequence = write_scene(tmp_path / "out", ExportOptions(rgbd=True, depth_scale=0.25)) / "rgbd"
    rows = np.array(data_lines(sequence / "groundtruth.txt"), dtype=np.float64)
    np.testing.assert_allclose(rows[:, 0], np.arange(FRAMES))
    np.testing.assert_allclose(rows[:, 1:4], [[STEP * i * 0.25, 0, 0] for i in range(FRAMES)], atol=1e-9)
    np.testing.assert_allclose(Rotation.from_quat(rows[:, 4:]).as_matrix(), np.broadcast_to(np.eye(3), (3, 3, 3)))
    open3d = json.loads((sequence / "camera_intrinsic.json").read_text())
    assert (open3d["width"], open3d["height"]) == (WIDTH, HEIGHT)
    k = np.array(open3d["intrinsic_matrix"]).reshape(3, 3).T  # Open3D stores the matrix column by column
    np.testing.assert_allclose(k, [[FOCAL, 0, WIDTH / 2], [0, FOCAL, HEIGHT / 2], [0, 0, 1]])


def test_groundtruth_rotations_and_centres_match_cameras_json(tmp_path):
    write_images(tmp_path / "frames", ["0.png", "1.png", "2.png"])
    out = tmp_path / "out"
    reconstruct(tmp_path / "frames", out, tiny_model(), size=70, exports=ExportOptions(rgbd=True, depth_scale=2.0))
    rows = np.array(data_lines(out / "rgbd" / "groundtruth.txt"), dtype=np.float64)
    cameras = json.loads((out / "cameras.json").read_text())["frames"]
    for row, camera in zip(rows, cameras, strict=True):
        extrinsic = np.array(camera["extrinsic"])
        world_from_camera = extrinsic[:, :3].T
        np.testing.assert_allclose(Rotation.from_quat(row[4:]).as_matrix(), world_from_camera, atol=1e-7)
        np.testing.assert_allclose(row[1:4], -2.0 * world_from_camera @ extrinsic[:, 3], rtol=1e-7, atol=1e-8)
        metres = read_png(out / "rgbd" / "depth" / f"{camera['index']:06d}.png") / 5000.0
        assert np.abs(metres - 2.0 * np.load(out / camera["depth"])).max() <= 0.5 / 5000


def test_depth_beyond_the_16_bit_range_is_written_as_missing(tmp_path, caplog):
    far = np.full((HEIGHT, WIDTH), WALL)
    far[:, :5] = 14.0  # 14 m x 5000 > 65535
    with caplog.at_level(logging.WARNING):
        sequence = write_scene(tmp_path / "out", ExportOptions(rgbd=True), depths={1: far}) / "rgbd"
    values = read_png(sequence / "depth" / "000001.png")
    assert (values[:, :5] == 0).all() and (values[:, 5:] == 20000).all()
    assert any("000001.png: 120 pixels are deeper than" in message for message in caplog.messages)


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_depth_scale_that_is_not_positive_is_one_line_naming_the_option(tmp_path, value):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["reconstruct", str(tmp_path), "-o", str(tmp_path / "out"), "--rgbd", "--depth-scale", value])
    assert code == 1
    (line,) = err.getvalue().strip().splitlines()
    assert (
        line.startswith("streamvggt reconstruct: error: --depth-scale must be positive")
        and not (tmp_path / "out").exists()
    )
