"""``streamvggt data import``: a COLMAP project or a reconstruct output folder becomes a generic training scene.

The COLMAP projects are written from COLMAP's own description of its files (pycolmap, COLMAP's bindings, writes
the sparse models; one test writes the dense depth-map bytes by hand), from rendered frames whose depth,
intrinsics and poses are exact: pixel centres at +0.5, world-to-camera poses, z-depth in model units.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pycolmap
import pytest
import yaml
from PIL import Image

from streamvggt import reconstruct
from streamvggt.cli import main as cli_main
from streamvggt.io.errors import InputError, OutputError
from streamvggt.train.config import from_dict
from streamvggt.train.data.importers import import_colmap, import_reconstruction
from streamvggt.train.data.layouts import GenericDataset
from streamvggt.train.data.mix import build_reader
from streamvggt.train.data.sampling import ItemKey
from streamvggt.train.loop import build_mix, train
from streamvggt.train.plot import read_metrics
from tests import reconstruct_helpers
from tests.layout_helpers import (
    FRAMES,
    HEIGHT,
    INTRINSICS,
    READ_OPTIONS,
    WIDTH,
    assert_frame_equals,
    assert_relative_poses,
    check_clip,
    read_clips,
    render_sequence,
    save_image,
)

SEED = 3
NAMES = [f"img_{4 * i}.png" for i in range(FRAMES)]  # img_12 sorts before img_4 as text: the import keeps 4 first


@pytest.fixture(scope="module")
def capture() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return render_sequence(SEED)


# ------------------------------------------------------------------------------------------------------ writers


def colmap_pose(cam_to_world: np.ndarray) -> pycolmap.Rigid3d:
    """COLMAP's cam_from_world of an OpenCV camera-to-world pose."""
    world_to_cam = np.linalg.inv(cam_to_world)
    return pycolmap.Rigid3d(pycolmap.Rotation3d(world_to_cam[:3, :3]), world_to_cam[:3, 3])


def pinhole_camera(model: str = "PINHOLE", extra: tuple[float, ...] = ()) -> pycolmap.Camera:
    """The rendering camera in COLMAP's pixel convention (top-left pixel centre at 0.5, 0.5)."""
    fx, fy, cx, cy = INTRINSICS[0, 0], INTRINSICS[1, 1], INTRINSICS[0, 2] + 0.5, INTRINSICS[1, 2] + 0.5
    params = {"PINHOLE": [fx, fy, cx, cy], "SIMPLE_PINHOLE": [fx, cx, cy], "SIMPLE_RADIAL": [fx, cx, cy, *extra]}
    return pycolmap.Camera(camera_id=1, model=model, width=WIDTH, height=HEIGHT, params=params[model])


