"""Waymo reader: segments written as CUT3R's preprocess_waymo.py leaves them, plus its invalid_files.h5."""

from __future__ import annotations

import sys
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
)
from tests.view_file_helpers import as_stored_jpeg, save_exr

h5py = pytest.importorskip("h5py")

SEGMENT = "segment-1005081002024129653_5313_150_5333_150_with_camera_labels.tfrecord"


@pytest.fixture(scope="module")
def sequences() -> list:
    return [render_sequence(seed) for seed in (21, 22, 23)]


def write_view(segment: Path, frame: int, camera: int, image, depth, pose) -> None:
    stem = segment / f"{frame:05d}_{camera}"
    save_image(stem.with_suffix(".jpg"), image)
    save_exr(stem.with_suffix(".exr"), depth)
    np.savez(stem.with_suffix(".npz"), intrinsics=INTRINSICS, cam2world=pose, distortion=np.zeros(5))


def write_invalid(root: Path, invalid: dict[str, list[str]]) -> None:
    """``invalid_files.h5``: per segment, byte strings ``"{camera}_{frame}"`` of the views to leave out."""
    with h5py.File(root / "invalid_files.h5", "w") as h5:
        for segment, pairs in invalid.items():
            h5.create_group(segment).create_dataset("invalid_pairs", data=np.array(pairs, dtype="S"))


def write_waymo(root: Path, sequences, invalid: dict[str, list[str]] | None = None) -> None:
    """Cameras 1, 4 and 5 (rear) of one segment, a different rendered path each."""
    for camera, frames in zip((1, 4, 5), sequences, strict=True):
        for f, (image, depth, pose) in enumerate(frames):
            write_view(root / SEGMENT, f, camera, image, depth, pose)
    write_invalid(root, invalid or {})


def test_waymo_clips_are_reprojection_consistent_metric_and_dynamic(tmp_path: Path, sequences) -> None:
    write_waymo(tmp_path, sequences)
    dataset = build_reader("waymo", root=str(tmp_path), num_views=3, **READ_OPTIONS)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 3)
        assert bool(clip["is_metric"]) and not bool(clip["static"]) and clip["dataset"] == "waymo"


def test_waymo_reads_one_sequence_per_camera_without_the_rear_camera(tmp_path: Path, sequences) -> None:
    write_waymo(tmp_path, sequences)
    dataset = build_reader("waymo", root=str(tmp_path), split="train", num_views=2)
    assert [name for name, _ in dataset.sequences] == [f"{SEGMENT}/1", f"{SEGMENT}/4"]
    assert len(dataset) == 2 * (FRAMES - 1)


def test_waymo_leaves_out_the_views_of_invalid_files(tmp_path: Path, sequences) -> None:
    write_waymo(tmp_path, sequences, invalid={SEGMENT: ["1_00002", "4_00000", "4_00005"], "other-segment": ["1_1"]})
    dataset = build_reader("waymo", root=str(tmp_path), num_views=2)
    frames = {name: [frame for _, frame, _ in handles] for name, handles in dataset.sequences}
    assert frames[f"{SEGMENT}/1"] == ["00000", "00001", "00003", "00004", "00005"]
    assert frames[f"{SEGMENT}/4"] == ["00001", "00002", "00003", "00004"]


def test_waymo_frames_equal_the_ground_truth(tmp_path: Path, sequences) -> None:
    write_waymo(tmp_path, sequences)
    dataset = build_reader("waymo", root=str(tmp_path), num_views=2)
    for camera, frames in zip(("1", "4"), sequences, strict=False):
        for f in (0, 4):
            image, depth, pose = frames[f]
            frame = dataset.load_frame((tmp_path / SEGMENT, f"{f:05d}", camera))
            assert_frame_equals(frame, as_stored_jpeg(image), depth, INTRINSICS, pose)


def test_waymo_clip_poses_are_relative_to_the_first_view(tmp_path: Path, sequences) -> None:
    write_waymo(tmp_path, sequences)
    dataset = build_reader("waymo", root=str(tmp_path), num_views=3, aug_crop=0)
    index = len(dataset) - 1  # a clip of camera 4
    handles, _ = dataset.clip_frames(index, np.random.default_rng(3))
    clip = dataset.clip(index, SIZE, np.random.default_rng(3))
    assert {camera for _, _, camera in handles} == {"4"}
    assert_relative_poses(clip, [sequences[1][int(frame)][2] for _, frame, _ in handles])


