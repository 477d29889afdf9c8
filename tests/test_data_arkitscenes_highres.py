"""The ``arkitscenes_highres`` reader on a small dataset written as CUT3R's preprocess_arkitscenes_highres.py
writes it: ``ROOT/{Training|Validation}/scene_list.json`` and per scene ``scene_metadata.npz`` (``images``:
``{scene}_{timestamp}.png`` in time order, ``intrinsics`` rows ``(w, h, fx, fy, cx, cy)``, ``trajectories``
[N, 4, 4] camera-to-world), ``vga_wide/{scene}_{timestamp}.jpg``, ``highres_depth/{scene}_{timestamp}.png``
(uint16 millimetres)."""

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
    HEIGHT,
    INTRINSICS,
    READ_OPTIONS,
    SIZE,
    WIDTH,
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

# Seconds since the device booted: this scene's clock passes 1000 s, where sorting the names as text goes wrong.
TIMESTAMPS = ["998.518", "999.018", "999.518", "1000.018", "1000.518", "1001.018"]


@pytest.fixture(scope="module")
def sequences() -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    return [render_sequence(seed) for seed in (41, 42)]


def frame_names(scene: str, count: int = FRAMES) -> list[str]:
    return [f"{scene}_{t}.png" for t in TIMESTAMPS[:count]]


def write_scene(folder: Path, frames) -> None:
    names = frame_names(folder.name, len(frames))
    for name, (image, depth, _) in zip(names, frames, strict=True):
        save_image(folder / "vga_wide" / name.replace(".png", ".jpg"), image)
        save_uint16(folder / "highres_depth" / name, depth * 1000)
    row = [WIDTH, HEIGHT, INTRINSICS[0, 0], INTRINSICS[1, 1], INTRINSICS[0, 2], INTRINSICS[1, 2]]
    save_npz(
        folder / "scene_metadata.npz",
        trajectories=np.stack([pose for _, _, pose in frames]),
        intrinsics=np.array([row] * len(frames)),
        images=np.array(names),
    )


def write_split(root: Path, split: str, sequences, scenes=("41069021", "41069025")) -> None:
    for scene, frames in zip(scenes, sequences, strict=False):
        write_scene(root / split / scene, frames)
    (root / split / "scene_list.json").write_text(json.dumps(list(scenes[: len(sequences)])), encoding="utf-8")


def test_arkitscenes_highres_clips_are_consistent_metric_static_clips(tmp_path: Path, sequences) -> None:
    write_split(tmp_path, "Training", sequences)
    dataset = build_reader("arkitscenes_highres", root=str(tmp_path), num_views=4, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 4 + 1)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 4)
        assert bool(clip["is_metric"]) and bool(clip["static"]) and clip["dataset"] == "arkitscenes_highres"


def test_arkitscenes_highres_frames_equal_the_ground_truth_in_time_order(tmp_path: Path, sequences) -> None:
    write_split(tmp_path, "Training", sequences)
    dataset = build_reader("arkitscenes_highres", root=str(tmp_path), num_views=FRAMES, sampling={"video_prob": 1.0})
    scene, frames = dataset.sequences[0]
    assert scene == "41069021" and [name for _, name, _, _ in frames] == frame_names(scene)
    for handle, (image, depth, cam_to_world) in zip(frames, sequences[0], strict=True):
        frame = dataset.load_frame(handle)
        assert_frame_equals(frame, as_stored_jpeg(image), depth, INTRINSICS, cam_to_world, MM_ROUNDING)
    # A whole-scene video clip follows the capture time across the 1000 s mark.
    assert_relative_poses(dataset.clip(0, SIZE, np.random.default_rng(0)), [pose for _, _, pose in sequences[0]])


def test_arkitscenes_highres_sampling_follows_the_reference(tmp_path: Path, sequences) -> None:
    write_split(tmp_path, "Training", sequences)
    dataset = build_reader("arkitscenes_highres", root=str(tmp_path), num_views=3)
    expected = ClipSampling(min_interval=1, max_interval=8, video_prob=0.5, fixed_interval_prob=0.5, block_shuffle=16)
    assert dataset.sampling == expected
    override = build_reader("arkitscenes_highres", root=str(tmp_path), num_views=3, sampling={"max_interval": 2})
    assert override.sampling.max_interval == 2 and override.sampling.block_shuffle == 16


def test_arkitscenes_highres_test_split_is_the_validation_folder(tmp_path: Path, sequences) -> None:
    write_split(tmp_path, "Training", sequences[:1], scenes=("41069021",))
    write_split(tmp_path, "Validation", sequences, scenes=("42444946", "42445173"))
    dataset = build_reader("arkitscenes_highres", root=str(tmp_path), split="test", num_views=3)
    assert [name for name, _ in dataset.sequences] == ["42444946", "42445173"]
    with pytest.raises(ValueError, match="split 'val'"):
        build_reader("arkitscenes_highres", root=str(tmp_path), split="val", num_views=3)


def test_arkitscenes_highres_skips_short_scenes(tmp_path: Path, sequences) -> None:
    write_split(tmp_path, "Training", [sequences[0], sequences[1][:2]])
    dataset = build_reader("arkitscenes_highres", root=str(tmp_path), num_views=3)
    assert len(dataset) == FRAMES - 3 + 1  # the two-frame scene gives no clip


def test_arkitscenes_highres_damaged_files_are_errors_naming_them(tmp_path: Path, sequences) -> None:
    write_split(tmp_path, "Training", sequences[:1], scenes=("41069021",))
    scene = tmp_path / "Training" / "41069021"
    metadata = scene / "scene_metadata.npz"

    def fails(error: type[Exception], path: Path) -> None:
        with pytest.raises(error, match=re.escape(str(path))):
            build_reader("arkitscenes_highres", root=str(tmp_path), num_views=2)

    with np.load(metadata) as stored:
        arrays = dict(stored)
    poses = arrays["trajectories"].copy()
    poses[1, 2, 2] = np.inf
    save_npz(metadata, **{**arrays, "trajectories": poses})
    fails(ValueError, metadata)
    save_npz(metadata, **{**arrays, "intrinsics": arrays["intrinsics"][:, :4]})
    fails(ValueError, metadata)
    save_npz(metadata, **{**arrays, "images": np.array([n.replace("_", "-") for n in arrays["images"]])})
    fails(ValueError, metadata)
    metadata.unlink()
    fails(FileNotFoundError, metadata)
    save_npz(metadata, **arrays)

    dataset = build_reader("arkitscenes_highres", root=str(tmp_path), num_views=2)
    handle = dataset.sequences[0][1][0]
    depth = scene / "highres_depth" / handle[1]
    save_uint16(depth, np.zeros((HEIGHT * 3, WIDTH * 3)))  # not resized to the image
    with pytest.raises(ValueError, match=re.escape(str(depth))):
        dataset.load_frame(handle)
    depth.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(depth))):
        dataset.load_frame(handle)
    image = scene / "vga_wide" / handle[1].replace(".png", ".jpg")
    image.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(image))):
        dataset.load_frame(handle)


def test_arkitscenes_highres_empty_or_missing_split_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "Training").mkdir()
    (tmp_path / "Training" / "scene_list.json").write_text("[]", encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "Training"))):
        build_reader("arkitscenes_highres", root=str(tmp_path), num_views=2)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "Validation"))):
        build_reader("arkitscenes_highres", root=str(tmp_path), split="test", num_views=2)