def source_pixels(depth: np.ndarray, step: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres (u, v) on a grid where the depth is valid: where each frame's sparse points come from."""
    v, u = np.mgrid[2:HEIGHT:step, 2:WIDTH:step]
    keep = depth[v, u] > 0
    return u[keep], v[keep]


def write_model(
    project: Path, capture, binary: bool = True, camera: pycolmap.Camera | None = None, order=None
) -> pycolmap.Reconstruction:
    """``project/sparse/0``: one camera, image i+1 named NAMES[i] (added in ``order``), and per frame the points
    of its grid pixels, each observed once: by that frame at the pixel it came from."""
    reconstruction = pycolmap.Reconstruction()
    reconstruction.add_camera_with_trivial_rig(camera or pinhole_camera())
    for i in order if order is not None else range(len(capture)):
        _, depth, pose = capture[i]
        u, v = source_pixels(depth)
        keypoints = np.stack([u, v], axis=-1) + 0.5
        image = pycolmap.Image(name=NAMES[i], keypoints=keypoints.astype(np.float64), camera_id=1, image_id=i + 1)
        reconstruction.add_image_with_trivial_frame(image, colmap_pose(pose))
        z = depth[v, u].astype(np.float64)
        camera_points = np.stack(
            [(u - INTRINSICS[0, 2]) / INTRINSICS[0, 0] * z, (v - INTRINSICS[1, 2]) / INTRINSICS[1, 1] * z, z], -1
        )
        world = camera_points @ pose[:3, :3].T + pose[:3, 3]
        for k, xyz in enumerate(world):
            track = pycolmap.Track()
            track.add_element(i + 1, k)
            reconstruction.add_point3D(xyz, track)
    folder = project / "sparse" / "0"
    folder.mkdir(parents=True, exist_ok=True)
    (reconstruction.write_binary if binary else reconstruction.write_text)(str(folder))
    return reconstruction


def write_images(project: Path, capture) -> None:
    for name, (image, _, _) in zip(NAMES, capture, strict=False):
        save_image(project / "images" / name, image)


def write_depth_map_bytes(path: Path, depth: np.ndarray) -> None:
    """COLMAP's dense array format by hand: the text header ``width&height&channels&``, then float32 values in
    row-major order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = depth.shape
    path.write_bytes(f"{width}&{height}&1&".encode() + np.ascontiguousarray(depth, dtype="<f4").tobytes())


def write_dense_maps(project: Path, capture, kind: str = "geometric", shrink: int = 1) -> None:
    for name, (_, depth, _) in zip(NAMES, capture, strict=True):
        values = depth[::shrink, ::shrink].astype(np.float32)
        path = project / "stereo" / "depth_maps" / f"{name}.{kind}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        pycolmap.DepthMap.from_array(values, 0.0, float(values.max())).write(str(path))


def colmap_project(root: Path, capture, **model) -> Path:
    project = root / "project"
    write_images(project, capture)
    write_model(project, capture, **model)
    return project


def imported_frames(scene_root: Path, num_views: int = FRAMES) -> tuple[GenericDataset, list]:
    dataset = GenericDataset(str(scene_root), num_views, **READ_OPTIONS)
    return dataset, [dataset.load_frame(handle) for handle in dataset.sequences[0][1]]


# ------------------------------------------------------------------------------------------------ COLMAP: poses


def test_binary_model_with_dense_depth_imports_the_exact_frames_in_natural_order(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture, order=[3, 0, 5, 1, 4, 2])  # image ids out of name order
    write_dense_maps(project, capture)
    scene = import_colmap(project, tmp_path / "data" / "mine")
    _, frames = imported_frames(scene.parent)
    for frame, (image, depth, pose) in zip(frames, capture, strict=True):
        assert_frame_equals(frame, image, depth, INTRINSICS, pose)
    record = json.loads((scene / "import.json").read_text())
    assert [f["name"] for f in record["frames"]] == NAMES
    assert record["depth"] == "dense" and record["is_metric"] is False


def test_imported_clips_reproject_and_carry_the_relative_poses(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture)
    write_dense_maps(project, capture)
    scene = import_colmap(project, tmp_path / "data" / "mine")
    reader = build_reader("generic", root=str(scene.parent), num_views=3, is_metric=False, static=True, **READ_OPTIONS)
    assert len(reader) == FRAMES - 2
    for clip in read_clips(reader):
        check_clip(clip, 3)
        assert not clip["is_metric"] and clip["static"]
    clip = reader.clip(0, (28, 28), np.random.default_rng(0))
    positions = [int(p) for p in reader.sampling.sample(FRAMES, 0, 3, np.random.default_rng(0))[0]]
    assert_relative_poses(clip, [capture[p][2] for p in positions])


def test_text_model_and_hand_written_photometric_depth_maps_import_the_same(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture, binary=False)
    assert (project / "sparse" / "0" / "cameras.txt").is_file()
    for name, (_, depth, _) in zip(NAMES, capture, strict=True):
        write_depth_map_bytes(project / "stereo" / "depth_maps" / f"{name}.photometric.bin", depth)
    scene = import_colmap(project, tmp_path / "data" / "mine", depth="dense")
    _, frames = imported_frames(scene.parent)
    for frame, (image, depth, pose) in zip(frames, capture, strict=True):
        assert_frame_equals(frame, image, depth, INTRINSICS, pose)


def test_a_simple_pinhole_camera_maps_directly(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture, camera=pinhole_camera("SIMPLE_PINHOLE"))
    scene = import_colmap(project, tmp_path / "data" / "mine", depth="none")
    _, frames = imported_frames(scene.parent)
    np.testing.assert_allclose(frames[0].intrinsics, INTRINSICS, atol=1e-9)
    np.testing.assert_allclose(frames[0].cam_to_world, capture[0][2], atol=1e-9)


def test_images_the_reader_cannot_open_are_converted_to_png(tmp_path: Path, capture) -> None:
    project = tmp_path / "project"
    names = [name.replace(".png", ".bmp") for name in NAMES]
    for name, (image, _, _) in zip(names, capture, strict=True):
        save_image(project / "images" / name, image)
    reconstruction = write_model(project, capture)
    for image in reconstruction.images.values():
        image.name = names[image.image_id - 1]
    reconstruction.write_binary(str(project / "sparse" / "0"))
    scene = import_colmap(project, tmp_path / "data" / "mine", depth="none")
    assert sorted(p.name for p in (scene / "rgb").iterdir()) == [f"{i:06d}.png" for i in range(FRAMES)]
    _, frames = imported_frames(scene.parent)
    np.testing.assert_array_equal(frames[1].image, capture[1][0])


# ------------------------------------------------------------------------------------------------ COLMAP: depth


def test_sparse_depth_is_each_observed_point_at_the_pixel_it_projects_to(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture)
    scene = import_colmap(project, tmp_path / "data" / "mine")  # no depth maps: auto is sparse
    assert json.loads((scene / "import.json").read_text())["depth"] == "sparse"
    _, frames = imported_frames(scene.parent)
    for frame, (_, depth, _) in zip(frames, capture, strict=True):
        u, v = source_pixels(depth)
        expected = np.zeros_like(depth)
        expected[v, u] = depth[v, u]
        np.testing.assert_allclose(frame.depth, expected, rtol=1e-5, atol=0)


def test_a_point_seen_by_two_images_has_depth_in_both(tmp_path: Path, capture) -> None:
    project = tmp_path / "project"
    write_images(project, capture[:2])
    reconstruction = pycolmap.Reconstruction()
    reconstruction.add_camera_with_trivial_rig(pinhole_camera())
    # A point 2 units in front of camera 0's pixel (20, 30); where camera 1 sees it follows from its pose.
    z0, (u0, v0) = 2.0, (20, 30)
    in_camera0 = np.array([(u0 - INTRINSICS[0, 2]) / INTRINSICS[0, 0] * z0, (v0 - INTRINSICS[1, 2]) / 40.0 * z0, z0])
    world = capture[0][2][:3, :3] @ in_camera0 + capture[0][2][:3, 3]
    in_camera1 = np.linalg.inv(capture[1][2])[:3] @ np.append(world, 1.0)
    pixel1 = INTRINSICS[:2] @ (in_camera1 / in_camera1[2])
    for i, pixel in enumerate([(u0, v0), pixel1]):
        image = pycolmap.Image(name=NAMES[i], keypoints=np.array([pixel]) + 0.5, camera_id=1, image_id=i + 1)
        reconstruction.add_image_with_trivial_frame(image, colmap_pose(capture[i][2]))
    track = pycolmap.Track()
    track.add_element(1, 0)
    track.add_element(2, 0)
    reconstruction.add_point3D(world, track)
    (project / "sparse").mkdir()
    reconstruction.write_binary(str(project / "sparse"))
    scene = import_colmap(project, tmp_path / "data" / "mine", depth="sparse")
    _, frames = imported_frames(scene.parent, num_views=2)
    assert frames[0].depth[v0, u0] == pytest.approx(z0) and np.count_nonzero(frames[0].depth) == 1
    u1, v1 = np.round(pixel1).astype(int)
    assert frames[1].depth[v1, u1] == pytest.approx(in_camera1[2]) and np.count_nonzero(frames[1].depth) == 1


def test_depth_none_writes_all_zero_depth(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture)
    write_dense_maps(project, capture)
    scene = import_colmap(project, tmp_path / "data" / "mine", depth="none")
    _, frames = imported_frames(scene.parent)
    assert all(frame.depth.shape == (HEIGHT, WIDTH) and not frame.depth.any() for frame in frames)


def test_depth_maps_of_downscaled_images_are_brought_to_the_image_size(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture)
    write_dense_maps(project, capture, shrink=2)  # patch-match with max_image_size: half the resolution
    scene = import_colmap(project, tmp_path / "data" / "mine")
    _, frames = imported_frames(scene.parent)
    for frame, (_, depth, _) in zip(frames, capture, strict=True):
        half = depth[::2, ::2]
        np.testing.assert_array_equal(frame.depth, half.repeat(2, axis=0).repeat(2, axis=1))


# --------------------------------------------------------------------------------------------- COLMAP: distortion


def ray_colour(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth colour [..., 3] uint8 of the viewing ray (x, y, 1): an image that any pinhole camera of the same
    pose samples exactly, whatever its focal length and principal point."""
    colour = np.stack([np.sin(3 * x), np.cos(3 * y), np.sin(2 * x + 2 * y)], axis=-1)
    return np.round(127.5 + 120 * colour).astype(np.uint8)


def pinhole_image(intrinsics: np.ndarray, width: int, height: int) -> np.ndarray:
    """What a pinhole camera with ``intrinsics`` (pixel centres at integers) records of :func:`ray_colour`."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return ray_colour((u - intrinsics[0, 2]) / intrinsics[0, 0], (v - intrinsics[1, 2]) / intrinsics[1, 1])


def test_a_distorted_camera_is_undistorted_into_a_pinhole_image_and_camera(tmp_path: Path, capture) -> None:
    camera = pinhole_camera("SIMPLE_RADIAL", (0.15,))
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    rays = camera.cam_from_img(np.stack([u.ravel() + 0.5, v.ravel() + 0.5], axis=-1))  # COLMAP: centres at +0.5
    distorted = ray_colour(rays[:, 0], rays[:, 1]).reshape(HEIGHT, WIDTH, 3)
    project = tmp_path / "project"
    for name in NAMES:
        save_image(project / "images" / name, distorted)
    write_model(project, capture, camera=camera)
    scene = import_colmap(project, tmp_path / "data" / "mine", depth="none")
    _, frames = imported_frames(scene.parent)
    inner = (slice(2, -2), slice(2, -2))  # the undistorter blanks pixels whose ray leaves the distorted image
    for frame, (_, _, pose) in zip(frames, capture, strict=True):
        height, width = frame.image.shape[:2]
        expected = pinhole_image(np.asarray(frame.intrinsics), width, height)
        error = np.abs(frame.image[inner].astype(float) - expected[inner]).mean()
        assert error < 0.5, error  # half a pixel off (COLMAP's +0.5 kept) gives 3.0; no undistortion 2.7
        assert frame.depth.shape == (height, width)
        np.testing.assert_allclose(frame.cam_to_world, pose, atol=1e-9)


def test_a_distorted_camera_with_dense_depth_maps_is_refused(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture, camera=pinhole_camera("SIMPLE_RADIAL", (0.1,)))
    write_dense_maps(project, capture)
    with pytest.raises(InputError, match=r"SIMPLE_RADIAL.*image_undistorter"):
        import_colmap(project, tmp_path / "data" / "mine")
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


# ------------------------------------------------------------------------------------------ COLMAP: bad projects


def test_a_missing_image_is_an_error_naming_it_and_leaves_no_scene(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture)
    (project / "images" / NAMES[3]).unlink()
    with pytest.raises(InputError, match=re.escape(str(project / "images" / NAMES[3]))):
        import_colmap(project, tmp_path / "data" / "mine")
    assert list((tmp_path / "data").iterdir()) == []  # no scene, no hidden staging folder


def test_an_image_of_another_size_than_its_camera_is_an_error_naming_it(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture)
    save_image(project / "images" / NAMES[1], capture[1][0][:, :40])
    with pytest.raises(InputError, match=re.escape(f"{NAMES[1]} is 40x48 but its COLMAP camera is 64x48")):
        import_colmap(project, tmp_path / "data" / "mine")


def test_a_reconstruct_output_with_original_images_is_pointed_at_images_original(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture)  # as `reconstruct --colmap-images original` lays it out:
    (project / "images").rename(project / "images_original")  # the model's images in images_original/,
    for name, (image, _, _) in zip(NAMES, capture, strict=True):  # the processed frames (another size) in images/
        save_image(project / "images" / name, image[:, :40])
    message = f"{NAMES[0]} is 40x48 but its COLMAP camera is 64x48 (pass --images {project / 'images_original'}?)"
    with pytest.raises(InputError, match=re.escape(message)):
        import_colmap(project, tmp_path / "data" / "mine")
    scene = import_colmap(project, tmp_path / "data" / "mine", images=project / "images_original")
    _, frames = imported_frames(scene.parent)
    assert len(frames) == FRAMES


def test_a_missing_depth_map_is_an_error_naming_it(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture)
    write_dense_maps(project, capture)
    missing = project / "stereo" / "depth_maps" / f"{NAMES[4]}.geometric.bin"
    missing.unlink()
    with pytest.raises(InputError, match=re.escape(str(missing))):
        import_colmap(project, tmp_path / "data" / "mine")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"4&3&2&" + np.zeros(24, dtype="<f4").tobytes(), "header says 4x3x2"),  # two channels: a normal map
        (b"4&3&1&" + np.zeros(5, dtype="<f4").tobytes(), "header says 4x3x1.*20 bytes follow"),  # truncated
        (b"\x89PNG", "not a COLMAP depth map"),
    ],
)
def test_a_malformed_depth_map_is_an_error_naming_it(tmp_path: Path, capture, content: bytes, problem: str) -> None:
    project = colmap_project(tmp_path, capture)
    write_dense_maps(project, capture)
    path = project / "stereo" / "depth_maps" / f"{NAMES[0]}.geometric.bin"
    path.write_bytes(content)
    with pytest.raises(InputError, match=f"{re.escape(str(path))}.*{problem}"):
        import_colmap(project, tmp_path / "data" / "mine")


def test_a_folder_without_a_model_is_an_error_naming_it(tmp_path: Path, capture) -> None:
    write_images(tmp_path / "project", capture)
    with pytest.raises(InputError, match=f"no COLMAP model .* in {re.escape(str(tmp_path / 'project'))}"):
        import_colmap(tmp_path / "project", tmp_path / "data" / "mine")


def test_a_non_finite_pose_is_an_error_naming_the_image(tmp_path: Path, capture) -> None:
    broken = [(image, depth, pose.copy()) for image, depth, pose in capture]
    broken[2][2][0, 3] = np.nan
    project = colmap_project(tmp_path, broken)
    with pytest.raises(InputError, match=f"{NAMES[2]}: the camera pose must be a finite 4x4 matrix"):
        import_colmap(project, tmp_path / "data" / "mine")


def test_an_unreadable_model_is_an_error_naming_its_folder(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture, binary=False)
    (project / "sparse" / "0" / "images.txt").write_text("1 0.5 nonsense\n")
    with pytest.raises(InputError, match=re.escape(f"cannot read the COLMAP model in {project / 'sparse' / '0'}")):
        import_colmap(project, tmp_path / "data" / "mine")


def test_an_existing_scene_is_kept_unless_overwrite_is_given(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture)
    scene = tmp_path / "data" / "mine"
    scene.mkdir(parents=True)
    (scene / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=re.escape(f"{scene} is not empty")):
        import_colmap(project, scene)
    assert (scene / "notes.txt").read_text() == "mine"
    import_colmap(project, scene, overwrite=True)
    assert not (scene / "notes.txt").exists() and len(list((scene / "rgb").iterdir())) == FRAMES


# ------------------------------------------------------------------------------------- reconstruct output folders


@pytest.fixture(scope="module", params=["crop", "pad"])
def reconstruction(request, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``streamvggt reconstruct`` output folder of four 70x56 frames (tiny random model); ``pad`` frames sit
    in a white 70x70 square."""
    folder = tmp_path_factory.mktemp(f"reconstruct_{request.param}")
    frames = reconstruct_helpers.write_images(folder / "frames", [f"{i}.png" for i in range(4)])
    reconstruct(frames[0].parent, folder / "out", reconstruct_helpers.tiny_model(), size=70, preprocess=request.param)
    return folder / "out"


def test_a_reconstruction_imports_its_cameras_images_and_depth(tmp_path: Path, reconstruction: Path) -> None:
    scene = import_reconstruction(reconstruction, tmp_path / "data" / "pseudo")
    document = json.loads((reconstruction / "cameras.json").read_text())
    top, left, height, width = document["preprocess"].get("content_box") or (0, 0, 56, 70)
    assert (height, width) == (56, 70)  # padding, if any, is cropped away
    _, frames = imported_frames(scene.parent, num_views=4)
    for frame, entry in zip(frames, document["frames"], strict=True):
        image = np.asarray(Image.open(reconstruction / entry["image"]).convert("RGB"))[top : top + 56, left : left + 70]
        depth = np.load(reconstruction / entry["depth"])[top : top + 56, left : left + 70]
        intrinsics = np.asarray(entry["intrinsic"])
        intrinsics[:2, 2] -= (left, top)
        cam_to_world = np.linalg.inv(np.vstack([np.asarray(entry["extrinsic"]), [0, 0, 0, 1]]))
        assert_frame_equals(frame, image, depth, intrinsics, cam_to_world, depth_atol=0)
    assert [f["name"] for f in json.loads((scene / "import.json").read_text())["frames"]] == [
        f["name"] for f in document["frames"]
    ]


def test_depth_below_the_confidence_percentile_becomes_unknown(tmp_path: Path, reconstruction: Path) -> None:
    scene = import_reconstruction(reconstruction, tmp_path / "data" / "pseudo", min_conf_percentile=40)
    document = json.loads((reconstruction / "cameras.json").read_text())
    top, left, _, _ = document["preprocess"].get("content_box") or (0, 0, 56, 70)
    _, frames = imported_frames(scene.parent, num_views=4)
    for frame, entry in zip(frames, document["frames"], strict=True):
        conf = np.load(reconstruction / entry["depth_conf"])
        kept = (conf >= np.percentile(conf, 40))[top : top + 56, left : left + 70]
        np.testing.assert_array_equal(frame.depth > 0, kept & (frame.depth > 0))
        assert not (frame.depth[~kept]).any() and (frame.depth[kept] > 0).mean() > 0.9


def test_a_reconstruction_with_a_missing_depth_file_is_an_error_naming_it(tmp_path: Path, reconstruction) -> None:
    copy = tmp_path / "out"
    shutil.copytree(reconstruction, copy)
    (copy / "depth" / "000002.npy").unlink()
    with pytest.raises(InputError, match=re.escape(str(copy / "depth" / "000002.npy"))):
        import_reconstruction(copy, tmp_path / "data" / "pseudo")


def test_a_reconstruction_depth_of_a_wrong_shape_is_an_error_naming_it(tmp_path: Path, reconstruction) -> None:
    copy = tmp_path / "out"
    shutil.copytree(reconstruction, copy)
    np.save(copy / "depth" / "000001.npy", np.ones((3, 4), dtype=np.float32))
    with pytest.raises(InputError, match=re.escape(f"{copy / 'depth' / '000001.npy'} has shape [3, 4]")):
        import_reconstruction(copy, tmp_path / "data" / "pseudo")


def test_a_folder_without_frames_is_not_a_reconstruction(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cameras.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'out' / 'cameras.json'} lists no frames")):
        import_reconstruction(tmp_path / "out", tmp_path / "data" / "pseudo")


def test_a_missing_folder_or_one_without_cameras_json_is_named_as_not_a_reconstruction(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=f"^reconstruct output folder not found: {re.escape(str(tmp_path / 'no'))}$"):
        import_reconstruction(tmp_path / "no", tmp_path / "data" / "pseudo")
    (tmp_path / "frames").mkdir()
    message = f"{tmp_path / 'frames'} has no cameras.json: not a streamvggt reconstruct output folder"
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        import_reconstruction(tmp_path / "frames", tmp_path / "data" / "pseudo")
    assert not (tmp_path / "data").exists()


def test_an_output_under_a_file_is_an_error_naming_the_output_not_its_hidden_folder(tmp_path, reconstruction) -> None:
    (tmp_path / "a_file").write_text("")
    message = f"cannot create output {tmp_path / 'a_file' / 'scene'}: Not a directory"
    with pytest.raises(OutputError, match=f"^{re.escape(message)}$"):
        import_reconstruction(reconstruction, tmp_path / "a_file" / "scene")


# ---------------------------------------------------------------------------------------- command and training


def import_command(argv: list[str]) -> int:
    """``streamvggt data import ARGV``."""
    return cli_main(["data", "import", *argv])


def test_the_command_imports_and_reports_a_bad_source_in_one_line(tmp_path: Path, capture, capsys) -> None:
    project = colmap_project(tmp_path, capture)
    write_dense_maps(project, capture)
    scene = tmp_path / "data" / "mine"
    assert import_command(["--from", "colmap", str(project), "-o", str(scene)]) == 0
    assert (
        capsys.readouterr().out
        == f"imported {FRAMES} frames into {scene}: a generic dataset with root {scene.parent}\n"
    )
    assert len(list((scene / "depth").glob("*.npy"))) == FRAMES
    assert import_command(["--from", "colmap", str(tmp_path / "nowhere"), "-o", str(tmp_path / "other")]) == 1
    assert capsys.readouterr().err == (
        f"streamvggt data import: error: COLMAP folder not found: {tmp_path / 'nowhere'}\n"
    )


def test_without_pycolmap_a_colmap_import_names_the_install(tmp_path: Path, capture, capsys, monkeypatch) -> None:
    project = colmap_project(tmp_path, capture)
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # import pycolmap now fails as if it were not installed
    assert import_command(["--from", "colmap", str(project), "-o", str(tmp_path / "data" / "mine")]) == 1
    assert capsys.readouterr().err == (
        "streamvggt data import: error: importing COLMAP models needs pycolmap: pip install 'streamvggt[train]'\n"
    )


def test_an_imported_scene_trains_mixed_with_synthetic_scenes(tmp_path: Path, capture) -> None:
    project = colmap_project(tmp_path, capture)
    write_dense_maps(project, capture)
    import_colmap(project, tmp_path / "own" / "my_capture")
    # The example config, made tiny: a 4-layer random model, 2 views of 28x28, 2 clips of each dataset.
    config = yaml.safe_load((Path(__file__).parents[1] / "configs" / "finetune_own_capture.yaml").read_text())
    config["model"] = {
        "preset": "tiny",
        "overrides": {"depth": 4, "dpt_head": {"intermediate_layer_idx": [0, 1, 2, 3]}},
    }
    config["data"].update(num_views=2, resolutions=[[28, 28]], batch_size=1)
    own, synthetic = config["data"]["datasets"]
    own.update(root=str(tmp_path / "own"), samples=2)
    synthetic.update(samples=2, options={"num_scenes": 2, "frames_per_scene": 6, "supersample": 1})
    config["loss"].update(query_points=4, track=0.05)
    config["optim"].update(epochs=1.0, warmup_epochs=0.0)
    config["run"].update(output_dir=str(tmp_path / "run"), save_every=4, progress=False, log_every=1)
    parsed = from_dict(config)
    mix = build_mix(parsed)
    assert [d.name for d in mix.datasets] == ["own_capture", "synthetic"]
    assert [mix.locate(0, i)[0] for i in range(len(mix))] == [0, 0, 1, 1]
    own_clip = mix[ItemKey(epoch=0, index=0, resolution=0)]
    assert own_clip["dataset"] == "own_capture" and own_clip["valid_mask"].float().mean() > 0.3
    train(parsed)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) and r["loss/depth"] != 0 and r["loss/track"] != 0 for r in records)