def test_waymo_sampling_defaults_with_half_the_stride_for_camera_4(tmp_path: Path) -> None:
    for camera in (1, 4):
        for frame in range(30):
            save_image(tmp_path / SEGMENT / f"{frame:05d}_{camera}.jpg", np.zeros((4, 4, 3), dtype=np.uint8))
    write_invalid(tmp_path, {})
    dataset = build_reader("waymo", root=str(tmp_path), num_views=2)
    assert dataset.sampling == ClipSampling(max_interval=8, video_prob=0.9, fixed_interval_prob=0.9, block_shuffle=16)
    strides: dict[str, list[int]] = {"1": [], "4": []}
    videos = 0
    for seed in range(600):
        index = seed % 2 * 29  # the first start of camera 1, then of camera 4
        handles, is_video = dataset.clip_frames(index, np.random.default_rng(seed))
        strides[handles[0][2]].append(abs(int(handles[1][1]) - int(handles[0][1])))
        videos += is_video
    assert max(strides["1"]) == 8 and max(strides["4"]) == 4 and min(strides["4"]) == 1
    assert 0.86 < videos / 600 < 0.94


def test_waymo_without_invalid_files_names_the_missing_file(tmp_path: Path, sequences) -> None:
    write_waymo(tmp_path, sequences)
    (tmp_path / "invalid_files.h5").unlink()
    with pytest.raises(FileNotFoundError, match=r"invalid-view list not found: .*invalid_files\.h5"):
        build_reader("waymo", root=str(tmp_path), num_views=2)


def test_waymo_folder_without_segments_is_an_error_naming_it(tmp_path: Path) -> None:
    write_invalid(tmp_path, {})
    with pytest.raises(ValueError, match=f"no Waymo segment with images under {tmp_path}"):
        build_reader("waymo", root=str(tmp_path), num_views=2)


def test_waymo_has_no_test_split(tmp_path: Path, sequences) -> None:
    write_waymo(tmp_path, sequences)
    with pytest.raises(ValueError, match="Waymo has no 'test' split"):
        build_reader("waymo", root=str(tmp_path), split="test", num_views=2)


def test_waymo_non_finite_pose_names_the_camera_file(tmp_path: Path, sequences) -> None:
    write_waymo(tmp_path, sequences)
    image, depth, pose = sequences[0][1]
    bad = pose.copy()
    bad[2, 2] = np.inf
    write_view(tmp_path / SEGMENT, 1, 1, image, depth, bad)
    dataset = build_reader("waymo", root=str(tmp_path), num_views=2)
    with pytest.raises(ValueError, match=r"00001_1\.npz: camera pose must be a finite 4x4"):
        dataset.load_frame((tmp_path / SEGMENT, "00001", "1"))


def test_waymo_camera_file_without_cam2world_names_the_file(tmp_path: Path, sequences) -> None:
    write_waymo(tmp_path, sequences)
    np.savez(tmp_path / SEGMENT / "00002_4.npz", intrinsics=INTRINSICS, pose=np.eye(4))
    dataset = build_reader("waymo", root=str(tmp_path), num_views=2)
    with pytest.raises(ValueError, match=r"00002_4\.npz lacks cam2world"):
        dataset.load_frame((tmp_path / SEGMENT, "00002", "4"))


def test_waymo_missing_or_corrupt_depth_names_the_file(tmp_path: Path, sequences) -> None:
    write_waymo(tmp_path, sequences)
    dataset = build_reader("waymo", root=str(tmp_path), num_views=2)
    (tmp_path / SEGMENT / "00003_1.exr").unlink()
    with pytest.raises(FileNotFoundError, match=r"EXR depth map not found: .*00003_1\.exr"):
        dataset.load_frame((tmp_path / SEGMENT, "00003", "1"))
    (tmp_path / SEGMENT / "00003_1.exr").write_bytes(b"not an exr")
    with pytest.raises(ValueError, match=r"unreadable EXR depth map .*00003_1\.exr"):
        dataset.load_frame((tmp_path / SEGMENT, "00003", "1"))


def test_waymo_without_h5py_says_what_to_install(tmp_path: Path, sequences, monkeypatch) -> None:
    write_waymo(tmp_path, sequences)
    monkeypatch.setitem(sys.modules, "h5py", None)  # an import of it now fails
    with pytest.raises(
        ImportError, match=r"reading Waymo's invalid_files\.h5 needs h5py: pip install 'streamvggt\[train\]'"
    ):
        build_reader("waymo", root=str(tmp_path), num_views=2)
