"""The ``scannetpp`` reader on small datasets written as CUT3R's preprocess_scannetpp.py and
generate_set_scannetpp.py write them: ``ROOT/all_metadata.npz`` (``scenes``); per scene
``new_scene_metadata.npz`` (``images``: sorted basenames, DSLR ``DSC*`` before iPhone ``frame_*``; ``intrinsics``
[N, 3, 3] in COLMAP's convention, principal point +0.5 px; ``trajectories`` [N, 4, 4] camera-to-world;
``pairs``; ``image_collection`` {frame: [(frame, score)]}; ``video_collection``), ``images/{name}.jpg`` and
``depth/{name}.png`` (uint16 millimetres)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from streamvggt.train.data.mix import build_reader
from streamvggt.train.data.sampling import ClipSampling
from tests.layout_helpers import (
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
    save_uint16,
)
from tests.stored_values import MM_ROUNDING, as_stored_jpeg

COLMAP_INTRINSICS = INTRINSICS + np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
# Rendered frames 0, 2, 4 are DSLR photos and 1, 3, 5 iPhone frames of one scene; sorted names list the DSLR first.
NAMES = ["DSC00101", "DSC00103", "DSC00105", "frame_000010", "frame_000030", "frame_000050"]
RENDERED = [0, 2, 4, 1, 3, 5]  # rendered frame of each name


@pytest.fixture(scope="module")
def sequences() -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    return [render_sequence(seed) for seed in (31, 32)]


def object_array(value: object) -> np.ndarray:
    holder = np.empty((), dtype=object)
    holder[()] = value
    return holder


def save_scene_metadata(folder: Path, names: list[str], poses: np.ndarray, collection: dict, **overrides) -> None:
    pairs = [(ref, other, score) for ref, members in collection.items() for other, score in members]
    arrays = {
        "images": np.array(names),
        "trajectories": poses,
        "intrinsics": np.stack([COLMAP_INTRINSICS] * len(names)),
        "pairs": np.array(pairs, dtype=np.float64).reshape(-1, 3),
        "image_collection": object_array(collection),
        "video_collection": object_array({i: [] for i in range(len(names))}),
    }
    save_npz(folder / "new_scene_metadata.npz", **{**arrays, **overrides})


def write_scene(folder: Path, frames) -> None:
    """One scene of six rendered frames; every frame is co-visible with every other (score falling with the
    distance in the rendered path)."""
    for name, r in zip(NAMES, RENDERED, strict=True):
        image, depth, _ = frames[r]
        save_image(folder / "images" / f"{name}.jpg", image)
        save_uint16(folder / "depth" / f"{name}.png", depth * 1000)
    collection = {
        i: [(j, 1.0 - 0.1 * abs(RENDERED[i] - RENDERED[j])) for j in range(len(NAMES)) if j != i]
        for i in range(len(NAMES))
    }
    save_scene_metadata(folder, NAMES, np.stack([frames[r][2] for r in RENDERED]), collection)


def write_scannetpp(root: Path, sequences, scenes=("0a5c013435", "1ada7a0617")) -> None:
    for scene, frames in zip(scenes, sequences, strict=False):
        write_scene(root / scene, frames)
    save_npz(root / "all_metadata.npz", scenes=np.array(scenes[: len(sequences)]))


def test_scannetpp_clips_are_consistent_metric_static_clips(tmp_path: Path, sequences) -> None:
    write_scannetpp(tmp_path, sequences)
    dataset = build_reader("scannetpp", root=str(tmp_path), num_views=3, **READ_OPTIONS)
    assert len(dataset) == 2 * len(NAMES)  # one clip per co-visible group: every frame heads one
    for clip in read_clips(dataset, 6):
        check_clip(clip, 3)
        assert bool(clip["is_metric"]) and bool(clip["static"]) and clip["dataset"] == "scannetpp"


def test_scannetpp_frames_equal_the_ground_truth_in_opencv_intrinsics(tmp_path: Path, sequences) -> None:
    write_scannetpp(tmp_path, sequences)
    dataset = build_reader("scannetpp", root=str(tmp_path), num_views=3, aug_crop=0, color_jitter=False)
    for handle, r in enumerate(RENDERED):
        image, depth, cam_to_world = sequences[0][r]
        frame = dataset.load_frame(handle)
        assert_frame_equals(frame, as_stored_jpeg(image), depth, INTRINSICS, cam_to_world, MM_ROUNDING)
    for seed in range(4):
        handles, _ = dataset.clip_frames(seed, np.random.default_rng(seed))
        clip = dataset.clip(seed, SIZE, np.random.default_rng(seed))
        scene = sequences[0] if handles[0] < len(NAMES) else sequences[1]
        assert_relative_poses(clip, [scene[RENDERED[h % len(NAMES)]][2] for h in handles])


def write_sampling_scene(root: Path) -> None:
    """A scene for the sampling rules (no frame is loaded): DSLR frames 0-3, iPhone frames 4-11. Frame 0's group
    is frames 4-11 (scores rising with the frame number); frame 4's group is frames 5-11."""
    names = [f"DSC{i:05d}" for i in range(4)] + [f"frame_{i:06d}" for i in range(8)]
    folder = root / "scene"
    (folder / "images").mkdir(parents=True)
    for name in names:
        (folder / "images" / f"{name}.jpg").touch()
    collection = {0: [(i, 0.1 * (i - 3)) for i in range(4, 12)], 4: [(i, 0.5) for i in range(5, 12)]}
    save_scene_metadata(folder, names, np.stack([np.eye(4)] * len(names)), collection)
    save_npz(root / "all_metadata.npz", scenes=np.array(["scene"]))


