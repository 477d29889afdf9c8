"""Output writers, each read back with an independent reader (trimesh, pycolmap, numpy, Pillow)."""

from __future__ import annotations

import builtins
import errno
import os
from pathlib import Path

import numpy as np
import pycolmap
import pytest
import trimesh
from PIL import Image

from streamvggt.io import OutputError
from streamvggt.io.atomic import atomic_output
from streamvggt.io.outputs.cameras import CameraRecord
from streamvggt.io.outputs.colmap import write_colmap
from streamvggt.io.outputs.colmap_tracks import Observations
from streamvggt.io.outputs.depth import colorize_depth, write_depth
from streamvggt.io.outputs.image_views import processed_view
from streamvggt.io.outputs.ply import write_ply
from streamvggt.io.outputs.points import POINT_DTYPE, PointSpool, VoxelGrid, confident_points, subsample
from streamvggt.io.outputs.writer import ReconstructionWriter
from streamvggt.pipeline.reconstructor import FrameResult


def make_records(xyz, frame=0, uv=(0, 0), rgb=(10, 20, 30)) -> np.ndarray:
    records = np.zeros(len(xyz), dtype=POINT_DTYPE)
    records["xyz"], records["frame"], records["uv"], records["rgb"] = xyz, frame, uv, rgb
    return records


