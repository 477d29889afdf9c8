"""The indoor and object readers on datasets written file for file as the reference's preprocess scripts write
them (``datasets_preprocess/preprocess_<name>.py`` and, where the reference has one, ``generate_set_<name>.py``).

The writers here follow those scripts, not this project's readers: every file they leave (index files, the
intermediate ``scene_metadata.npz``, ``scene_list.json``, per-category index copies, empty folders), with numpy's
own choices for what ``np.savez`` makes of Python lists, tuples and dicts (str arrays, float pair tables, pickled
dicts with int keys), float32 where the script casts, the scripts' depth encodings (truncation where they use
``astype``) and their JPEG quality (Pillow's default). Frames come from a synthetic scene, so each read frame is
compared with the truth and each clip checked for consistent geometry (tests/layout_helpers.py).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamvggt.train.data.mix import build_reader
from tests.layout_helpers import (
    FRAMES,
    HEIGHT,
    INTRINSICS,
    READ_OPTIONS,
    WIDTH,
    assert_frame_equals,
    check_clip,
    read_clips,
    render_sequence,
)

# The continuous-pixel principal point (first pixel's centre at 0.5) of ScanNet++'s COLMAP and Hypersim's
# OpenGL-derived intrinsics.
CONTINUOUS_INTRINSICS = INTRINSICS + np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
MM_STEP = 1e-3 + 1e-6  # millimetres stored by truncation (astype(uint16)) are up to one step below the truth


@pytest.fixture(scope="module")
def sequences() -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    return [render_sequence(seed) for seed in (41, 42)]


# ------------------------------------------------------------------------------- files as the scripts write them


def save_jpeg(path: Path, image: np.ndarray) -> None:
    """``PIL.Image.save`` of a .jpg with no options, as every preprocess script saves its images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def jpeg_decoded(image: np.ndarray) -> np.ndarray:
    """What a reader must return for an image saved by :func:`save_jpeg`."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG")
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def save_png(path: Path, values: np.ndarray) -> None:
    """``cv2.imwrite`` of a single-channel uint16 or uint8 array: a greyscale PNG of that depth."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path)


