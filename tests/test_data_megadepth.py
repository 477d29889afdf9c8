"""MegaDepth reader: a small index and photos written as DUSt3R's preprocess_megadepth.py leaves them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from streamvggt.train.data.mix import build_reader
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
)
from tests.view_file_helpers import as_stored_jpeg, save_exr

SCENES = ["0001 0", "0015 0", "0022 1"]  # "{scene} {subscene}"; 0015 and 0022 are the held-out scenes


@pytest.fixture(scope="module")
def sequences() -> list:
    return [render_sequence(seed) for seed in (11, 12, 13)]


def write_megadepth(root: Path, sequences, scenes=SCENES, sets_per_scene: int = 2) -> dict:
    """Photos ``{name}.jpg.{jpg,exr,npz}`` per scene folder and the index; returns {image index: frame}."""
    images, sets, truth = [], [], {}
    for s, (scene, frames) in enumerate(zip(scenes, sequences, strict=True)):
        folder = root.joinpath(*scene.split())
        members = []
        for f, (image, depth, pose) in enumerate(frames):
            name = f"{1000 * s + f}_{s}f{f}.jpg"  # COLMAP names keep their extension: files are "x.jpg.jpg"
            save_image(folder / f"{name}.jpg", image)
            save_exr(folder / f"{name}.exr", depth)
            np.savez(folder / f"{name}.npz", intrinsics=INTRINSICS, cam2world=pose)
            truth[len(images)] = (image, depth, pose)
            members.append(len(images))
            images.append(name)
        sets += [[s, *np.roll(members, k)] for k in range(sets_per_scene)]
    np.savez(
        root / "megadepth_sets_64.npz",
        scenes=np.array(scenes, dtype=object),
        images=np.array(images, dtype=object),
        sets=np.array(sets, dtype=np.int32),
    )
    return truth


def test_megadepth_clips_are_reprojection_consistent_and_not_metric(tmp_path: Path, sequences) -> None:
    write_megadepth(tmp_path, sequences)
    dataset = build_reader("megadepth", root=str(tmp_path), num_views=3, **READ_OPTIONS)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 3)
        assert not bool(clip["is_metric"]) and bool(clip["static"]) and not bool(clip["is_video"])
        assert clip["dataset"] == "megadepth"


def test_megadepth_frames_equal_the_ground_truth(tmp_path: Path, sequences) -> None:
    truth = write_megadepth(tmp_path, sequences)
    dataset = build_reader("megadepth", root=str(tmp_path), split="all", num_views=3)
    for image_index in (0, 7, 17):
        image, depth, pose = truth[image_index]
        frame = dataset.load_frame((image_index // 6, image_index))
        assert_frame_equals(frame, as_stored_jpeg(image), depth, INTRINSICS, pose)


def test_megadepth_clip_poses_are_relative_to_the_first_view(tmp_path: Path, sequences) -> None:
    truth = write_megadepth(tmp_path, sequences)
    dataset = build_reader("megadepth", root=str(tmp_path), num_views=4, aug_crop=0)
    handles, _ = dataset.clip_frames(1, np.random.default_rng(5))
    clip = dataset.clip(1, SIZE, np.random.default_rng(5))
    assert_relative_poses(clip, [truth[i][2] for _, i in handles])


def test_megadepth_splits_hold_out_scenes_0015_and_0022(tmp_path: Path, sequences) -> None:
    write_megadepth(tmp_path, sequences)
    train = build_reader("megadepth", root=str(tmp_path), split="train", num_views=2)
    val = build_reader("megadepth", root=str(tmp_path), split="val", num_views=2)
    everything = build_reader("megadepth", root=str(tmp_path), split="all", num_views=2)
    assert (len(train), len(val), len(everything)) == (2, 4, 6)
    assert set(train.sets[:, 0].tolist()) == {0} and set(val.sets[:, 0].tolist()) == {1, 2}


def test_megadepth_clip_draws_distinct_members_of_its_set(tmp_path: Path, sequences) -> None:
    write_megadepth(tmp_path, sequences)
    dataset = build_reader("megadepth", root=str(tmp_path), split="all", num_views=4)
    seen = set()
    for seed in range(200):
        handles, is_video = dataset.clip_frames(3, np.random.default_rng(seed))  # a set of scene 1: images 6..11
        images = [i for _, i in handles]
        assert len(set(images)) == 4 and set(images) <= set(range(6, 12)) and not is_video
        assert {scene for scene, _ in handles} == {1}
        seen.update(images)
    assert seen == set(range(6, 12))


def test_megadepth_needs_sets_with_enough_images(tmp_path: Path, sequences) -> None:
    write_megadepth(tmp_path, sequences)
    with pytest.raises(ValueError, match=r"megadepth_sets_64\.npz: sets have 6 images, fewer than 7 views"):
        build_reader("megadepth", root=str(tmp_path), num_views=7)


def test_megadepth_sets_pointing_past_the_image_list_name_the_index(tmp_path: Path, sequences) -> None:
    write_megadepth(tmp_path, sequences)
    with np.load(tmp_path / "megadepth_sets_64.npz", allow_pickle=True) as data:
        arrays = dict(data)
    np.savez(tmp_path / "megadepth_sets_64.npz", **{**arrays, "images": arrays["images"][:10]})
    with pytest.raises(ValueError, match=r"megadepth_sets_64\.npz: 'sets' refers to scenes or images"):
        build_reader("megadepth", root=str(tmp_path), num_views=2)


def test_megadepth_without_its_index_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"MegaDepth index not found: .*megadepth_sets_64\.npz"):
        build_reader("megadepth", root=str(tmp_path), num_views=2)


def test_megadepth_train_split_without_training_sets_is_an_error(tmp_path: Path, sequences) -> None:
    write_megadepth(tmp_path, sequences[1:], scenes=SCENES[1:])
    with pytest.raises(ValueError, match=r"megadepth_sets_64\.npz: no image set for split 'train'"):
        build_reader("megadepth", root=str(tmp_path), num_views=2)


def test_megadepth_missing_depth_names_the_file(tmp_path: Path, sequences) -> None:
    write_megadepth(tmp_path, sequences)
    missing = tmp_path / "0001" / "0" / "1_0f1.jpg.exr"
    missing.unlink()
    dataset = build_reader("megadepth", root=str(tmp_path), num_views=2)
    with pytest.raises(FileNotFoundError, match=r"EXR depth map not found: .*1_0f1\.jpg\.exr"):
        dataset.load_frame((0, 1))


def test_megadepth_bad_camera_arrays_name_the_file(tmp_path: Path, sequences) -> None:
    write_megadepth(tmp_path, sequences)
    camera = tmp_path / "0001" / "0" / "2_0f2.jpg.npz"
    np.savez(camera, intrinsics=INTRINSICS[:2], cam2world=sequences[0][2][2])
    dataset = build_reader("megadepth", root=str(tmp_path), num_views=2)
    with pytest.raises(ValueError, match=r"2_0f2\.jpg\.npz: intrinsics must be a finite 3x3"):
        dataset.load_frame((0, 2))
    pose = sequences[0][2][2].copy()
    pose[0, 3] = np.nan
    np.savez(camera, intrinsics=INTRINSICS, cam2world=pose)
    with pytest.raises(ValueError, match=r"2_0f2\.jpg\.npz: camera pose must be a finite 4x4"):
        dataset.load_frame((0, 2))


def test_megadepth_depth_of_another_size_names_the_file(tmp_path: Path, sequences) -> None:
    write_megadepth(tmp_path, sequences)
    save_exr(tmp_path / "0001" / "0" / "3_0f3.jpg.exr", np.ones((10, 12), dtype=np.float32))
    dataset = build_reader("megadepth", root=str(tmp_path), num_views=2)
    with pytest.raises(ValueError, match=r"3_0f3\.jpg\.npz: depth map \(10, 12\) does not match the image"):
        dataset.load_frame((0, 3))


def test_megadepth_without_openexr_says_what_to_install(tmp_path: Path, sequences, monkeypatch) -> None:
    write_megadepth(tmp_path, sequences)
    dataset = build_reader("megadepth", root=str(tmp_path), num_views=2)
    monkeypatch.setitem(sys.modules, "OpenEXR", None)  # an import of it now fails
    with pytest.raises(ImportError, match=r"reading EXR depth maps needs OpenEXR: pip install 'streamvggt\[train\]'"):
        dataset.load_frame((0, 0))
