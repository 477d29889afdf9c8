"""The ``pointodyssey`` reader on a small dataset written as CUT3R's preprocess_point_odyssey.py writes it:
``ROOT/{train|test|val}/{sequence}/rgb/{i:05d}.jpg`` (copied), ``depth/{i:05d}.npy`` (the 16-bit PNG as
v / 65535 * 1000 metres) and ``cam/{i:05d}.npz`` (``intrinsics``, ``pose`` = inverse of the extrinsics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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

DEPTH_STEP = 1000.0 / 65535.0  # metres per 16-bit level of PointOdyssey's depth PNGs


@pytest.fixture(scope="module")
def sequences() -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    return [render_sequence(seed) for seed in (31, 32)]


def write_pointodyssey(root: Path, sequences, scenes=("kg", "footlab_3rd"), split: str = "train") -> None:
    for scene, frames in zip(scenes, sequences, strict=False):
        folder = root / split / scene
        for i, (image, depth, cam_to_world) in enumerate(frames):
            save_image(folder / "rgb" / f"{i:05d}.jpg", image)
            levels = np.round(depth / DEPTH_STEP).astype(np.uint16)  # the original depth PNG
            (folder / "depth").mkdir(parents=True, exist_ok=True)
            np.save(folder / "depth" / f"{i:05d}.npy", levels.astype(np.float32) / 65535.0 * 1000.0)
            extrinsics = np.linalg.inv(cam_to_world).astype(np.float32)  # anno.npz stores float32 extrinsics
            save_npz(
                folder / "cam" / f"{i:05d}.npz",
                intrinsics=INTRINSICS.astype(np.float32),
                pose=np.linalg.inv(extrinsics),
            )


def test_pointodyssey_clips_are_consistent_metric_dynamic_videos(tmp_path: Path, sequences) -> None:
    write_pointodyssey(tmp_path, sequences)
    dataset = build_reader("pointodyssey", root=str(tmp_path), split="train", num_views=4, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 4 + 1)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 4)
        assert bool(clip["is_metric"]) and bool(clip["is_video"]) and not bool(clip["static"])


def test_pointodyssey_frames_equal_the_ground_truth(tmp_path: Path, sequences) -> None:
    write_pointodyssey(tmp_path, sequences[:1])
    dataset = build_reader("pointodyssey", root=str(tmp_path), num_views=FRAMES, aug_crop=0, color_jitter=False)
    folder = tmp_path / "train" / "kg"
    for i, (_, depth, cam_to_world) in enumerate(sequences[0]):
        with Image.open(folder / "rgb" / f"{i:05d}.jpg") as stored:  # JPEG: lossy, compare with the file
            stored_image = np.asarray(stored.convert("RGB"))
        frame = dataset.load_frame((folder, f"{i:05d}"))
        assert_frame_equals(frame, stored_image, depth, INTRINSICS, cam_to_world, depth_atol=DEPTH_STEP / 2 + 1e-5)
    clip = dataset.clip(0, SIZE, np.random.default_rng(0))
    assert_relative_poses(clip, [pose for _, _, pose in sequences[0]])


def test_pointodyssey_depth_beyond_1000_m_is_invalid(tmp_path: Path, sequences) -> None:
    image, depth, pose = sequences[0][0]
    far = depth.copy()
    far[:4] = 1200.0
    far[4:6] = np.nan
    folder = tmp_path / "train" / "kg"
    write_pointodyssey(tmp_path, [[(image, depth, pose)] * 2])
    np.save(folder / "depth" / "00000.npy", far.astype(np.float32))
    loaded = build_reader("pointodyssey", root=str(tmp_path), num_views=2).load_frame((folder, "00000")).depth
    assert (loaded[:6] == 0).all()
    np.testing.assert_allclose(loaded[6:], depth[6:], rtol=0, atol=1e-6)


def test_pointodyssey_reads_only_the_reference_sequences(tmp_path: Path, sequences) -> None:
    # cab_h_bench_* are commented out of the reference's list; unknown sequences are not read either.
    write_pointodyssey(tmp_path, [sequences[0], sequences[1], sequences[0]], scenes=("kg", "cab_h_bench_3rd", "x"))
    assert len(build_reader("pointodyssey", root=str(tmp_path), num_views=3)) == FRAMES - 3 + 1


def test_pointodyssey_splits_are_folders(tmp_path: Path, sequences) -> None:
    write_pointodyssey(tmp_path, sequences[:1], split="val")
    assert len(build_reader("pointodyssey", root=str(tmp_path), split="val", num_views=3)) == FRAMES - 3 + 1
    with pytest.raises(FileNotFoundError, match="train"):
        build_reader("pointodyssey", root=str(tmp_path), split="train", num_views=3)
    with pytest.raises(ValueError, match="split must be one of"):
        build_reader("pointodyssey", root=str(tmp_path), split="training", num_views=3)


def test_pointodyssey_sampling_follows_the_reference(tmp_path: Path, sequences) -> None:
    write_pointodyssey(tmp_path, sequences)
    dataset = build_reader("pointodyssey", root=str(tmp_path), num_views=3)
    assert dataset.sampling == ClipSampling(min_interval=1, max_interval=4, video_prob=1.0, fixed_interval_prob=1.0)


def test_pointodyssey_damaged_files_are_errors_naming_them(tmp_path: Path, sequences) -> None:
    write_pointodyssey(tmp_path / "po", sequences[:1])
    assert_damaged_frames_name_their_file(
        lambda: build_reader("pointodyssey", root=str(tmp_path / "po"), num_views=2),
        tmp_path / "po" / "train" / "kg",
        "00000",
        ".jpg",
    )
    (tmp_path / "e" / "train").mkdir(parents=True)
    assert_empty_folder_is_an_error(
        lambda root: build_reader("pointodyssey", root=str(root), num_views=2), tmp_path / "e"
    )
