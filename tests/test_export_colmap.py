"""The COLMAP export, read back by pycolmap (COLMAP's own bindings): models in text and binary, image names that
resolve to files of the recorded size, multi-view tracks judged by depth, shared cameras, and the source frames at
full resolution (``--colmap-images original``) with intrinsics that map onto their pixels."""

from __future__ import annotations

import contextlib
import io
import json
import sys

import numpy as np
import pycolmap
import pytest
from PIL import Image

from streamvggt.cli import main
from streamvggt.io.outputs.colmap import camera_ids
from streamvggt.io.outputs.image_views import processed_view
from streamvggt.io.outputs.interchange import ExportOptions
from streamvggt.pipeline.reconstructor import reconstruct
from tests.export_scene import FOCAL, FRAMES, HEIGHT, STEP, WALL, WIDTH, write_scene
from tests.reconstruct_helpers import frame_pixels, tiny_model


def read_model(folder) -> pycolmap.Reconstruction:
    return pycolmap.Reconstruction(str(folder))


def tracks(model: pycolmap.Reconstruction) -> dict[int, list[int]]:
    """Point id -> ids of the images observing it, sorted."""
    return {pid: sorted(e.image_id for e in p.track.elements) for pid, p in model.points3D.items()}


@pytest.mark.parametrize("file_format", ["text", "bin"])
def test_model_loads_and_names_images_that_exist_with_the_recorded_size(tmp_path, file_format):
    out = write_scene(tmp_path / "out", ExportOptions(colmap_format=file_format))
    suffix = ".txt" if file_format == "text" else ".bin"
    assert {p.suffix for p in (out / "colmap").iterdir()} == {suffix}
    model = read_model(out / "colmap")
    assert (len(model.images), len(model.points3D)) == (FRAMES, FRAMES * WIDTH * HEIGHT)
    for image in model.images.values():
        camera = model.cameras[image.camera_id]
        with Image.open(out / "images" / image.name) as file:
            assert file.size == (camera.width, camera.height) == (WIDTH, HEIGHT)
    # 3DGS and gsplat read <folder>/sparse/0 beside <folder>/images: the same model.
    assert read_model(out / "sparse" / "0").summary() == model.summary()


def test_every_observation_is_within_a_pixel_of_its_points_reprojection(tmp_path):
    model = read_model(write_scene(tmp_path / "out") / "colmap")
    lengths = []
    for point in model.points3D.values():
        lengths.append(point.track.length())
        for element in point.track.elements:
            image = model.images[element.image_id]
            projected = model.cameras[image.camera_id].img_from_cam(image.cam_from_world() * point.xyz)
            assert np.linalg.norm(projected - image.points2D[element.point2D_idx].xy) < 1.0
    assert np.mean(lengths) > 2.5  # the wall is seen by all three frames, except strips at the sides


def test_points_are_observed_by_exactly_the_frames_they_project_into(tmp_path):
    """The wall agrees with every frame's depth: a point's track is every frame whose image it lands in."""
    model = read_model(write_scene(tmp_path / "out", ExportOptions(max_track_length=FRAMES)) / "colmap")
    for pid, observers in tracks(model).items():
        x, y, z = model.points3D[pid].xyz
        columns = FOCAL * (x - STEP * np.arange(FRAMES)) / z + WIDTH / 2  # model pixels: centres at integers
        rows = FOCAL * y / z + HEIGHT / 2
        inside = (np.rint(columns) >= 0) & (np.rint(columns) < WIDTH) & (np.rint(rows) >= 0) & (np.rint(rows) < HEIGHT)
        assert observers == (np.nonzero(inside)[0] + 1).tolist()


def test_a_frame_whose_depth_disagrees_observes_only_its_own_points(tmp_path):
    nearer = np.full((HEIGHT, WIDTH), WALL * 0.9)  # 10% off: far beyond the 2% tolerance
    model = read_model(write_scene(tmp_path / "out", depths={2: nearer}) / "colmap")
    third = model.images[3]
    owners = {pid for pid, p in model.points3D.items() if p.track.elements[0].image_id == 3}
    seen = {pid for pid, observers in tracks(model).items() if 3 in observers}
    assert len(owners) == WIDTH * HEIGHT and seen == owners == {p.point3D_id for p in third.points2D}
    assert all(len(observers) == 1 for pid, observers in tracks(model).items() if pid in owners)
    assert any(len(observers) == 2 for observers in tracks(model).values())  # frames 1 and 2 still agree