def savez(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def millimetres(depth: np.ndarray) -> np.ndarray:
    """Raw sensor depth: whole millimetres as uint16 (0: none)."""
    return np.round(depth * 1000).astype(np.uint16)


def sorted_collections(images, trajectories, intrinsics, pairs, timestamp, max_interval) -> dict:
    """The arrays generate_set_{arkitscenes,scannetpp}.py derive from a scene_metadata.npz: names sorted as strings,
    the rows reordered, pair indices remapped, ``image_collection`` {id1: [(id2, score)]} and
    ``video_collection`` {i: [later frames within max_interval]}."""
    order = sorted(enumerate(images), key=lambda x: x[1])
    indices = np.array([i for i, _ in order])
    names = tuple(name for _, name in order)
    to_sorted = {index: i for i, index in enumerate(indices)}
    remapped = [(to_sorted[a], to_sorted[b], score) for a, b, score in pairs]
    image_collection: dict = {}
    for a, b, score in remapped:
        image_collection.setdefault(a, []).append((b, score))
    video_collection = {}
    for i, name in enumerate(names):
        later = [j for j in range(i + 1, len(names)) if timestamp(names[j]) - timestamp(name) <= max_interval]
        video_collection[i] = later
    return {
        "images": names,
        "trajectories": trajectories[indices],
        "intrinsics": intrinsics[indices],
        "pairs": remapped,
        "image_collection": image_collection,
        "video_collection": video_collection,
    }


def all_pairs(count: int) -> np.ndarray:
    """A precomputed pair table (id1, id2, score) as float rows: every frame with every other."""
    return np.array([(a, b, 0.5) for a in range(count) for b in range(count) if a != b], dtype=np.float64)


def frames_of(dataset) -> list:
    """Every frame handle of a reader, in its own order."""
    if hasattr(dataset, "frames"):
        return list(range(len(dataset.frames)))
    return [handle for _, handles in dataset.sequences for handle in handles]


# ---------------------------------------------------------------------------------------------------- ScanNet


def write_scannet(root: Path, sequences, split: str) -> list[str]:
    """preprocess_scannet.py then generate_set_scannet.py: ``{split}/{scene}/color/{i:05d}.jpg`` (resized to the
    depth), ``depth/{i:05d}.png`` (raw uint16 mm), ``cam/{i:05d}.npz`` (float32 ``intrinsics``, ``pose``); frames
    with a non-finite pose are left out (here frame 2 of each scene), so names have gaps."""
    scenes = []
    for s, frames in enumerate(sequences):
        scene = root / split / f"scene{s:04d}_0{s}"
        for i, (image, depth, pose) in enumerate(frames):
            if i == 2:
                continue
            save_jpeg(scene / "color" / f"{i:05d}.jpg", image)
            save_png(scene / "depth" / f"{i:05d}.png", millimetres(depth))
            savez(
                scene / "cam" / f"{i:05d}.npz", intrinsics=INTRINSICS.astype(np.float32), pose=pose.astype(np.float32)
            )
        basenames = sorted((p.name.split(".")[0] for p in (scene / "color").iterdir()), key=int)
        videos = {i: [j for j in range(i + 1, len(basenames))] for i in range(len(basenames))}
        np.savez(scene / "new_scene_metadata.npz", images=basenames, video_collection=videos)
        scenes.append(scene.name)
    return scenes


def test_scannet_preprocessed_frames_read_back_exactly(tmp_path: Path, sequences) -> None:
    write_scannet(tmp_path, sequences, "scans_train")
    dataset = build_reader("scannet", root=str(tmp_path), num_views=4, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 1 - 4 + 1)
    kept = [i for i in range(FRAMES) if i != 2]
    truths = [sequences[s][i] for s in range(2) for i in kept]
    for handle, (image, depth, pose) in zip(frames_of(dataset), truths, strict=True):
        frame = dataset.load_frame(handle)
        assert_frame_equals(
            frame, jpeg_decoded(image), depth, INTRINSICS.astype(np.float32), pose.astype(np.float32), 5e-4 + 1e-6
        )
    for clip in read_clips(dataset, 4):
        check_clip(clip, 4)


def test_scannet_test_split_reads_scans_test(tmp_path: Path, sequences) -> None:
    write_scannet(tmp_path, sequences[:1], "scans_test")
    write_scannet(tmp_path, sequences, "scans_train")
    dataset = build_reader("scannet", root=str(tmp_path), split="test", num_views=4, **READ_OPTIONS)
    assert [name for name, _ in dataset.sequences] == ["scene0000_00"]
    assert {handle[0].parent.name for handle in frames_of(dataset)} == {"scans_test"}


# ----------------------------------------------------------------------------------------------- ARKitScenes


def arkit_name(scene: str, frame: int) -> str:
    # Timestamps cross a digit count (999.x -> 1000.x), where a string order differs from the time order.
    return f"{scene}_{999.7 + 0.1 * frame:.3f}.png"


def write_arkitscenes(root: Path, split: str, scenes: dict[str, list]) -> None:
    """preprocess_arkitscenes.py then generate_set_arkitscenes.py: per scene ``scene_metadata.npz``
    (selection order) and ``new_scene_metadata.npz`` (sorted), ``vga_wide/*.jpg``, ``lowres_depth/*.png``; per
    split ``scene_list.json`` and ``all_metadata.npz`` (every key of the script)."""
    folder = root / split
    kept = {}
    for scene, frames in scenes.items():
        out = folder / scene
        # The selection comes from the precomputed pairs in its own order (here: reversed).
        selection = [arkit_name(scene, f) for f in reversed(range(len(frames)))]
        truth = [frames[f] for f in reversed(range(len(frames)))]
        row = [WIDTH, HEIGHT, INTRINSICS[0, 0], INTRINSICS[1, 1], INTRINSICS[0, 2], INTRINSICS[1, 2]]
        for name, (image, depth, _) in zip(selection, truth, strict=True):
            save_jpeg(out / "vga_wide" / name.replace(".png", ".jpg"), image)
            save_png(out / "lowres_depth" / name, millimetres(depth))
        trajectories = np.stack([pose for _, _, pose in truth])
        intrinsics = np.array([row] * len(selection))
        pairs = all_pairs(len(selection))
        np.savez(
            out / "scene_metadata.npz", trajectories=trajectories, intrinsics=intrinsics, images=selection, pairs=pairs
        )
        timestamp = lambda name: float(name[:-4].split("_")[-1])  # noqa: E731
        np.savez(
            out / "new_scene_metadata.npz",
            **sorted_collections(np.array(selection), trajectories, intrinsics, pairs, timestamp, 5.0),
        )
        kept[scene] = (selection, intrinsics, trajectories, pairs)
    (folder / "scene_list.json").write_text(json.dumps(list(kept)), encoding="utf-8")
    offset, counts, sceneids, images, matrices, trajectories, pairs = 0, [], [], [], [], [], []
    for index, (selection, rows, poses, scene_pairs) in enumerate(kept.values()):
        sceneids.extend([index] * len(selection))
        images.append(np.array(selection))
        matrices.append(np.stack([[[r[2], 0, r[4]], [0, r[3], r[5]], [0, 0, 1]] for r in rows]))
        trajectories.append(poses)
        shifted = scene_pairs.copy()
        shifted[:, 0:2] += offset
        pairs.append(shifted)
        counts.append(offset)
        offset += len(selection)
    np.savez(
        folder / "all_metadata.npz",
        counts=counts,
        scenes=list(kept),
        sceneids=sceneids,
        images=np.concatenate(images),
        intrinsics=np.concatenate(matrices),
        trajectories=np.concatenate(trajectories),
        pairs=np.concatenate(pairs),
    )


def test_arkitscenes_preprocessed_frames_read_back_exactly(tmp_path: Path, sequences) -> None:
    root = tmp_path / "processed_arkitscenes"
    write_arkitscenes(root, "Training", {"41069021": sequences[0], "41069025": sequences[1]})
    # The recipe's root ends in a slash; the high-res set is found beside it all the same.
    dataset = build_reader("arkitscenes", root=f"{root}/", num_views=4, **READ_OPTIONS)
    assert len(dataset) == 2 * FRAMES  # every frame heads a group of all the scene's frames
    handles = frames_of(dataset)
    stored = [(scene.name, name) for scene, name, *_ in dataset.frames]
    for handle, (scene, name) in zip(handles, stored, strict=True):
        frame_index = round((float(name[:-4].split("_")[-1]) - 999.7) / 0.1)
        image, depth, pose = sequences[["41069021", "41069025"].index(scene)][frame_index]
        assert_frame_equals(dataset.load_frame(handle), jpeg_decoded(image), depth, INTRINSICS, pose, 5e-4 + 1e-6)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 4)


