"""The ``hypersim`` reader on a small dataset written as CUT3R's preprocess_hypersim.py writes it:
``ROOT/{scene}/{camera}/{frame:06d}_rgb.png``, ``{frame:06d}_depth.npy`` (float32 z-depth in metres, NaN where no
geometry was hit), ``{frame:06d}_cam.npz`` (float32 ``intrinsics`` from the OpenGL projection, principal point in
continuous pixel coordinates, and ``pose`` camera-to-world). Frames with bad poses were dropped, so numbers have
gaps; cameras without data leave an empty folder."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from streamvggt.train.data.mix import build_reader
from streamvggt.train.data.sampling import ClipSampling
from tests.layout_helpers import (
    FRAMES,
    INTRINSICS,
    READ_OPTIONS,
    SIZE,
    assert_frame_equals,
    assert_relative_poses,
    check_clip,
    read_clips,
    render_sequence,
    save_image,
    save_npz,
)

FRAME_IDS = [0, 1, 3, 4, 6, 9]  # gaps where the preprocess dropped frames
# The projection gives the principal point with the first pixel's centre at (0.5, 0.5).
STORED_INTRINSICS = INTRINSICS + np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])


@pytest.fixture(scope="module")
def sequences() -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    return [render_sequence(seed) for seed in (21, 22)]


def write_camera(folder: Path, frames, frame_ids=FRAME_IDS) -> None:
    for frame_id, (image, depth, cam_to_world) in zip(frame_ids, frames, strict=False):
        save_image(folder / f"{frame_id:06d}_rgb.png", image)
        np.save(folder / f"{frame_id:06d}_depth.npy", depth.astype(np.float32))
        save_npz(
            folder / f"{frame_id:06d}_cam.npz",
            intrinsics=STORED_INTRINSICS.astype(np.float32),
            pose=cam_to_world.astype(np.float32),
        )


def write_hypersim(root: Path, sequences) -> None:
    for s, frames in enumerate(sequences):
        write_camera(root / f"ai_001_{s + 1:03d}" / "cam_00", frames)


def test_hypersim_clips_are_consistent_metric_static_clips(tmp_path: Path, sequences) -> None:
    write_hypersim(tmp_path, sequences)
    dataset = build_reader("hypersim", root=str(tmp_path), num_views=4, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 4 + 1)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 4)
        assert bool(clip["is_metric"]) and bool(clip["static"]) and clip["dataset"] == "hypersim"


def test_hypersim_frames_equal_the_ground_truth_in_opencv_intrinsics(tmp_path: Path, sequences) -> None:
    write_hypersim(tmp_path, sequences)
    dataset = build_reader("hypersim", root=str(tmp_path), num_views=FRAMES, sampling={"video_prob": 1.0})
    camera = tmp_path / "ai_001_001" / "cam_00"
    for frame_id, (image, depth, cam_to_world) in zip(FRAME_IDS, sequences[0], strict=True):
        frame = dataset.load_frame(camera / f"{frame_id:06d}_rgb.png")
        assert_frame_equals(frame, image, depth, INTRINSICS, cam_to_world)
    # A whole-trajectory video clip is the frames in number order (gaps included).
    clip = dataset.clip(0, SIZE, np.random.default_rng(0))
    assert_relative_poses(clip, [pose for _, _, pose in sequences[0]])


def test_hypersim_depth_without_geometry_is_invalid(tmp_path: Path, sequences) -> None:
    image, depth, pose = sequences[0][0]
    broken = depth.copy()
    broken[:4] = np.nan
    broken[4:6] = np.inf
    write_camera(tmp_path / "ai_001_001" / "cam_00", [(image, broken, pose)] * 2, [0, 1])
    dataset = build_reader("hypersim", root=str(tmp_path), num_views=2)
    loaded = dataset.load_frame(tmp_path / "ai_001_001" / "cam_00" / "000000_rgb.png").depth
    assert (loaded[:6] == 0).all()
    np.testing.assert_allclose(loaded[6:], depth[6:], rtol=0, atol=1e-6)


def test_hypersim_sampling_follows_the_reference(tmp_path: Path, sequences) -> None:
    write_hypersim(tmp_path, sequences)
    dataset = build_reader("hypersim", root=str(tmp_path), num_views=3)
    expected = ClipSampling(min_interval=1, max_interval=4, video_prob=0.5, fixed_interval_prob=0.5, block_shuffle=16)
    assert dataset.sampling == expected
    override = build_reader("hypersim", root=str(tmp_path), num_views=3, sampling={"max_interval": 2})
    assert override.sampling.max_interval == 2 and override.sampling.block_shuffle == 16


def test_hypersim_each_non_empty_camera_folder_is_a_sequence(tmp_path: Path, sequences) -> None:
    write_camera(tmp_path / "ai_001_001" / "cam_00", sequences[0])
    write_camera(tmp_path / "ai_001_001" / "cam_01", sequences[1][:2])  # too short for a clip of 3
    (tmp_path / "ai_001_001" / "cam_02").mkdir()  # a camera the preprocess found no data for
    write_camera(tmp_path / "ai_002_001" / "cam_00", sequences[1][:3])
    (tmp_path / "ai_001_001" / "cam_00" / "notes.txt").write_text("not a frame")
    (tmp_path / "metadata_camera_parameters.csv").write_text("not a scene")
    dataset = build_reader("hypersim", root=str(tmp_path), num_views=3)
    assert [name for name, _ in dataset.sequences] == ["ai_001_001/cam_00", "ai_001_001/cam_01", "ai_002_001/cam_00"]
    assert [len(frames) for _, frames in dataset.sequences] == [FRAMES, 2, 3]
    assert len(dataset) == (FRAMES - 3 + 1) + 1


def test_hypersim_is_one_set_of_scenes(tmp_path: Path, sequences) -> None:
    write_hypersim(tmp_path, sequences[:1])
    with pytest.raises(ValueError, match="split 'test'"):
        build_reader("hypersim", root=str(tmp_path), split="test", num_views=2)


def test_hypersim_damaged_files_are_errors_naming_them(tmp_path: Path, sequences) -> None:
    camera = tmp_path / "ai_001_001" / "cam_00"
    write_camera(camera, sequences[0])
    dataset = build_reader("hypersim", root=str(tmp_path), num_views=2)
    rgb, depth, cam = (camera / f"000000_{kind}" for kind in ("rgb.png", "depth.npy", "cam.npz"))

    def fails(error: type[Exception], path: Path) -> None:
        with pytest.raises(error, match=re.escape(str(path))):
            dataset.load_frame(rgb)

    saved_depth = np.load(depth)
    np.save(depth, saved_depth[:, :-1])
    fails(ValueError, depth)
    depth.unlink()
    fails(FileNotFoundError, depth)
    np.save(depth, saved_depth)
    with np.load(cam) as stored:
        saved_cam = dict(stored)
    np.savez(cam, **{**saved_cam, "pose": np.full((4, 4), np.nan)})
    fails(ValueError, cam)
    np.savez(cam, **{**saved_cam, "pose": np.eye(3)})
    fails(ValueError, cam)
    np.savez(cam, intrinsics=saved_cam["intrinsics"])
    fails(ValueError, cam)
    cam.unlink()
    fails(FileNotFoundError, cam)
    np.savez(cam, **saved_cam)
    dataset.load_frame(rgb)  # restored: reads again


def test_hypersim_empty_or_missing_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "ai_001_001" / "cam_00").mkdir(parents=True)  # only an empty camera folder
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        build_reader("hypersim", root=str(tmp_path), num_views=2)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "absent"))):
        build_reader("hypersim", root=str(tmp_path / "absent"), num_views=2)