def test_tracks_are_capped_and_start_with_the_points_own_frame(tmp_path):
    model = read_model(write_scene(tmp_path / "out", ExportOptions(max_track_length=2)) / "colmap")
    per_image = WIDTH * HEIGHT
    lengths = []
    for pid, point in model.points3D.items():
        own = (pid - 1) // per_image + 1  # points are written frame by frame
        lengths.append(point.track.length())
        assert point.track.elements[0].image_id == own
    assert max(lengths) == 2 and np.mean(lengths) > 1.9


def test_frames_with_different_intrinsics_get_one_camera_each(tmp_path):
    model = read_model(write_scene(tmp_path / "out", focals=[30.0, 31.0, 32.5]) / "colmap")
    assert len(model.cameras) == FRAMES
    assert sorted(model.cameras[i.camera_id].params[0] for i in model.images.values()) == [30.0, 31.0, 32.5]


def test_shared_camera_averages_the_intrinsics(tmp_path):
    exports = ExportOptions(shared_camera=True)
    model = read_model(write_scene(tmp_path / "out", exports, focals=[30.0, 31.0, 32.5]) / "colmap")
    (camera,) = model.cameras.values()
    np.testing.assert_allclose(camera.params, [31.166666667, 31.166666667, WIDTH / 2 + 0.5, HEIGHT / 2 + 0.5])
    assert {image.camera_id for image in model.images.values()} == {camera.camera_id}


def test_identical_intrinsics_share_one_camera(tmp_path):
    model = read_model(write_scene(tmp_path / "out") / "colmap")
    assert len(model.cameras) == 1


def test_shared_camera_over_images_of_several_sizes_keeps_one_camera_each(tmp_path, caplog):
    views = [processed_view(0, (24, 32)), processed_view(1, (24, 32)), processed_view(2, (30, 40))]
    pinholes = np.array([[30.0, 30.0, 16.5, 12.5], [31.0, 31.0, 16.5, 12.5], [30.0, 30.0, 20.5, 15.5]])
    ids, params = camera_ids(views, pinholes, shared=True)
    assert ids.tolist() == [1, 2, 3] and params.tolist() == pinholes.tolist()
    assert "--shared-camera: the images have 2 sizes, so each keeps its own camera" in caplog.messages


def test_binary_format_without_pycolmap_is_one_line_naming_the_extra_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # import pycolmap now fails as if it were not installed
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["reconstruct", str(tmp_path), "-o", str(tmp_path / "out"), "--colmap-format", "bin"])
    assert code == 1 and not (tmp_path / "out").exists()
    assert (
        err.getvalue()
        == "streamvggt reconstruct: error: --colmap-format bin needs pycolmap: pip install 'streamvggt[eval]'\n"
    )


def test_a_model_of_the_other_format_from_an_earlier_run_is_replaced(tmp_path):
    write_scene(tmp_path / "out", ExportOptions(colmap_format="text"))
    out = write_scene(tmp_path / "out", ExportOptions(colmap_format="bin"))
    assert sorted(p.name for p in (out / "colmap").iterdir()) == [
        "cameras.bin",
        "frames.bin",
        "images.bin",
        "points3D.bin",
        "rigs.bin",
    ]


