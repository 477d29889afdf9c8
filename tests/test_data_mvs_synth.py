"""The ``mvs_synth`` reader on a small dataset written as CUT3R's preprocess_mvs_synth.py writes it:
``ROOT/{scene}/rgb/{b}.jpg``, ``depth/{b}.npy`` (the EXR depth, infinite values set to 0) and ``cam/{b}.npz``
(``intrinsics``; ``pose`` = R_conv @ inverse(extrinsic), a world with x and y swapped)."""

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

# The preprocessing's world change (swaps x and y: a mirror, determinant -1).
SWAP_XY = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)


@pytest.fixture(scope="module")
def sequences() -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    return [render_sequence(seed) for seed in (21, 22)]


def write_mvs_synth(root: Path, sequences) -> None:
    for s, frames in enumerate(sequences):
        scene = root / f"{s:04d}"
        for i, (image, depth, cam_to_world) in enumerate(frames):
            save_image(scene / "rgb" / f"{i:04d}.jpg", image)
            (scene / "depth").mkdir(parents=True, exist_ok=True)
            np.save(scene / "depth" / f"{i:04d}.npy", depth.astype(np.float32))
            extrinsic = np.linalg.inv(cam_to_world)  # the JSON's world-to-camera matrix
            save_npz(scene / "cam" / f"{i:04d}.npz", intrinsics=INTRINSICS, pose=SWAP_XY @ np.linalg.inv(extrinsic))


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as stored:
        return np.asarray(stored.convert("RGB"))


def far_cut(depth: np.ndarray) -> np.ndarray:
    """The reference's rule: drop depth above the frame's 98th percentile of valid depth, and above 1000."""
    threshold = np.percentile(depth[depth > 0], 98)
    return np.where((depth > threshold) | (depth > 1000), 0.0, depth)


def test_mvs_synth_clips_are_consistent_up_to_scale_videos(tmp_path: Path, sequences) -> None:
    write_mvs_synth(tmp_path, sequences)
    dataset = build_reader("mvs_synth", root=str(tmp_path), num_views=3, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 3 + 1)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 3)
        assert not bool(clip["is_metric"]) and bool(clip["is_video"]) and not bool(clip["static"])


def test_mvs_synth_frames_keep_depth_up_to_the_98th_percentile(tmp_path: Path, sequences) -> None:
    write_mvs_synth(tmp_path, sequences[:1])
    dataset = build_reader("mvs_synth", root=str(tmp_path), num_views=FRAMES, aug_crop=0, color_jitter=False)
    for i, (image, depth, cam_to_world) in enumerate(sequences[0]):
        frame = dataset.load_frame((tmp_path / "0000", f"{i:04d}"))
        stored_image = decoded(tmp_path / "0000" / "rgb" / f"{i:04d}.jpg")  # JPEG: lossy, compare with the file
        assert np.abs(stored_image.astype(int) - image).mean() < 20
        assert_frame_equals(frame, stored_image, far_cut(depth), INTRINSICS, SWAP_XY @ cam_to_world)
        dropped = (depth > 0) & (frame.depth == 0)
        assert 0.015 < dropped.sum() / (depth > 0).sum() < 0.025  # about the top 2 % of each frame
        assert frame.depth.max() <= np.percentile(depth[depth > 0], 98) + 1e-6
    # The mirrored world cancels in relative poses: a whole-scene clip gives the unmirrored ground truth.
    clip = dataset.clip(0, SIZE, np.random.default_rng(0))
    assert_relative_poses(clip, [pose for _, _, pose in sequences[0]])


def test_mvs_synth_sky_beyond_1000_is_invalid(tmp_path: Path, sequences) -> None:
    image, depth, pose = sequences[0][0]
    with_sky = depth.copy()
    with_sky[:8] = 5000.0  # a sky band larger than 2 % of the frame: the percentile alone would keep it
    write_mvs_synth(tmp_path, [[(image, with_sky, pose)] * 2])
    loaded = build_reader("mvs_synth", root=str(tmp_path), num_views=2).load_frame((tmp_path / "0000", "0000")).depth
    assert (loaded[:8] == 0).all()
    np.testing.assert_allclose(loaded[8:], depth[8:], rtol=0, atol=1e-6)


def test_mvs_synth_sampling_follows_the_reference(tmp_path: Path, sequences) -> None:
    write_mvs_synth(tmp_path, sequences)
    dataset = build_reader("mvs_synth", root=str(tmp_path), num_views=3)
    assert dataset.sampling == ClipSampling(min_interval=1, max_interval=4, video_prob=1.0, fixed_interval_prob=1.0)


def test_mvs_synth_reads_only_jpeg_frames_and_skips_short_scenes(tmp_path: Path, sequences) -> None:
    write_mvs_synth(tmp_path, [sequences[0], sequences[1][:2]])
    save_image(tmp_path / "0000" / "rgb" / "extra.png", sequences[0][0][0])  # not a frame: the frames are .jpg
    dataset = build_reader("mvs_synth", root=str(tmp_path), num_views=3)
    assert len(dataset) == FRAMES - 3 + 1


def test_mvs_synth_damaged_files_are_errors_naming_them(tmp_path: Path, sequences) -> None:
    write_mvs_synth(tmp_path / "mvs", sequences[:1])
    assert_damaged_frames_name_their_file(
        lambda: build_reader("mvs_synth", root=str(tmp_path / "mvs"), num_views=2),
        tmp_path / "mvs" / "0000",
        "0000",
        ".jpg",
    )
    assert_empty_folder_is_an_error(lambda root: build_reader("mvs_synth", root=str(root), num_views=2), tmp_path / "e")
