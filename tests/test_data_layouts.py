"""Each CUT3R on-disk layout: write a small dataset of rendered frames in it, read it back, check the geometry
(see tests/layout_helpers.py for the checks)."""

from __future__ import annotations

import json
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
from streamvggt.train.data.mix import build_reader
from tests.layout_helpers import (
    FRAMES,
    HEIGHT,
    INTRINSICS,
    READ_OPTIONS,
    SIZE,
    WIDTH,
    check_clip,
    read_clips,
    render_sequence,
    save_image,
    save_npz,
    save_uint16,
)


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


def write_arkitscenes(root: Path, sequences) -> list[str]:
    split = root / "Training"
    scenes = [f"4158{s:04d}" for s in range(len(sequences))]
    for scene, frames in zip(scenes, sequences, strict=True):
        folder = split / scene
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
    save_npz(split / "all_metadata.npz", scenes=np.array(scenes))
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


def test_scannet_layout(tmp_path: Path, sequences) -> None:
    write_scannet(tmp_path, sequences)
    dataset = ScanNetDataset(str(tmp_path), num_views=4, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 4 + 1)
    for clip in read_clips(dataset):
        check_clip(clip, 4)


def test_arkitscenes_layout_skips_scenes_of_the_highres_set(tmp_path: Path, sequences) -> None:
    root = tmp_path / "processed_arkitscenes"
    scenes = write_arkitscenes(root, sequences)
    dataset = ARKitScenesDataset(str(root), num_views=4, **READ_OPTIONS)
    assert len(dataset) == 2  # one co-visibility group per scene
    for clip in read_clips(dataset, 4):
        check_clip(clip, 4)
    (tmp_path / "processed_arkitscenes_highres" / "Training" / scenes[0]).mkdir(parents=True)
    assert len(ARKitScenesDataset(str(root), num_views=4)) == 1


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
