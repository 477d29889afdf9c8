"""Each CUT3R on-disk layout: write a small dataset of rendered frames in it, read it back, check the geometry
(see tests/layout_helpers.py for the checks)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from streamvggt.train.data.layouts import (
    ARKitScenesDataset,
    Co3dDataset,
    GenericDataset,
    ScanNetDataset,
    WildRGBDDataset,
)
from streamvggt.train.data.mix import READERS, build_reader
from streamvggt.train.data.reader_types import READER_TYPES
from streamvggt.train.data.sampling import ClipSampling
from tests.layout_helpers import (
    FRAMES,
    HEIGHT,
    INTRINSICS,
    READ_OPTIONS,
    SIZE,
    WIDTH,
    assert_frame_equals,
    check_clip,
    read_clips,
    render_sequence,
    save_image,
    save_npz,
    save_uint16,
)
from tests.stored_values import MM_ROUNDING, as_stored_jpeg


@pytest.fixture(scope="module")
def sequences() -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    return [render_sequence(seed) for seed in (3, 4)]


# ------------------------------------------------------------------------------------------------------ writers


def write_generic(root: Path, sequences) -> None:
    for s, frames in enumerate(sequences):
        scene = root / f"scene{s}"
        for f, (image, depth, pose) in enumerate(frames):
            save_image(scene / "rgb" / f"{f:05d}.png", image)
            (scene / "depth").mkdir(parents=True, exist_ok=True)
            np.save(scene / "depth" / f"{f:05d}.npy", depth)
            save_npz(scene / "cam" / f"{f:05d}.npz", pose=pose, intrinsics=INTRINSICS)


def write_scannet(root: Path, sequences) -> None:
    for s, frames in enumerate(sequences):
        scene = root / "scans_train" / f"scene{s:04d}_00"
        names = [f"{f * 10}" for f in range(len(frames))]
        for name, (image, depth, pose) in zip(names, frames, strict=True):
            save_image(scene / "color" / f"{name}.jpg", image)
            save_uint16(scene / "depth" / f"{name}.png", depth * 1000)
            save_npz(scene / "cam" / f"{name}.npz", pose=pose, intrinsics=INTRINSICS)
        save_npz(scene / "new_scene_metadata.npz", images=np.array(names))


def write_arkitscenes(root: Path, sequences, split: str = "Training", first_scene: int = 0) -> list[str]:
    """CUT3R's processed ARKitScenes: ``{split}/all_metadata.npz`` and per scene ``new_scene_metadata.npz``
    (sorted ``{scene}_{timestamp}.png`` names, rows (w, h, fx, fy, cx, cy), camera-to-world trajectories, the
    pickled ``image_collection``), ``vga_wide/*.jpg``, ``lowres_depth/*.png`` (uint16 mm)."""
    folder_of_split = root / split
    scenes = [f"4158{s:04d}" for s in range(first_scene, first_scene + len(sequences))]
    for scene, frames in zip(scenes, sequences, strict=True):
        folder = folder_of_split / scene
        names = [f"{scene}_{100 + f:d}.000.png" for f in range(len(frames))]
        for name, (image, depth, _) in zip(names, frames, strict=True):
            save_image(folder / "vga_wide" / name.replace(".png", ".jpg"), image)
            save_uint16(folder / "lowres_depth" / name, depth * 1000)
        row = [WIDTH, HEIGHT, INTRINSICS[0, 0], INTRINSICS[1, 1], INTRINSICS[0, 2], INTRINSICS[1, 2]]
        collection = np.empty((), dtype=object)
        collection[()] = {0: [(i, 0.9) for i in range(1, len(frames))]}  # frame 0 sees all others
        save_npz(
            folder / "new_scene_metadata.npz",
            images=np.array(names),
            intrinsics=np.array([row] * len(frames)),
            trajectories=np.stack([pose for _, _, pose in frames]),
            image_collection=collection,
        )
    save_npz(folder_of_split / "all_metadata.npz", scenes=np.array(scenes))
    return scenes


def write_co3d(root: Path, sequences, wild: bool = False) -> None:
    index: dict[str, dict[str, list[int]]] = {"chair": {}}
    for s, frames in enumerate(sequences):
        sequence = f"{s}_seq"
        folder = root / "chair" / sequence
        ids = [2 * f + 1 for f in range(len(frames))]
        index["chair"][sequence] = ids
        for i, (image, depth, pose) in zip(ids, frames, strict=True):
            mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
            mask[:, : WIDTH // 2] = 255  # the "object" is the left half
            if wild:
                save_image(folder / "rgb" / f"{i:05d}.jpg", image)
                save_uint16(folder / "depth" / f"{i:05d}.png", depth * 1000)
                save_npz(folder / "metadata" / f"{i:05d}.npz", camera_pose=pose, camera_intrinsics=INTRINSICS)
                save_image(folder / "masks" / f"{i:05d}.png", mask)
            else:
                maximum = float(depth.max())
                save_image(folder / "images" / f"frame{i:06d}.jpg", image)
                save_npz(
                    folder / "images" / f"frame{i:06d}.npz",
                    camera_pose=pose,
                    camera_intrinsics=INTRINSICS,
                    maximum_depth=maximum,
                )
                save_uint16(folder / "depths" / f"frame{i:06d}.jpg.geometric.png", depth / maximum * 65535)
                save_image(folder / "masks" / f"frame{i:06d}.png", mask)
    (root / "selected_seqs_train.json").write_text(json.dumps(index), encoding="utf-8")


# -------------------------------------------------------------------------------------------------------- tests


def test_generic_layout(tmp_path: Path, sequences) -> None:
    write_generic(tmp_path, sequences)
    dataset = GenericDataset(str(tmp_path), num_views=3, static=True, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 3 + 1)
    for clip in read_clips(dataset):
        check_clip(clip, 3)
        assert bool(clip["static"]) and clip["dataset"] == "generic"


def test_generic_layout_with_split_folder_and_build_reader(tmp_path: Path, sequences) -> None:
    write_generic(tmp_path / "train", sequences[:1])
    dataset = build_reader(
        "generic", root=str(tmp_path), split="train", split_folder=True, num_views=2, sampling={"max_interval": 2}
    )
    assert len(dataset) == FRAMES - 1
    assert dataset.sampling.max_interval == 2


def test_a_folder_without_sequences_is_called_another_layout_and_short_ones_give_their_length(
    tmp_path: Path, sequences
) -> None:
    (tmp_path / "other" / "images").mkdir(parents=True)  # e.g. a reconstruct output passed as a generic root
    with pytest.raises(ValueError, match=r"^generic: no sequence found: the folder is not in the generic layout$"):
        GenericDataset(str(tmp_path / "other"), num_views=3, **READ_OPTIONS)
    write_generic(tmp_path / "short", sequences)
    message = rf"^generic: no sequence has {FRAMES + 1} frames \(2 found, the longest has {FRAMES}\)$"
    with pytest.raises(ValueError, match=message):
        GenericDataset(str(tmp_path / "short"), num_views=FRAMES + 1, **READ_OPTIONS)


def test_scannet_layout(tmp_path: Path, sequences) -> None:
    write_scannet(tmp_path, sequences)
    dataset = ScanNetDataset(str(tmp_path), num_views=4, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 4 + 1)
    for clip in read_clips(dataset):
        check_clip(clip, 4)


def test_arkitscenes_layout_skips_scenes_of_the_highres_set(tmp_path: Path, sequences) -> None:
    root = tmp_path / "processed_arkitscenes"
    scenes = write_arkitscenes(root, sequences)
    dataset = build_reader("arkitscenes", root=str(root), num_views=4, **READ_OPTIONS)
    assert len(dataset) == 2  # one co-visibility group per scene
    for clip in read_clips(dataset, 4):
        check_clip(clip, 4)
        assert bool(clip["is_metric"]) and bool(clip["static"])
    for handle, (image, depth, pose) in enumerate(sequences[0]):
        frame = dataset.load_frame(handle)
        assert_frame_equals(frame, as_stored_jpeg(image), depth, INTRINSICS, pose, MM_ROUNDING)
    assert dataset.sampling == ClipSampling(max_interval=8, video_prob=0.8, fixed_interval_prob=0.5, block_shuffle=16)
    (tmp_path / "processed_arkitscenes_highres" / "Training" / scenes[0]).mkdir(parents=True)
    assert len(ARKitScenesDataset(str(root), num_views=4)) == 1


def test_arkitscenes_test_split_leaves_out_the_highres_validation_scenes(tmp_path: Path, sequences) -> None:
    root = tmp_path / "processed_arkitscenes"
    scenes = write_arkitscenes(root, sequences, split="Test")
    highres = tmp_path / "processed_arkitscenes_highres"
    (highres / "Training" / scenes[0]).mkdir(parents=True)  # the train split's high-res scenes do not count
    assert len(ARKitScenesDataset(str(root), split="test", num_views=4)) == 2
    (highres / "Validation" / scenes[1]).mkdir(parents=True)
    dataset = ARKitScenesDataset(str(root), split="test", num_views=4)
    assert len(dataset) == 1 and {scene.name for scene, *_ in dataset.frames} == {scenes[0]}
    with pytest.raises(ValueError, match="split 'validation'"):
        ARKitScenesDataset(str(root), split="validation", num_views=4)


def test_arkitscenes_clips_come_from_their_group_scene_without_repeats(tmp_path: Path, sequences) -> None:
    root = tmp_path / "processed_arkitscenes"
    write_arkitscenes(root, [sequences[0][:4], sequences[1]])  # scene 0: 4 frames, the other 6
    dataset = ARKitScenesDataset(str(root), num_views=4)  # scene 0's group is exactly one clip's size
    for index, frames in ((0, range(4)), (1, range(4, 4 + FRAMES))):
        for seed in range(200):
            handles, _ = dataset.clip_frames(index, np.random.default_rng(seed))
            assert set(handles) <= set(frames) and len(set(handles)) == 4


def test_arkitscenes_damaged_metadata_are_errors_naming_the_file(tmp_path: Path, sequences) -> None:
    root = tmp_path / "processed_arkitscenes"
    scenes = write_arkitscenes(root, sequences[:1])
    index, metadata = root / "Training" / "all_metadata.npz", root / "Training" / scenes[0] / "new_scene_metadata.npz"
    with np.load(metadata, allow_pickle=True) as stored:
        arrays = dict(stored)
    poses = arrays["trajectories"].copy()
    poses[3, 1, 3] = np.nan
    for path, damaged in (
        (metadata, {**arrays, "trajectories": poses}),
        (metadata, {**arrays, "intrinsics": arrays["intrinsics"][:, :5]}),
        (metadata, {**arrays, "image_collection": np.array([1, 2])}),
        (index, {"scenes": np.array([], dtype=str)}),
    ):
        with np.load(path, allow_pickle=True) as stored:
            saved = dict(stored)
        save_npz(path, **damaged)
        with pytest.raises(ValueError, match=re.escape(str(path))):
            ARKitScenesDataset(str(root), num_views=4)
        save_npz(path, **saved)
    metadata.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(metadata))):
        ARKitScenesDataset(str(root), num_views=4)


def test_co3d_layout_with_background_masking(tmp_path: Path, sequences) -> None:
    write_co3d(tmp_path, sequences)
    dataset = Co3dDataset(str(tmp_path), num_views=3, mask_background=0.0, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 3 + 1)
    for clip in read_clips(dataset):
        check_clip(clip, 3)
        assert not bool(clip["is_metric"])
    masked = Co3dDataset(str(tmp_path), num_views=3, mask_background=1.0, **READ_OPTIONS)
    fraction = masked.clip(0, SIZE, np.random.default_rng(0))["valid_mask"].float().mean()
    assert 0.3 < fraction < 0.7  # only the masked half keeps its depth


def test_wildrgbd_layout(tmp_path: Path, sequences) -> None:
    write_co3d(tmp_path, sequences, wild=True)
    dataset = WildRGBDDataset(str(tmp_path), num_views=3, mask_background=0.0, **READ_OPTIONS)
    for clip in read_clips(dataset):
        check_clip(clip, 3)
        assert bool(clip["is_metric"])


def test_a_clip_has_one_colour_jitter_for_all_its_views(tmp_path: Path, sequences) -> None:
    image, depth, pose = sequences[0][0]
    write_generic(tmp_path, [[(image, depth, pose)] * 3])  # three identical frames
    dataset = GenericDataset(str(tmp_path), num_views=3, aug_crop=0, color_jitter=True)
    clip = dataset.clip(0, SIZE, np.random.default_rng(0))
    plain = GenericDataset(str(tmp_path), num_views=3, aug_crop=0, color_jitter=False).clip(
        0, SIZE, np.random.default_rng(0)
    )
    assert not torch.allclose(clip["images"][0], plain["images"][0])  # jittered
    assert torch.equal(clip["images"][0], clip["images"][1]) and torch.equal(clip["images"][0], clip["images"][2])


def test_unknown_reader_options_are_errors_that_list_the_accepted_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="accepts"):
        build_reader("scannet", root=str(tmp_path), num_views=2, max_interval=3)
    with pytest.raises(ValueError, match="needs root"):
        build_reader("co3d", root=None, num_views=2)
    with pytest.raises(ValueError, match="readers exist for"):
        build_reader("no_such_dataset", root=str(tmp_path), num_views=2)


@pytest.mark.parametrize(("option", "value"), [("is_metric", "maybe"), ("static", 1)])
def test_a_flag_option_that_is_not_true_or_false_is_an_error_naming_it(tmp_path: Path, sequences, option, value):
    write_generic(tmp_path, sequences)
    message = f"dataset type 'generic': {option} must be true or false, got {value!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build_reader("generic", root=str(tmp_path), num_views=3, **{option: value})
    assert build_reader("generic", root=str(tmp_path), num_views=3, **{option: False}).name == "generic"


def test_the_light_list_of_reader_types_names_every_reader():
    """``streamvggt data`` offers READER_TYPES without importing the readers; it must name exactly READERS."""
    assert list(READER_TYPES) == sorted(READERS)
