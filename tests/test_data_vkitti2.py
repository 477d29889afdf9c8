"""Virtual KITTI 2 reader: scenes written in CUT3R's processed layout (depth as uint16 centimetres)."""

from __future__ import annotations

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
    save_uint16,
)
from tests.view_file_helpers import as_stored_jpeg

SKY_ROWS = 6  # the top rows are written as sky (the renderer's far value)
CENTIMETRE = 0.005 + 1e-6  # depth quantisation: half a centimetre


@pytest.fixture(scope="module")
def sequences() -> list:
    return [render_sequence(seed) for seed in (31, 32)]


def write_camera(folder: Path, frames) -> None:
    for f, (image, depth, pose) in enumerate(frames):
        centimetres = np.round(depth * 100)
        centimetres[:SKY_ROWS] = 65535
        save_image(folder / f"{f:05d}_rgb.jpg", image)
        save_uint16(folder / f"{f:05d}_depth.png", centimetres)
        np.savez(folder / f"{f:05d}_cam.npz", camera_intrinsics=INTRINSICS, camera_pose=pose)


def write_vkitti2(root: Path, sequences, scenes=("Scene01", "Scene02"), variations=("clone", "fog")) -> None:
    """Both cameras of every (scene, variation); camera 1 sees the second rendered path."""
    for scene in scenes:
        for variation in variations:
            for camera, frames in zip(("Camera_0", "Camera_1"), sequences, strict=True):
                write_camera(root / scene / variation / camera, frames)


def test_vkitti2_clips_are_reprojection_consistent_metric_and_dynamic(tmp_path: Path, sequences) -> None:
    write_vkitti2(tmp_path, sequences, scenes=("Scene01",), variations=("clone",))
    dataset = build_reader("vkitti2", root=str(tmp_path), num_views=3, **READ_OPTIONS)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 3)
        assert bool(clip["is_metric"]) and not bool(clip["static"]) and bool(clip["is_video"])
        assert clip["dataset"] == "vkitti2"


def test_vkitti2_frame_is_metric_depth_with_negative_sky(tmp_path: Path, sequences) -> None:
    write_vkitti2(tmp_path, sequences, scenes=("Scene01",), variations=("clone",))
    dataset = build_reader("vkitti2", root=str(tmp_path), num_views=2)
    image, depth, pose = sequences[1][2]
    frame = dataset.load_frame((tmp_path / "Scene01" / "clone" / "Camera_1", "00002"))
    expected = depth.copy()
    expected[:SKY_ROWS] = -1.0
    assert_frame_equals(frame, as_stored_jpeg(image), expected, INTRINSICS, pose, depth_atol=CENTIMETRE)
    np.testing.assert_array_equal(frame.depth[:SKY_ROWS], -1.0)


def test_vkitti2_clip_poses_are_relative_to_the_first_view(tmp_path: Path, sequences) -> None:
    write_vkitti2(tmp_path, sequences, scenes=("Scene01",), variations=("clone",))
    dataset = build_reader("vkitti2", root=str(tmp_path), num_views=3, aug_crop=0)
    index = len(dataset) - 1  # a clip of Camera_1
    handles, _ = dataset.clip_frames(index, np.random.default_rng(2))
    clip = dataset.clip(index, SIZE, np.random.default_rng(2))
    assert {folder.name for folder, _ in handles} == {"Camera_1"}
    assert_relative_poses(clip, [sequences[1][int(frame)][2] for _, frame in handles])
    assert (clip["depth"][0, 0] < 0).all() and (
        clip["depth"][0, -1] > 0
    ).all()  # sky survives the crop as negative depth


def test_vkitti2_has_one_sequence_per_scene_variation_and_camera(tmp_path: Path, sequences) -> None:
    write_vkitti2(tmp_path, sequences)
    dataset = build_reader("vkitti2", root=str(tmp_path), num_views=2)
    assert [name for name, _ in dataset.sequences] == [
        f"{scene}/{variation}/{camera}"
        for scene in ("Scene01", "Scene02")
        for variation in ("clone", "fog")
        for camera in ("Camera_0", "Camera_1")
    ]
    assert len(dataset) == 8 * (FRAMES - 1)