def test_arkitscenes_leaves_out_scenes_the_highres_set_processed(tmp_path: Path, sequences) -> None:
    root = tmp_path / "processed_arkitscenes"
    write_arkitscenes(root, "Training", {"41069021": sequences[0], "41069025": sequences[1]})
    write_arkitscenes_highres(tmp_path / "processed_arkitscenes_highres", "Training", {"41069025": sequences[1]})
    dataset = build_reader("arkitscenes", root=f"{root}/", num_views=4, **READ_OPTIONS)
    assert {scene.name for scene, *_ in dataset.frames} == {"41069021"}


# ------------------------------------------------------------------------------------------ ARKitScenes high-res


def write_arkitscenes_highres(root: Path, split: str, scenes: dict[str, list]) -> None:
    """preprocess_arkitscenes_highres.py: ``{split}/{scene}/scene_metadata.npz`` (frames in time order, names
    of the depth files), ``vga_wide/*.jpg``, ``highres_depth/*.png`` (uint16 mm); ``{split}/scene_list.json``."""
    for scene, frames in scenes.items():
        out = root / split / scene
        names = [arkit_name(scene, f) for f in range(len(frames))]
        for name, (image, depth, _) in zip(names, frames, strict=True):
            save_jpeg(out / "vga_wide" / name.replace(".png", ".jpg"), image)
            save_png(out / "highres_depth" / name, millimetres(depth))
        row = [WIDTH, HEIGHT, INTRINSICS[0, 0], INTRINSICS[1, 1], INTRINSICS[0, 2], INTRINSICS[1, 2]]
        np.savez(
            out / "scene_metadata.npz",
            trajectories=[pose for _, _, pose in frames],
            intrinsics=[row] * len(frames),
            images=names,
        )
    (root / split / "scene_list.json").write_text(json.dumps(list(scenes)), encoding="utf-8")


