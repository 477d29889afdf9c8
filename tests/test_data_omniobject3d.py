"""The ``omniobject3d`` reader on a small dataset written as CUT3R's preprocess_omniobject3d.py writes it:
``ROOT/{object}/rgb/r_{n}.png``, ``depth/r_{n}.npy`` (the EXR's float32 depth) and ``cam/r_{n}.npz``
(``intrinsics``, ``pose`` float32 camera-to-world), with ``ROOT/scale.json`` ({object: scale}); the stored
depth and camera positions are millimetres times the object's scale (the reference divides by 1000 x scale)."""

from __future__ import annotations

import json
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
from tests.scene_folder_cases import assert_damaged_frames_name_their_file, assert_empty_folder_is_an_error

SCALES = {"antique_001": 0.37, "apple_002": 1.6}
# Frame numbers with two digits among them: in text order r_10 would come before r_2.
NUMBERS = [0, 2, 4, 6, 8, 10]


@pytest.fixture(scope="module")
def sequences() -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    return [render_sequence(seed) for seed in (41, 42)]


def write_omniobject3d(root: Path, sequences, scales=SCALES) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "scale.json").write_text(json.dumps(scales))
    for (scene, scale), frames in zip(scales.items(), sequences, strict=False):
        for n, (image, depth, cam_to_world) in zip(NUMBERS, frames, strict=False):
            name = f"r_{n}"
            save_image(root / scene / "rgb" / f"{name}.png", image)
            (root / scene / "depth").mkdir(parents=True, exist_ok=True)
            np.save(root / scene / "depth" / f"{name}.npy", (depth * scale * 1000.0).astype(np.float32))
            pose = cam_to_world.copy()
            pose[:3, 3] *= scale * 1000.0
            save_npz(
                root / scene / "cam" / f"{name}.npz",
                intrinsics=INTRINSICS.astype(np.float32),
                pose=pose.astype(np.float32),
            )


def test_omniobject3d_clips_are_consistent_static_collections(tmp_path: Path, sequences) -> None:
    write_omniobject3d(tmp_path, sequences)
    dataset = build_reader("omniobject3d", root=str(tmp_path), num_views=3, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 3 + 1)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 3)
        assert not bool(clip["is_metric"]) and not bool(clip["is_video"]) and bool(clip["static"])


def test_omniobject3d_frames_are_divided_by_the_object_scale(tmp_path: Path, sequences) -> None:
    write_omniobject3d(tmp_path, sequences)
    assert np.load(tmp_path / "antique_001" / "depth" / "r_0.npy").max() > 1000  # a global 1000 cut would break it
    dataset = build_reader("omniobject3d", root=str(tmp_path), num_views=3, aug_crop=0, color_jitter=False)
    for scene, frames in zip(SCALES, sequences, strict=True):
        for n, (image, depth, cam_to_world) in zip(NUMBERS, frames, strict=True):
            frame = dataset.load_frame((tmp_path / scene, f"r_{n}"))
            assert_frame_equals(frame, image, depth, INTRINSICS, cam_to_world)


def test_omniobject3d_frames_are_in_numeric_order(tmp_path: Path, sequences) -> None:
    write_omniobject3d(tmp_path, sequences[:1], {"antique_001": 0.37})
    # A whole-object clip read as a video (stride 1) follows the frame numbers: r_0, r_2, ..., r_10.
    video = {"video_prob": 1.0, "fixed_interval_prob": 1.0}
    dataset = build_reader("omniobject3d", root=str(tmp_path), num_views=FRAMES, sampling=video, aug_crop=0)
    clip = dataset.clip(0, SIZE, np.random.default_rng(0))
    assert_relative_poses(clip, [pose for _, _, pose in sequences[0]])


def test_omniobject3d_sampling_follows_the_reference(tmp_path: Path, sequences) -> None:
    write_omniobject3d(tmp_path, sequences)
    dataset = build_reader("omniobject3d", root=str(tmp_path), num_views=3)
    assert dataset.sampling == ClipSampling(min_interval=1, max_interval=100, video_prob=0.0)
    assert not any(bool(c["is_video"]) for c in read_clips(dataset, 6))


def test_omniobject3d_needs_a_scale_for_every_object(tmp_path: Path, sequences) -> None:
    write_omniobject3d(tmp_path, sequences)
    (tmp_path / "scale.json").write_text(json.dumps({"antique_001": 0.37}))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "scale.json")) + ".*apple_002"):
        build_reader("omniobject3d", root=str(tmp_path), num_views=3)
    (tmp_path / "scale.json").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "scale.json"))):
        build_reader("omniobject3d", root=str(tmp_path), num_views=3)


def test_omniobject3d_ignores_hidden_folders_and_skips_short_objects(tmp_path: Path, sequences) -> None:
    write_omniobject3d(tmp_path, [sequences[0], sequences[1][:2]])
    (tmp_path / ".ipynb_checkpoints").mkdir()
    assert len(build_reader("omniobject3d", root=str(tmp_path), num_views=3)) == FRAMES - 3 + 1


def test_omniobject3d_damaged_files_are_errors_naming_them(tmp_path: Path, sequences) -> None:
    write_omniobject3d(tmp_path / "omni", sequences[:1], {"antique_001": 0.37})
    assert_damaged_frames_name_their_file(
        lambda: build_reader("omniobject3d", root=str(tmp_path / "omni"), num_views=2),
        tmp_path / "omni" / "antique_001",
        "r_0",
        ".png",
    )
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "scale.json").write_text("{}")
    assert_empty_folder_is_an_error(
        lambda root: build_reader("omniobject3d", root=str(root), num_views=2), tmp_path / "e"
    )