def test_scannetpp_clip_choice_follows_the_reference_odds(tmp_path: Path) -> None:
    write_sampling_scene(tmp_path)
    dataset = build_reader("scannetpp", root=str(tmp_path), num_views=2)
    assert dataset.sampling == ClipSampling(max_interval=3, video_prob=0.8, fixed_interval_prob=0.5, block_shuffle=16)
    draws = [dataset.clip_frames(0, np.random.default_rng(seed)) for seed in range(3000)]
    # Frame 0's group is its DSLR reference and iPhone frames: a clip of DSLR frames only was cut from the capture.
    video = np.array([all(h < 4 for h in handles) for handles, _ in draws])
    ordered = np.array([is_video for _, is_video in draws])
    assert abs(video.mean() - 0.7) < 0.04
    assert abs(ordered[video].mean() - 0.8) < 0.04  # the capture's clips are video-like with probability 0.8
    assert abs((~ordered[~video]).mean() - 0.25 / 0.3) < 0.05  # group clips: shuffled when the draw is > 0.75
    for handles, is_video in draws:
        assert len(set(handles)) == 2
        if is_video:
            assert handles == sorted(handles)


def test_scannetpp_group_clips_come_from_the_most_overlapping_frames(tmp_path: Path) -> None:
    write_sampling_scene(tmp_path)
    dataset = build_reader("scannetpp", root=str(tmp_path), num_views=2)
    used = set()
    for seed in range(2000):
        handles, _ = dataset.clip_frames(0, np.random.default_rng(seed))
        if any(h >= 4 for h in handles):
            used.update(handles)
    # A group clip draws from the first 4 to 7 of [0, 11, 10, ..., 4] (by score): never the two least overlapping.
    assert used == {0, *range(6, 12)}


def test_scannetpp_capture_clips_use_the_reference_frame_camera(tmp_path: Path) -> None:
    write_sampling_scene(tmp_path)
    dataset = build_reader("scannetpp", root=str(tmp_path), num_views=2)
    assert [len(g.video) for g in dataset.groups] == [4, 8]  # frame 0 (DSLR): the DSLR capture; frame 4: iPhone
    for seed in range(300):
        handles, _ = dataset.clip_frames(1, np.random.default_rng(seed))  # frame 4's group: iPhone frames only
        assert all(4 <= h < 12 for h in handles)


def test_scannetpp_frames_missing_from_disk_and_small_groups_are_left_out(tmp_path: Path, sequences) -> None:
    write_scannetpp(tmp_path, sequences[:1])
    scene = tmp_path / "0a5c013435"
    (scene / "images" / "DSC00103.jpg").unlink()
    dataset = build_reader("scannetpp", root=str(tmp_path), num_views=3)
    assert [len(g.video) for g in dataset.groups] == [2, 2, 2, 3, 3, 3]  # DSLR capture without DSC00103
    with np.load(scene / "new_scene_metadata.npz", allow_pickle=True) as stored:
        arrays = dict(stored)
    save_scene_metadata(scene, NAMES, arrays["trajectories"], {0: [(1, 0.9)], 3: [(4, 0.8), (5, 0.7)]})
    assert len(build_reader("scannetpp", root=str(tmp_path), num_views=3)) == 1  # only frame 3's group has 3
    save_scene_metadata(scene, NAMES, arrays["trajectories"], {0: [(1, 0.9)]})
    with pytest.raises(ValueError, match="no scene"):
        build_reader("scannetpp", root=str(tmp_path), num_views=3)


def test_scannetpp_has_only_a_training_split(tmp_path: Path, sequences) -> None:
    write_scannetpp(tmp_path, sequences[:1])
    with pytest.raises(ValueError, match="split 'test'"):
        build_reader("scannetpp", root=str(tmp_path), split="test", num_views=2)


def test_scannetpp_damaged_files_are_errors_naming_them(tmp_path: Path, sequences) -> None:
    write_scannetpp(tmp_path, sequences[:1])
    scene = tmp_path / "0a5c013435"
    index, metadata = tmp_path / "all_metadata.npz", scene / "new_scene_metadata.npz"

    def fails(error: type[Exception], path: Path) -> None:
        with pytest.raises(error, match=re.escape(str(path))):
            build_reader("scannetpp", root=str(tmp_path), num_views=2)

    with np.load(metadata, allow_pickle=True) as stored:
        arrays = dict(stored)
    poses = arrays["trajectories"].copy()
    poses[2, 0, 3] = np.nan
    save_npz(metadata, **{**arrays, "trajectories": poses})
    fails(ValueError, metadata)
    save_npz(metadata, **{**arrays, "trajectories": poses[:, :3]})
    fails(ValueError, metadata)
    save_npz(metadata, **{**arrays, "intrinsics": arrays["intrinsics"][:-1]})
    fails(ValueError, metadata)
    save_npz(metadata, **{k: v for k, v in arrays.items() if k != "image_collection"})
    fails(ValueError, metadata)
    metadata.unlink()
    fails(FileNotFoundError, metadata)
    save_npz(metadata, **arrays)
    save_npz(index, scenes=np.array([], dtype=str))
    fails(ValueError, index)
    index.unlink()
    fails(FileNotFoundError, index)
    save_npz(index, scenes=np.array(["0a5c013435"]))

    dataset = build_reader("scannetpp", root=str(tmp_path), num_views=2)
    depth = scene / "depth" / "DSC00101.png"
    save_uint16(depth, np.zeros((5, 5)))
    with pytest.raises(ValueError, match=re.escape(str(depth))):
        dataset.load_frame(0)
    depth.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(depth))):
        dataset.load_frame(0)