def test_arkitscenes_highres_preprocessed_frames_read_back_in_time_order(tmp_path: Path, sequences) -> None:
    write_arkitscenes_highres(tmp_path, "Training", {"41069021": sequences[0], "41069025": sequences[1]})
    dataset = build_reader("arkitscenes_highres", root=str(tmp_path), num_views=4, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 4 + 1)
    truths = [frame for frames in sequences for frame in frames]
    for handle, (image, depth, pose) in zip(frames_of(dataset), truths, strict=True):
        assert_frame_equals(dataset.load_frame(handle), jpeg_decoded(image), depth, INTRINSICS, pose, 5e-4 + 1e-6)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 4)


def test_arkitscenes_highres_test_split_reads_validation(tmp_path: Path, sequences) -> None:
    write_arkitscenes_highres(tmp_path, "Validation", {"41069021": sequences[0]})
    dataset = build_reader("arkitscenes_highres", root=str(tmp_path), split="test", num_views=4, **READ_OPTIONS)
    assert [name for name, _ in dataset.sequences] == ["41069021"]


# -------------------------------------------------------------------------------------------------- ScanNet++

# Frames 0, 2, 4 of a scene are DSLR photos (COLMAP name DSC00101.JPG...), 1, 3, 5 iPhone frames.
SCANNETPP_NAMES = ["DSC00101", "frame_000010", "DSC00103", "frame_000030", "DSC00105", "frame_000050"]


def write_scannetpp(root: Path, scenes: dict[str, list]) -> None:
    """preprocess_scannetpp.py then generate_set_scannetpp.py: ``{scene}/images/{name}.jpg`` (a DSLR ``.JPG``
    saved as ``.jpg``), ``depth/{name}.png`` (uint16 mm by truncation), ``scene_metadata.npz`` (selection order,
    intrinsics in COLMAP's convention), ``new_scene_metadata.npz``; ``all_metadata.npz`` with every key."""
    offset, counts, sceneids, images, matrices, trajectories, pairs = 0, [], [], [], [], [], []
    for index, (scene, frames) in enumerate(scenes.items()):
        out = root / scene
        for name, (image, depth, _) in zip(SCANNETPP_NAMES, frames, strict=True):
            colmap_path = name + (".JPG" if name.startswith("DSC") else ".jpg")
            save_jpeg(out / "images" / (colmap_path[:-3] + "jpg"), image)
            save_png(out / "depth" / (colmap_path[:-3] + "png"), (depth * 1000).astype("uint16"))
        poses = np.stack([pose for _, _, pose in frames])
        intrinsics = np.stack([CONTINUOUS_INTRINSICS] * len(frames))
        scene_pairs = all_pairs(len(frames))
        selection = np.array(SCANNETPP_NAMES)
        np.savez(
            out / "scene_metadata.npz", trajectories=poses, intrinsics=intrinsics, images=selection, pairs=scene_pairs
        )
        timestamp = lambda n: int(n[3:]) if n.startswith("DSC") else int(n.split("_")[1])  # noqa: E731
        np.savez(
            out / "new_scene_metadata.npz",
            **sorted_collections(selection, poses, intrinsics, scene_pairs, timestamp, 150),
        )
        sceneids.extend([index] * len(frames))
        images.append(selection)
        matrices.append(intrinsics)
        trajectories.append(poses)
        shifted = scene_pairs.copy()
        shifted[:, 0:2] += offset
        pairs.append(shifted)
        counts.append(offset)
        offset += len(frames)
    np.savez(
        root / "all_metadata.npz",
        counts=counts,
        scenes=list(scenes),
        sceneids=sceneids,
        images=np.concatenate(images),
        intrinsics=np.concatenate(matrices),
        trajectories=np.concatenate(trajectories),
        pairs=np.concatenate(pairs),
    )


