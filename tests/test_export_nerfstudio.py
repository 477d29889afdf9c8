"""``transforms.json`` read as nerfstudio and instant-ngp read it: json and numpy, with the OpenGL -> OpenCV camera
conversion written here, independent of the library; its depth PNGs read with PIL."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from streamvggt.io.outputs.interchange import ExportOptions
from streamvggt.pipeline.reconstructor import reconstruct
from tests.export_scene import FOCAL, HEIGHT, WIDTH, write_scene
from tests.reconstruct_helpers import frame_pixels, tiny_model, write_images

FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL camera axes (y up, z backwards) <-> OpenCV (y down, z forward)


def opencv_extrinsic(transform_matrix) -> np.ndarray:
    """3x4 camera-from-world (OpenCV axes) of nerfstudio's 4x4 camera-to-world with OpenGL axes."""
    camera_to_world = np.array(transform_matrix) @ FLIP_YZ
    return np.linalg.inv(camera_to_world)[:3]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The tiny model on four frames, with depth PNGs for transforms.json."""
    root = tmp_path_factory.mktemp("run")
    write_images(root / "frames", ["0.png", "1.png", "2.png", "3.png"])
    out = root / "out"
    reconstruct(root / "frames", out, tiny_model(), size=70, exports=ExportOptions(transforms_depth=True))
    return out, json.loads((out / "transforms.json").read_text()), json.loads((out / "cameras.json").read_text())


def test_transforms_converted_back_to_opencv_equal_cameras_json(run):
    _, transforms, cameras = run
    assert transforms["camera_model"] == "OPENCV" and len(transforms["frames"]) == len(cameras["frames"]) == 4
    for entry, camera in zip(transforms["frames"], cameras["frames"], strict=True):
        np.testing.assert_allclose(opencv_extrinsic(entry["transform_matrix"]), camera["extrinsic"], atol=1e-6)
        k = np.array(camera["intrinsic"])
        # nerfstudio puts pixel centres at +0.5 (as COLMAP), cameras.json at integers.
        expected = [k[0, 0], k[1, 1], k[0, 2] + 0.5, k[1, 2] + 0.5]
        np.testing.assert_allclose([entry[key] for key in ("fl_x", "fl_y", "cx", "cy")], expected, atol=1e-6)
        assert [entry["h"], entry["w"]] == camera["image_size"]


def test_files_it_names_exist_with_the_recorded_size(run):
    out, transforms, _ = run
    for entry in transforms["frames"]:
        with Image.open(out / entry["file_path"]) as image:
            assert image.size == (entry["w"], entry["h"])
    cloud = trimesh.load(out / transforms["ply_file_path"])
    assert len(cloud.vertices) == len(trimesh.load(out / "points.ply").vertices) > 0


def test_depth_pngs_read_back_equal_the_depth_within_the_quantisation_step(run):
    out, transforms, cameras = run
    scale = transforms["depth_unit_scale_factor"]
    assert scale == 1e-3
    for entry, camera in zip(transforms["frames"], cameras["frames"], strict=True):
        with Image.open(out / entry["depth_file_path"]) as image:
            assert image.mode == "I;16"
            values = np.asarray(image).astype(np.float64)
        depth = np.load(out / camera["depth"]).astype(np.float64)
        assert (values > 0).all()  # every pixel of these frames has a depth within range
        assert np.abs(values * scale - depth).max() <= scale / 2 + 1e-9


def test_shared_intrinsics_are_written_once_at_the_top(tmp_path):
    transforms = json.loads((write_scene(tmp_path / "out") / "transforms.json").read_text())
    assert (transforms["fl_x"], transforms["cx"], transforms["w"], transforms["h"]) == (FOCAL, 16.5, WIDTH, HEIGHT)
    assert not any("fl_x" in entry for entry in transforms["frames"])
    assert "depth_file_path" not in transforms["frames"][0] and "depth_unit_scale_factor" not in transforms


def test_different_intrinsics_are_written_per_frame(tmp_path):
    transforms = json.loads((write_scene(tmp_path / "out", focals=[30.0, 31.0, 32.5]) / "transforms.json").read_text())
    assert "fl_x" not in transforms
    assert [entry["fl_x"] for entry in transforms["frames"]] == [30.0, 31.0, 32.5]


def test_depth_of_an_original_frame_covers_the_whole_source_with_the_cropped_rows_empty(tmp_path):
    """Crop mode, 56x98 frames at --size 42: the model sees rows 14..55 of the 42x70 resized frame; nerfstudio
    scales the depth PNG to the image, so the PNG is the resized frame with no depth where rows were cropped."""
    (tmp_path / "frames").mkdir()
    Image.fromarray(frame_pixels(0, 56, 98)).save(tmp_path / "frames" / "0.png")
    out = tmp_path / "out"
    exports = ExportOptions(colmap_images="original", transforms_depth=True)
    reconstruct(tmp_path / "frames", out, tiny_model(), size=42, exports=exports)
    transforms = json.loads((out / "transforms.json").read_text())
    (entry,) = transforms["frames"]
    assert entry["file_path"] == "images_original/000000.png" and (transforms["w"], transforms["h"]) == (56, 98)
    with Image.open(out / entry["depth_file_path"]) as image:
        values = np.asarray(image).astype(np.float64)
    assert values.shape == (70, 42)
    depth = np.load(out / "depth" / "000000.npy")
    assert (values[:14] == 0).all() and (values[56:] == 0).all()
    assert np.abs(values[14:56] * 1e-3 - depth).max() <= 0.5e-3 + 1e-9