# Tall source frames: with --size 42, crop mode scales 56x98 to 42x70 and keeps rows 14..55 (a 42x42 frame); pad
# mode scales them to 28x42 and pads columns 7..34 with white.
SOURCE_W, SOURCE_H, SIZE = 56, 98, 42
RESIZED = {"crop": (42, 70, 0, -14), "pad": (28, 42, 7, 0)}  # width, height, left, top in the processed frame


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_original_images_carry_intrinsics_rescaled_to_the_source_with_the_crop_undone(tmp_path, model, mode):
    frames = tmp_path / "frames"
    frames.mkdir()
    sources = [frame_pixels(i, SOURCE_W, SOURCE_H) for i in range(2)]
    for i, pixels in enumerate(sources):
        Image.fromarray(pixels).save(frames / f"{i}.png")
    out = tmp_path / "out"
    exports = ExportOptions(colmap_images="original")
    reconstruct(frames, out, model, preprocess=mode, size=SIZE, exports=exports, conf_threshold=0.0)
    cameras = json.loads((out / "cameras.json").read_text())["frames"]
    colmap = read_model(out / "colmap")
    width, height, left, top = RESIZED[mode]
    sx, sy = SOURCE_W / width, SOURCE_H / height
    for image in colmap.images.values():
        with Image.open(out / "images_original" / image.name) as file:
            np.testing.assert_array_equal(np.asarray(file), sources[image.image_id - 1])  # the source, unchanged
        camera = colmap.cameras[image.camera_id]
        assert (camera.width, camera.height) == (SOURCE_W, SOURCE_H)
        k = np.array(cameras[image.image_id - 1]["intrinsic"])
        expected = [k[0, 0] * sx, k[1, 1] * sy, (k[0, 2] + 0.5 - left) * sx, (k[1, 2] + 0.5 - top) * sy]
        np.testing.assert_allclose(camera.params, expected, rtol=1e-12)
        # Each point lands on its own colour in the full-resolution source (the resampling blurs a little).
        per_frame = len(colmap.points3D) // 2  # every content pixel (threshold 0), frame by frame
        owned = [p for pid, p in colmap.points3D.items() if (pid - 1) // per_frame + 1 == image.image_id]
        pixels = np.array([camera.img_from_cam(image.cam_from_world() * p.xyz) for p in owned])
        colours = np.array([p.color for p in owned], dtype=np.float64)
        u, v = np.floor(pixels).astype(int).T  # corner-origin coordinates: pixel (u, v) spans [u, u + 1)
        difference = np.abs(sources[image.image_id - 1][v, u] - colours).mean()
        shifted = np.abs(sources[image.image_id - 1][np.clip(v + 7, 0, SOURCE_H - 1), u] - colours).mean()
        assert difference < 6 and shifted > 3 * difference


def test_the_colmap_model_holds_a_uniform_sample_of_the_points_by_default_and_all_on_request(tmp_path):
    from streamvggt.io.outputs.interchange import COLMAP_POINTS

    assert ExportOptions().colmap_points == COLMAP_POINTS == 200_000  # about 60 MB of text model, however long
    everything = FRAMES * 24 * 32
    capped = write_scene(tmp_path / "capped", ExportOptions(colmap_points=1000))
    assert len(pycolmap.Reconstruction(str(capped / "colmap")).points3D) == 1000
    header = (capped / "points.ply").read_bytes()[:300].decode("ascii", "replace")
    assert f"element vertex {everything}\n" in header  # points.ply keeps every point
    every = write_scene(tmp_path / "all", ExportOptions(colmap_points=None))
    assert len(pycolmap.Reconstruction(str(every / "colmap")).points3D) == everything


@pytest.mark.parametrize("limit", [0, -5, True])
def test_a_colmap_point_limit_below_one_is_refused(limit):
    with pytest.raises(ValueError, match="the COLMAP point limit must be at least 1"):
        ExportOptions(colmap_points=limit)


@pytest.mark.parametrize("file_format", ["text", "bin"])
def test_writing_the_outputs_reports_progress_step_by_step_to_its_total(tmp_path, monkeypatch, file_format):
    import tqdm.auto

    bars = []

    class Recorder:
        def __init__(self, total=None, disable=False, **kwargs):
            self.total, self.done, self.disable, self.desc = total, 0, disable, kwargs.get("desc")
            bars.append(self)

        def update(self, n=1):
            self.done += n

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    write_scene(tmp_path / "out", ExportOptions(colmap_format=file_format))
    (bar,) = bars
    assert bar.desc == "writing outputs" and bar.done == bar.total == 4 + FRAMES + 1 + 2 + (file_format == "bin")