def test_scannetpp_preprocessed_frames_read_back_exactly(tmp_path: Path, sequences) -> None:
    write_scannetpp(tmp_path, {"036bce3393": sequences[0], "0a5c013435": sequences[1]})
    dataset = build_reader("scannetpp", root=f"{tmp_path}/", num_views=3, **READ_OPTIONS)
    assert len(dataset) == 2 * FRAMES  # every frame heads a group of the scene's frames
    for handle in frames_of(dataset):
        scene, name, *_ = dataset.frames[handle]
        s = ["036bce3393", "0a5c013435"].index(scene.name)
        image, depth, pose = sequences[s][SCANNETPP_NAMES.index(name)]
        assert_frame_equals(dataset.load_frame(handle), jpeg_decoded(image), depth, INTRINSICS, pose, MM_STEP)
    for clip in read_clips(dataset, 6):
        check_clip(clip, 3)


# --------------------------------------------------------------------------------------------------- Hypersim


def write_hypersim(root: Path, scenes: dict[str, list]) -> None:
    """preprocess_hypersim.py: ``{scene}/{camera}/{frame:06d}_rgb.png``, ``_depth.npy`` (float32, NaN where no
    geometry), ``_cam.npz`` (float32 ``intrinsics`` from the projection, ``pose``). A camera whose renders are
    missing leaves an empty folder, a scene with a skewed projection an empty scene folder; frames with a
    non-finite pose are skipped (here frame 3), so numbers have gaps."""
    for scene, frames in scenes.items():
        camera = root / scene / "cam_00"
        camera.mkdir(parents=True)
        (root / scene / "cam_01").mkdir()
        for f, (image, depth, pose) in enumerate(frames):
            if f == 3:
                continue
            Image.fromarray(image).save(camera / f"{f:06d}_rgb.png")
            holes = depth.astype(np.float32)
            holes[:2] = np.nan
            np.save(camera / f"{f:06d}_depth.npy", holes)
            np.savez(
                camera / f"{f:06d}_cam.npz",
                intrinsics=CONTINUOUS_INTRINSICS.astype(np.float32),
                pose=pose.astype(np.float32),
            )
    (root / "ai_055_009").mkdir()


def test_hypersim_preprocessed_frames_read_back_exactly(tmp_path: Path, sequences) -> None:
    write_hypersim(tmp_path, {"ai_001_001": sequences[0], "ai_001_002": sequences[1]})
    dataset = build_reader("hypersim", root=str(tmp_path), num_views=4, **READ_OPTIONS)
    assert [name for name, _ in dataset.sequences] == ["ai_001_001/cam_00", "ai_001_002/cam_00"]
    truths = [frame for frames in sequences for f, frame in enumerate(frames) if f != 3]
    expected_intrinsics = CONTINUOUS_INTRINSICS.astype(np.float32) - np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
    for handle, (image, depth, pose) in zip(frames_of(dataset), truths, strict=True):
        frame = dataset.load_frame(handle)
        assert (frame.depth[:2] == 0).all()
        visible = depth.copy()
        visible[:2] = 0
        assert_frame_equals(frame, image, visible, expected_intrinsics, pose.astype(np.float32))
    for clip in read_clips(dataset, 4):
        check_clip(clip, 4)