def test_vkitti2_splits_hold_out_the_last_scene(tmp_path: Path, sequences) -> None:
    write_vkitti2(tmp_path, sequences, scenes=("Scene01", "Scene02", "Scene06"), variations=("clone",))
    scenes = {}
    for split in ("all", None, "train", "test"):
        dataset = build_reader("vkitti2", root=str(tmp_path), split=split, num_views=2)
        scenes[split] = sorted({name.split("/")[0] for name, _ in dataset.sequences})
    assert scenes["all"] == scenes[None] == ["Scene01", "Scene02", "Scene06"]
    assert scenes["train"] == ["Scene01", "Scene02"] and scenes["test"] == ["Scene06"]


def test_vkitti2_clips_are_videos_with_strides_up_to_5(tmp_path: Path) -> None:
    for camera in ("Camera_0", "Camera_1"):
        for frame in range(30):
            save_image(tmp_path / "Scene01" / "clone" / camera / f"{frame:05d}_rgb.jpg", np.zeros((4, 4, 3), np.uint8))
    dataset = build_reader("vkitti2", root=str(tmp_path), num_views=3)
    assert dataset.sampling == ClipSampling(max_interval=5, video_prob=1.0, fixed_interval_prob=0.9)
    strides = []
    for seed in range(300):
        handles, is_video = dataset.clip_frames(0, np.random.default_rng(seed))
        frames = [int(frame) for _, frame in handles]
        assert is_video and frames == sorted(frames) and len(set(frames)) == 3
        strides += np.diff(frames).tolist()
    assert min(strides) == 1 and max(strides) == 5


def test_vkitti2_variation_without_a_camera_folder_names_it(tmp_path: Path, sequences) -> None:
    write_camera(tmp_path / "Scene01" / "clone" / "Camera_0", sequences[0])
    with pytest.raises(FileNotFoundError, match=r"camera folder not found: .*Scene01/clone/Camera_1"):
        build_reader("vkitti2", root=str(tmp_path), num_views=2)


def test_vkitti2_empty_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"no Virtual KITTI 2 scene for split 'all' under {tmp_path}"):
        build_reader("vkitti2", root=str(tmp_path), num_views=2)


def test_vkitti2_unknown_split_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split must be all, train or test, got 'val'"):
        build_reader("vkitti2", root=str(tmp_path), split="val", num_views=2)


def test_vkitti2_malformed_views_name_their_files(tmp_path: Path, sequences) -> None:
    folder = tmp_path / "Scene01" / "clone" / "Camera_0"
    write_vkitti2(tmp_path, sequences, scenes=("Scene01",), variations=("clone",))
    dataset = build_reader("vkitti2", root=str(tmp_path), num_views=2)
    (folder / "00001_depth.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"depth map not found: .*00001_depth\.png"):
        dataset.load_frame((folder, "00001"))
    pose = sequences[0][2][2].copy()
    pose[1, 1] = np.nan
    np.savez(folder / "00002_cam.npz", camera_intrinsics=INTRINSICS, camera_pose=pose)
    with pytest.raises(ValueError, match=r"00002_cam\.npz: camera pose must be a finite 4x4"):
        dataset.load_frame((folder, "00002"))
    np.savez(folder / "00003_cam.npz", camera_intrinsics=INTRINSICS, camera_pose=np.eye(3))
    with pytest.raises(
        ValueError, match=r"00003_cam\.npz: camera pose must be a finite 4x4 matrix, got shape \(3, 3\)"
    ):
        dataset.load_frame((folder, "00003"))
    save_uint16(folder / "00004_depth.png", np.ones((20, 30)))
    with pytest.raises(ValueError, match=r"00004_cam\.npz: depth map \(20, 30\) does not match the image"):
        dataset.load_frame((folder, "00004"))
