"""Each CUT3R on-disk layout: write a small dataset of rendered frames in it, read it back, check the geometry.

The frames come from a synthetic scene, so depth, intrinsics and poses are exact before they are written; a read
clip must still agree with itself: view 0's depth, moved into view s with the clip's extrinsics and intrinsics,
lands on view s's own depth. A wrong pose convention, depth unit or intrinsics update breaks that agreement.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from streamvggt.geometry import depth_to_camera_points
from streamvggt.train.data.layouts import (
    ARKitScenesDataset,
    Co3dDataset,
    GenericDataset,
    ScanNetDataset,
    WildRGBDDataset,
)
from streamvggt.train.data.mix import build_reader
from streamvggt.train.data.synthetic import SyntheticScene

WIDTH, HEIGHT, FRAMES = 64, 48, 6
SIZE = (28, 28)  # (W, H) read back
# An off-centre principal point: the reader must crop around it.
INTRINSICS = np.array([[40.0, 0.0, 29.0], [0.0, 40.0, 25.0], [0.0, 0.0, 1.0]])


def render_sequence(seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image uint8, depth metres, camera-to-world) for the first frames of a synthetic scene's 24-frame path
    (small motion between them, so views overlap)."""
    scene = SyntheticScene(np.random.default_rng(seed), 24)
    frames = []
    for f in range(FRAMES):
        image, depth = scene.render(f, WIDTH, HEIGHT, intrinsics=INTRINSICS)
        frames.append((image, depth, scene.cam_to_world[f]))
    return frames


@pytest.fixture(scope="module")
def sequences() -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    return [render_sequence(seed) for seed in (3, 4)]


def save_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def save_uint16(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(values).astype(np.uint16)).save(path)


def save_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


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


# ------------------------------------------------------------------------------------------------------- checks


def reprojection(clip: dict, view: int, tolerance: float = 0.03) -> tuple[float, float]:
    """View 0's valid pixels moved into view ``view``: (agreeing, impossible) fractions of those landing inside.

    A point agrees when its depth lies within the range of view ``view``'s depths around the pixel it lands on
    (3 x 3, +- tolerance), which forgives rounding at edges and on grazing surfaces. It is impossible when all
    those depths are farther than the point: the point would hide them. Occluded points are neither.
    """
    depth, intrinsics, extrinsics = clip["depth"], clip["intrinsics"], clip["extrinsics"]
    points = depth_to_camera_points(depth[0], intrinsics[0])[clip["valid_mask"][0]]  # world = camera 0
    cam = points @ extrinsics[view, :3, :3].T + extrinsics[view, :3, 3]
    z = cam[:, 2]
    u = (intrinsics[view, 0, 0] * cam[:, 0] / z + intrinsics[view, 0, 2]).round().long()
    v = (intrinsics[view, 1, 1] * cam[:, 1] / z + intrinsics[view, 1, 2]).round().long()
    height, width = depth.shape[-2:]
    inside = (z > 0) & (u >= 1) & (u < width - 1) & (v >= 1) & (v < height - 1)
    u, v, z = u[inside], v[inside], z[inside]
    around = torch.stack([depth[view, v + dv, u + du] for dv in (-1, 0, 1) for du in (-1, 0, 1)], dim=-1)
    low, high = around.min(-1).values, around.max(-1).values
    agree = (low <= z * (1 + tolerance)) & (high >= z * (1 - tolerance))
    impossible = low > z * (1 + tolerance)
    return float(agree.float().mean()), float(impossible.float().mean())


def check_clip(clip: dict, num_views: int) -> None:
    width, height = SIZE
    assert clip["images"].shape == (num_views, 3, height, width)
    assert clip["images"].dtype == torch.float32 and clip["images"].min() >= 0 and clip["images"].max() <= 1
    assert clip["depth"].shape == clip["valid_mask"].shape == (num_views, height, width)
    assert clip["valid_mask"].float().mean() > 0.3
    assert torch.allclose(clip["extrinsics"][0], torch.eye(4), atol=1e-5)
    # The crop put the principal point at the image centre (within a pixel of the resampling).
    assert torch.allclose(clip["intrinsics"][:, :2, 2], torch.tensor([width / 2, height / 2]), atol=1.0)
    for view in range(1, num_views):
        agree, impossible = reprojection(clip, view)
        assert agree > 0.7 and impossible < 0.02, (view, agree, impossible)


READ_OPTIONS = {"aug_crop": 4, "color_jitter": True}


def read_clips(dataset, count: int = 3) -> list[dict]:
    return [dataset.clip(i % len(dataset), SIZE, np.random.default_rng(i)) for i in range(count)]


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
        build_reader("megadepth", root=str(tmp_path), num_views=2)