# ----------------------------------------------------------------------------------------------- Co3D, WildRGB-D


def object_mask() -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.float32)
    mask[:, : WIDTH // 2] = 1.0
    return mask


def write_co3d(root: Path, split: str, sequences: dict[str, list]) -> dict[str, list[int]]:
    """preprocess_co3d.py: ``{cat}/{seq}/images/frame{id:06d}.jpg`` and ``.npz`` (``camera_intrinsics``,
    float32 ``camera_pose``, ``maximum_depth``), ``depths/frame{id:06d}.jpg.geometric.png`` (uint16
    ``depth / max * 65535`` truncated), ``masks/frame{id:06d}.png``; ``{cat}/selected_seqs_{split}.json`` and
    ``selected_seqs_{split}.json`` over all categories, including ones where no sequence was good enough."""
    selected = {}
    for sequence, frames in sequences.items():
        folder = root / "teddybear" / sequence
        ids = [5 * f + 1 for f in range(len(frames))]
        selected[sequence] = ids
        for i, (image, depth, pose) in zip(ids, frames, strict=True):
            save_jpeg(folder / "images" / f"frame{i:06d}.jpg", image)
            maximum = np.max(depth.astype(np.float32))
            save_png(folder / "depths" / f"frame{i:06d}.jpg.geometric.png", (depth / maximum * 65535).astype(np.uint16))
            save_png(folder / "masks" / f"frame{i:06d}.png", (object_mask() * 255).astype(np.uint8))
            savez(
                folder / "images" / f"frame{i:06d}.npz",
                camera_intrinsics=INTRINSICS,
                camera_pose=pose.astype(np.float32),
                maximum_depth=maximum,
            )
    (root / "teddybear" / f"selected_seqs_{split}.json").write_text(json.dumps(selected), encoding="utf-8")
    (root / "apple").mkdir(exist_ok=True)
    (root / "apple" / f"selected_seqs_{split}.json").write_text("{}", encoding="utf-8")
    index = {"apple": {}, "teddybear": selected}
    (root / f"selected_seqs_{split}.json").write_text(json.dumps(index), encoding="utf-8")
    return selected


def test_co3d_preprocessed_frames_read_back_exactly(tmp_path: Path, sequences) -> None:
    write_co3d(tmp_path, "train", {"110_13051_23361": sequences[0], "34_1479_4753": sequences[1]})
    dataset = build_reader("co3d", root=str(tmp_path), num_views=3, mask_background=0.0, **READ_OPTIONS)
    assert len(dataset) == 2 * (FRAMES - 3 + 1)
    truths = {"110_13051_23361": sequences[0], "34_1479_4753": sequences[1]}
    for name, handles in dataset.sequences:
        for handle, (image, depth, pose) in zip(handles, truths[name.split("/")[1]], strict=True):
            step = float(depth.max()) / 65535 + 1e-6
            frame = dataset.load_frame((*handle, False))
            assert_frame_equals(frame, jpeg_decoded(image), depth, INTRINSICS, pose.astype(np.float32), step)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 3)


def test_co3d_test_split_reads_its_own_index(tmp_path: Path, sequences) -> None:
    write_co3d(tmp_path, "train", {"110_13051_23361": sequences[0]})
    write_co3d(tmp_path, "test", {"34_1479_4753": sequences[1]})
    dataset = build_reader("co3d", root=str(tmp_path), split="test", num_views=3, **READ_OPTIONS)
    assert [name for name, _ in dataset.sequences] == ["teddybear/34_1479_4753"]