def leftovers(folder) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_ply_is_binary_and_read_back_by_trimesh(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(2500, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(2500, 3), dtype=np.uint8)
    write_ply(tmp_path / "p.ply", xyz, rgb, chunk=1000)  # three chunks
    assert (tmp_path / "p.ply").read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    cloud = trimesh.load(tmp_path / "p.ply")
    assert isinstance(cloud, trimesh.PointCloud)
    np.testing.assert_array_equal(cloud.vertices, xyz)
    np.testing.assert_array_equal(cloud.colors[:, :3], rgb)


def test_empty_ply_is_valid(tmp_path):
    write_ply(tmp_path / "e.ply", np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    assert b"element vertex 0\n" in (tmp_path / "e.ply").read_bytes()


def test_confident_points_keep_the_frame_percentile_and_skip_padding_and_nan():
    height, width = 4, 5
    points = np.arange(height * width * 3, dtype=np.float32).reshape(height, width, 3)
    conf = np.arange(height * width, dtype=np.float32).reshape(height, width) + 1  # 1..20
    colors = np.full((height, width, 3), 7, dtype=np.uint8)
    valid = np.ones((height, width), dtype=bool)
    valid[0] = False  # padding row: confidences 1..5 are not counted
    points[3, 4] = np.nan  # the most confident pixel is not finite
    records = confident_points(points, conf, colors, valid, frame=3, percentile=50)
    # valid finite confidences: 6..19 -> median 12.5 -> keep 13..19 (7 pixels)
    assert sorted(conf[records["uv"][:, 1], records["uv"][:, 0]].tolist()) == list(range(13, 20))
    assert (records["frame"] == 3).all() and (records["rgb"] == 7).all()
    u, v = records["uv"][0]
    np.testing.assert_array_equal(records["xyz"][0], points[v, u])
    assert len(confident_points(points, conf, colors, valid, 0, percentile=0)) == 14


def test_spool_round_trip_and_cleanup(tmp_path):
    spool = PointSpool(tmp_path)
    spool.add(make_records(np.ones((3, 3)), frame=1))
    spool.add(make_records(np.zeros((2, 3)), frame=2))
    records = spool.records()
    assert records["frame"].tolist() == [1, 1, 1, 2, 2]
    del records
    spool.close()
    assert list(tmp_path.iterdir()) == []


def test_voxel_grid_averages_points_and_keeps_the_first_observation():
    grid = VoxelGrid(1.0, batch=2)  # merges every two records: incremental merging must equal one merge
    grid.add(make_records([[0.1, 0.1, 0.1], [0.3, 0.5, 0.9]], frame=0, uv=(1, 2), rgb=(0, 0, 0)))
    grid.add(make_records([[0.5, 0.3, 0.2], [5.5, 0.0, 0.0]], frame=1, uv=(3, 4), rgb=(30, 60, 90)))
    records = grid.records()
    assert len(records) == 2
    near = records[np.argmin(records["xyz"][:, 0])]
    np.testing.assert_allclose(near["xyz"], [0.3, 0.3, 0.4], rtol=1e-6)
    assert near["rgb"].tolist() == [10, 20, 30]
    assert near["frame"] == 0 and near["uv"].tolist() == [1, 2]


def test_subsample_is_uniform_ordered_and_bounded():
    records = make_records(np.arange(3000, dtype=np.float32)[:, None].repeat(3, 1))
    sample = subsample(records, 100)
    assert len(sample) == 100 and (np.diff(sample["xyz"][:, 0]) > 0).all()
    assert len(subsample(records, 5000)) == 3000


def cameras(count: int = 2, height: int = 56, width: int = 70) -> list[CameraRecord]:
    out = []
    for i in range(count):
        angle = 0.2 * i
        rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
        extrinsic = np.concatenate((rot, [[0.1 * i], [0.0], [0.5]]), axis=1)
        intrinsic = np.array([[60.0 + i, 0, width / 2], [0, 62.0, height / 2], [0, 0, 1]])
        out.append(CameraRecord(i, f"frame {i}.png", 2 * i, None, extrinsic, intrinsic, (height, width)))
    return out


def test_colmap_model_is_read_by_pycolmap_with_half_pixel_convention(tmp_path):
    cams = cameras()
    # Two points per frame, placed so that each projects exactly onto its recorded pixel.
    records = []
    for cam in cams:
        for u, v, z in ((10, 20, 2.0), (40, 5, 3.0)):
            k, ext = cam.intrinsic, cam.extrinsic
            in_cam = np.array([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z])
            world = ext[:, :3].T @ (in_cam - ext[:, 3])
            records.append(make_records([world], frame=cam.index, uv=(u, v)))
    records = np.concatenate(records)
    views = [processed_view(cam.index, cam.image_size) for cam in cams]
    own_pixels = Observations(np.arange(len(records)), records["frame"].astype(np.int64), records["uv"].astype(float))
    write_colmap(tmp_path / "colmap", cams, views, records, own_pixels)

    model = pycolmap.Reconstruction()
    model.read_text(str(tmp_path / "colmap"))
    assert (len(model.cameras), len(model.images), len(model.points3D)) == (2, 2, 4)
    for image_id, image in model.images.items():
        cam = cams[image_id - 1]
        assert image.name == f"{image_id - 1:06d}.png"  # the processed frame's file in images/
        np.testing.assert_allclose(image.cam_from_world().matrix(), cam.extrinsic, atol=1e-9)
        np.testing.assert_allclose(model.cameras[image.camera_id].params[:2], np.diag(cam.intrinsic)[:2])
        assert len(image.points2D) == 2
    for point in model.points3D.values():
        (element,) = point.track.elements
        image = model.images[element.image_id]
        observed = image.points2D[element.point2D_idx].xy
        camera = model.cameras[image.camera_id]
        projected = camera.img_from_cam(image.cam_from_world() * point.xyz)
        np.testing.assert_allclose(projected, observed, atol=1e-4)
        assert point.error == pytest.approx(0, abs=1e-4)
    # Model pixel (10, 20) is COLMAP coordinate (10.5, 20.5).
    assert sorted(p.xy.tolist() for p in model.images[1].points2D) == [[10.5, 20.5], [40.5, 5.5]]


def test_depth_files_are_float32_npy_and_an_optional_png(tmp_path):
    depth = np.linspace(1, 2, 56 * 70, dtype=np.float64).reshape(56, 70)
    conf = np.ones((56, 70))
    valid = np.ones((56, 70), dtype=bool)
    written = write_depth(tmp_path, 7, depth, conf, valid, png=True)
    assert [p.name for p in written] == ["000007.npy", "000007_conf.npy", "000007.png"]
    loaded = np.load(tmp_path / "000007.npy")
    assert loaded.dtype == np.float32 and loaded.shape == (56, 70)
    np.testing.assert_allclose(loaded, depth, rtol=1e-6)
    with Image.open(tmp_path / "000007.png") as png:
        assert png.size == (70, 56) and png.mode == "RGB"
    assert leftovers(tmp_path) == []


def test_depth_colours_go_from_far_to_near_and_black_outside():
    depth = np.array([[1.0, 10.0, np.nan, 0.0]])
    colours = colorize_depth(depth, np.array([[True, True, True, True]])).astype(int)
    assert (colours[0, 2] == 0).all() and (colours[0, 3] == 0).all()
    assert colours[0, 0, 0] > colours[0, 0, 2]  # near: red
    assert colours[0, 1, 2] > colours[0, 1, 0]  # far: blue


def test_atomic_output_leaves_no_file_when_writing_fails(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and leftovers(tmp_path) == []


def test_writer_refuses_an_output_path_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot write to output folder"):
        ReconstructionWriter(tmp_path / "file" / "out")
    with pytest.raises(OutputError, match="it is a file"):
        ReconstructionWriter(tmp_path / "file")


def _refuse_writes_under(folder, monkeypatch) -> None:
    """Make every file creation under ``folder`` fail with EACCES, as a read-only folder does for a normal user
    (chmod does not stop root, which CI runs as)."""

    def guarded(opener):
        def open_unless_under(path, *args, **kwargs):
            if os.fspath(path).startswith(os.fspath(folder)):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
            return opener(path, *args, **kwargs)

        return open_unless_under

    monkeypatch.setattr(Path, "write_bytes", guarded(Path.write_bytes))
    monkeypatch.setattr(Path, "open", guarded(Path.open))
    monkeypatch.setattr(builtins, "open", guarded(builtins.open))


def test_writer_refuses_a_folder_it_cannot_write_into_in_one_line(tmp_path, monkeypatch):
    out = tmp_path / "new" / "out"
    _refuse_writes_under(tmp_path, monkeypatch)
    with pytest.raises(OutputError) as raised:
        ReconstructionWriter(out)
    assert str(raised.value) == f"cannot write to output folder {out}: Permission denied"
    assert list(tmp_path.iterdir()) == []  # the folders it made for the check are gone again


def _frame(index: int, height: int = 4, width: int = 5) -> FrameResult:
    """A frame 2 m in front of an identity camera."""
    depth = np.full((height, width), 2.0, np.float32)
    return FrameResult(
        index=index,
        name=f"f{index}",
        source_index=index,
        timestamp=None,
        image=np.full((height, width, 3), 100, np.uint8),
        valid=np.ones((height, width), bool),
        extrinsic=np.hstack((np.eye(3), np.zeros((3, 1)))),
        intrinsic=np.array([[4.0, 0, 2.5], [0, 4.0, 2.0], [0, 0, 1]]),
        depth=depth,
        depth_conf=np.ones_like(depth),
        world_points=np.zeros((height, width, 3), np.float32),
        world_points_conf=np.ones_like(depth),
    )


def test_a_write_that_fails_at_the_rename_is_one_line_and_leaves_no_half_written_file(tmp_path, monkeypatch):
    out = tmp_path / "out"

    def refuse(source, target):
        assert Path(source).stat().st_size > 0  # the whole file was written under its temporary name
        raise PermissionError(errno.EACCES, "Permission denied", os.fspath(target))

    with pytest.raises(OutputError) as raised, ReconstructionWriter(out) as writer:
        writer.add(_frame(0))
        frame_files = sorted(p.relative_to(out) for p in out.rglob("*") if not p.name.endswith(".tmp"))
        monkeypatch.setattr(os, "replace", refuse)
        writer.finish()
    assert str(raised.value) == f"cannot write {out / 'points.ply'}: Permission denied"
    # The frame's files, whole, and nothing else: no points.ply, no temporary file.
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == frame_files
    assert leftovers(tmp_path) == []


def test_writer_abort_removes_what_it_created(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), ReconstructionWriter(out):
        raise RuntimeError("failed before any frame")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"points": "mesh"}, "point source"), ({"conf_threshold": 100}, "percentile"), ({"voxel_size": 0}, "voxel")],
)
def test_writer_rejects_bad_options(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReconstructionWriter(tmp_path, **kwargs)
