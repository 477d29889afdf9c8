"""The ``spring`` reader on a small dataset written as CUT3R's preprocess_spring.py writes it:
``ROOT/{scene}/rgb/{i:04d}.png``, ``depth/{i:04d}.npy`` (metres, 0 where the disparity was 0),
``cam/{i:04d}.npz`` (``intrinsics``, ``pose`` = inverse of the stored extrinsics, camera-to-world)."""

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
    save_npz,
)
from tests.scene_folder_cases import assert_damaged_frames_name_their_file, assert_empty_folder_is_an_error


@pytest.fixture(scope="module")
def sequences() -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    return [render_sequence(seed) for seed in (11, 12)]


def write_spring(root: Path, sequences, scenes=("0001", "0002")) -> None:
    for scene, frames in zip(scenes, sequences, strict=False):
        for i, (image, depth, cam_to_world) in enumerate(frames):
            save_image(root / scene / "rgb" / f"{i:04d}.png", image)
            (root / scene / "depth").mkdir(parents=True, exist_ok=True)
            np.save(root / scene / "depth" / f"{i:04d}.npy", depth.astype(np.float32))
            extrinsics = np.linalg.inv(cam_to_world)  # Spring's extrinsics.txt: world-to-camera
            save_npz(root / scene / "cam" / f"{i:04d}.npz", intrinsics=INTRINSICS, pose=np.linalg.inv(extrinsics))


def test_spring_clips_are_consistent_metric_dynamic_videos(tmp_path: Path, sequences) -> None:
    write_spring(tmp_path, sequences)
    dataset = build_reader("spring", root=str(tmp_path), num_views=4, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 4 + 1)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 4)
        assert bool(clip["is_metric"]) and bool(clip["is_video"]) and not bool(clip["static"])
        assert clip["dataset"] == "spring"


def test_spring_frames_equal_the_ground_truth(tmp_path: Path, sequences) -> None:
    write_spring(tmp_path, sequences)
    dataset = build_reader("spring", root=str(tmp_path), num_views=FRAMES, aug_crop=0, color_jitter=False)
    for i, (image, depth, cam_to_world) in enumerate(sequences[0]):
        assert_frame_equals(dataset.load_frame((tmp_path / "0001", f"{i:04d}")), image, depth, INTRINSICS, cam_to_world)
    # A whole-scene clip has stride 1: the poses relative to the first frame, in the stored order.
    clip = dataset.clip(0, SIZE, np.random.default_rng(0))
    assert_relative_poses(clip, [pose for _, _, pose in sequences[0]])


def test_spring_non_finite_depth_is_invalid(tmp_path: Path, sequences) -> None:
    image, depth, pose = sequences[0][0]
    broken = depth.copy()
    broken[:5] = np.inf
    broken[5:10] = np.nan
    write_spring(tmp_path, [[(image, broken, pose)] * 2])
    dataset = build_reader("spring", root=str(tmp_path), num_views=2)
    loaded = dataset.load_frame((tmp_path / "0001", "0000")).depth
    assert (loaded[:10] == 0).all()
    np.testing.assert_allclose(loaded[10:], depth[10:], rtol=0, atol=1e-6)


def test_spring_sampling_follows_the_reference(tmp_path: Path, sequences) -> None:
    write_spring(tmp_path, sequences)
    dataset = build_reader("spring", root=str(tmp_path), num_views=3)
    assert dataset.sampling == ClipSampling(min_interval=1, max_interval=16, video_prob=1.0, fixed_interval_prob=1.0)
    override = build_reader("spring", root=str(tmp_path), num_views=3, sampling={"max_interval": 2})
    assert override.sampling.max_interval == 2 and override.sampling.video_prob == 1.0


def test_spring_skips_short_scenes_and_stray_files(tmp_path: Path, sequences) -> None:
    write_spring(tmp_path, [sequences[0], sequences[1][:2]])
    (tmp_path / "README.txt").write_text("not a scene")
    (tmp_path / ".cache").mkdir()
    dataset = build_reader("spring", root=str(tmp_path), num_views=3)
    assert len(dataset) == FRAMES - 3 + 1  # scene 0002 (2 frames) is left out


def test_spring_has_only_a_training_split(tmp_path: Path, sequences) -> None:
    write_spring(tmp_path, sequences[:1])
    with pytest.raises(ValueError, match="split 'test'"):
        build_reader("spring", root=str(tmp_path), split="test", num_views=2)


def test_spring_damaged_files_are_errors_naming_them(tmp_path: Path, sequences) -> None:
    write_spring(tmp_path / "spring", sequences[:1])
    assert_damaged_frames_name_their_file(
        lambda: build_reader("spring", root=str(tmp_path / "spring"), num_views=2),
        tmp_path / "spring" / "0001",
        "0000",
        ".png",
    )
    assert_empty_folder_is_an_error(lambda root: build_reader("spring", root=str(root), num_views=2), tmp_path / "e")