def write_wildrgbd(root: Path, split: str, sequences: dict[tuple[str, str], list]) -> None:
    """preprocess_wildrgbd.py: sequence names from the set lists are ``scenes/scene_{n:03d}``, so each lives at
    ``{cat}/scenes/scene_{n}/``: ``rgb/{id:05d}.jpg``, ``depth/{id:05d}.png`` (uint16 mm), ``masks/``,
    ``metadata/{id:05d}.npz`` (float64 ``camera_intrinsics``, ``camera_pose``); per category and overall
    ``selected_seqs_{split}.json``."""
    index: dict[str, dict[str, list[int]]] = {}
    for (category, sequence), frames in sequences.items():
        folder = root / category / sequence
        ids = [3 * f for f in range(len(frames))]
        index.setdefault(category, {})[sequence] = ids
        for i, (image, depth, pose) in zip(ids, frames, strict=True):
            save_jpeg(folder / "rgb" / f"{i:0>5d}.jpg", image)
            save_png(folder / "depth" / f"{i:0>5d}.png", millimetres(depth))
            save_png(folder / "masks" / f"{i:0>5d}.png", (object_mask() * 255).astype(np.uint8))
            savez(folder / "metadata" / f"{i:0>5d}.npz", camera_intrinsics=INTRINSICS, camera_pose=pose)
    for category, selected in index.items():
        (root / category / f"selected_seqs_{split}.json").write_text(json.dumps(selected), encoding="utf-8")
    (root / f"selected_seqs_{split}.json").write_text(json.dumps(index), encoding="utf-8")


def test_wildrgbd_preprocessed_frames_read_back_exactly(tmp_path: Path, sequences) -> None:
    write_wildrgbd(
        tmp_path, "train", {("mug", "scenes/scene_000"): sequences[0], ("toy", "scenes/scene_012"): sequences[1]}
    )
    dataset = build_reader("wildrgbd", root=str(tmp_path), num_views=3, mask_background=0.0, **READ_OPTIONS)
    assert [name for name, _ in dataset.sequences] == ["mug/scenes/scene_000", "toy/scenes/scene_012"]
    for (_, handles), frames in zip(dataset.sequences, sequences, strict=True):
        for handle, (image, depth, pose) in zip(handles, frames, strict=True):
            frame = dataset.load_frame((*handle, False))
            assert_frame_equals(frame, jpeg_decoded(image), depth, INTRINSICS, pose, 5e-4 + 1e-6)
    for clip in read_clips(dataset, 4):
        check_clip(clip, 3)
        assert bool(clip["is_metric"])


def test_wildrgbd_leaves_out_the_scene_the_reference_drops(tmp_path: Path, sequences) -> None:
    write_wildrgbd(
        tmp_path, "train", {("box", "scenes/scene_257"): sequences[0], ("box", "scenes/scene_258"): sequences[1]}
    )
    dataset = build_reader("wildrgbd", root=str(tmp_path), num_views=3, **READ_OPTIONS)
    assert [name for name, _ in dataset.sequences] == ["box/scenes/scene_258"]
    assert len(dataset) == FRAMES - 3 + 1


def test_arkitscenes_highres_skips_frames_the_preprocess_listed_without_files(tmp_path: Path, sequences) -> None:
    # A depth whose image the script matched 1 ms away stays in scene_metadata.npz, but it then looked for the
    # image under the depth's name and wrote neither file.
    write_arkitscenes_highres(tmp_path, "Training", {"41069021": sequences[0]})
    scene = tmp_path / "Training" / "41069021"
    unwritten = arkit_name("41069021", 2)
    (scene / "vga_wide" / unwritten.replace(".png", ".jpg")).unlink()
    (scene / "highres_depth" / unwritten).unlink()
    dataset = build_reader("arkitscenes_highres", root=str(tmp_path), num_views=4, **READ_OPTIONS)
    assert [name for _, name, *_ in dataset.sequences[0][1]] == [
        arkit_name("41069021", f) for f in range(FRAMES) if f != 2
    ]
    for clip in read_clips(dataset, 6):
        check_clip(clip, 4)
