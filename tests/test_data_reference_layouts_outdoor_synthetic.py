"""The outdoor and synthetic readers on folders written file for file as the reference's preprocess scripts
(``datasets_preprocess/preprocess_<name>.py``) and CUT3R's index files leave them, read with the recipe's splits
(the reference's ``config/train.yaml``).

Each writer here follows its script, not our readers: the same names and nesting, the dtypes the script's
arithmetic produces (float32 poses from ``np.linalg.inv`` of float32 extrinsics, float32 intrinsics), the
compressed or plain ``.npz``, what the script copies byte for byte (MVS-Synth's PNG frames copied to ``.jpg``
names), the side folders it also fills (Spring's optical flow) and the index files as the reference readers
decode them (byte strings in ``.h5``, object arrays in ``.npz``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamvggt.train.data.mix import build_reader
from tests.layout_helpers import (
    FRAMES,
    INTRINSICS,
    READ_OPTIONS,
    assert_frame_equals,
    assert_relative_poses,
    check_clip,
    read_clips,
    render_sequence,
)

h5py = pytest.importorskip("h5py")
OpenEXR = pytest.importorskip("OpenEXR")

# The recipe's splits: config/train.yaml passes these to the reference readers.
RECIPE_SPLITS = {
    "blendedmvs": "train",
    "megadepth": "train",
    "waymo": None,
    "vkitti2": None,
    "omniobject3d": None,
    "spring": None,
    "mvs_synth": "train",
    "pointodyssey": "train",
}


@pytest.fixture(scope="module")
def sequences() -> list:
    return [render_sequence(seed) for seed in (71, 72)]


def write_exr_like_opencv(path: Path, depth: np.ndarray) -> None:
    """What ``cv2.imwrite(path, float32 [H, W])`` writes (checked against OpenCV 4.10): one FLOAT channel named
    ``Y``, ZIP compression, scanlines."""
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"Y": np.ascontiguousarray(depth, dtype=np.float32)}).write(str(path))


def write_jpeg(path: Path, image: np.ndarray, quality: int) -> np.ndarray:
    """A PIL JPEG as the scripts save it; returns the pixels a decoder gets back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=quality)
    with Image.open(path) as stored:
        return np.asarray(stored.convert("RGB"))


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def script_pose(cam_to_world: np.ndarray) -> np.ndarray:
    """The camera-to-world a script stores from a raw dataset's float32 world-to-camera extrinsics: their
    ``np.linalg.inv``, float32 [4, 4]."""
    return np.linalg.inv(np.linalg.inv(cam_to_world).astype(np.float32))


def read_back(image_path: Path) -> np.ndarray:
    with Image.open(image_path) as stored:
        return np.asarray(stored.convert("RGB"))


# --- BlendedMVS: preprocess_blendedmvs.py + CUT3R's new_overlap.h5 -------------------------------------------------

BLENDED_SCENE = "5c0d13b795da9479e12e2ee9"  # 24 characters, as the script lists them


def write_blendedmvs(root: Path, frames, basename_dtype) -> list[np.ndarray]:
    stored = []
    basenames = [f"{v:08d}" for v in range(len(frames))]
    for name, (image, depth, pose) in zip(basenames, frames, strict=True):
        folder = root / BLENDED_SCENE
        stored.append(write_jpeg(folder / f"{name}.jpg", image, quality=80))
        write_exr_like_opencv(folder / f"{name}.exr", depth)
        # _load_pose: float32 world-to-camera inverted; R and t split out; the crop's R_in2out is the identity.
        cam_to_world = script_pose(pose)
        np.savez(
            folder / f"{name}.npz",
            intrinsics=INTRINSICS.astype(np.float32),
            R_cam2world=cam_to_world[:3, :3],
            t_cam2world=cam_to_world[:3, 3],
        )
    # Overlap scores of the whole scene, the diagonal included (a view overlaps itself fully).
    scores = np.zeros((len(frames), len(frames)), dtype=np.float32)
    for i in range(len(frames)):
        for j in range(len(frames)):
            scores[i, j] = max(0.0, 1.0 - 0.15 * abs(i - j))
    # A scene the script processed but the index leaves out, and the pairs file the script checked against.
    write_jpeg(root / "5c0d13b795da9479e12e2eea" / "00000000.jpg", frames[0][0], quality=80)
    np.save(root / "blendedmvs_pairs.npy", np.zeros((1, 5), dtype=np.int64))
    rows, cols = np.nonzero(scores)
    with h5py.File(root / "new_overlap.h5", "w") as h5:
        group = h5.create_group(BLENDED_SCENE)
        group.create_dataset("basenames", data=np.array([n.encode() for n in basenames], dtype=basename_dtype))
        group.create_dataset("indices", data=np.stack([rows, cols]).astype(np.int32))
        group.create_dataset("values", data=scores[rows, cols])
        group.attrs["shape"] = np.array(scores.shape)
    return stored


@pytest.mark.parametrize("basename_dtype", ["S8", h5py.string_dtype("ascii")], ids=["fixed", "variable"])
def test_blendedmvs_reads_the_preprocessed_scene_with_byte_basenames(tmp_path: Path, sequences, basename_dtype) -> None:
    frames = sequences[0]
    stored = write_blendedmvs(tmp_path, frames, basename_dtype)
    dataset = build_reader("blendedmvs", root=str(tmp_path), split=RECIPE_SPLITS["blendedmvs"], num_views=3)
    assert len(dataset) == FRAMES
    for view, (_, depth, pose) in enumerate(frames):
        frame = dataset.load_frame((0, view))
        assert_frame_equals(frame, stored[view], depth, INTRINSICS, script_pose(pose), depth_atol=0)
    reader = build_reader("blendedmvs", root=str(tmp_path), num_views=3, **READ_OPTIONS)
    for clip in read_clips(reader, 3):
        check_clip(clip, 3)


# --- MegaDepth: preprocess_megadepth.py + CUT3R's megadepth_sets_64.npz --------------------------------------------


def write_megadepth(root: Path, frames, names_dtype) -> list[str]:
    """Scene 0001 (subscene 0) with 64 photos, and held-out scene 0015 (subscene 1) with 64 more; photos are
    named as in images.txt (with their extension), so the files are ``{tag}.jpg``, ``{tag}.exr``, ``{tag}.npz``."""
    scenes = np.array(["0001 0", "0015 1"], dtype=object)
    images, first = [], {}
    for scene in scenes:
        first[scene] = len(images)
        folder = root.joinpath(*scene.split())
        for k in range(64):
            tag = f"{1000 + k}_{scene[:4]}a9f_o.jpg"
            image, depth, pose = frames[k % len(frames)]
            write_jpeg(folder / f"{tag}.jpg", image, quality=90)
            write_exr_like_opencv(folder / f"{tag}.exr", depth)
            np.savez(folder / f"{tag}.npz", intrinsics=INTRINSICS, cam2world=pose)
            images.append(tag)
        # The script converts every photo of the subscene, also those in no set.
        write_jpeg(folder / "9999_unlisted_o.jpg.jpg", frames[0][0], quality=90)
    sets = np.array([[s, *range(first[name], first[name] + 64)] for s, name in enumerate(scenes)], dtype=np.int32)
    np.savez(
        root / "megadepth_sets_64.npz",
        scenes=scenes.astype(names_dtype),
        images=np.array(images, dtype=names_dtype),
        sets=sets,
    )
    return images


@pytest.mark.parametrize("names_dtype", [object, str], ids=["object", "unicode"])
def test_megadepth_reads_the_sets_index_and_double_extension_files(tmp_path: Path, sequences, names_dtype) -> None:
    frames = sequences[0]
    images = write_megadepth(tmp_path, frames, names_dtype)
    dataset = build_reader("megadepth", root=str(tmp_path), split=RECIPE_SPLITS["megadepth"], num_views=3)
    assert len(dataset) == 1 and dataset.sets[0][0] == 0  # the 0015 set is held out
    assert len(dataset.images) == 128
    for k in (0, 7):
        _, depth, pose = frames[k % len(frames)]
        stored = read_back(tmp_path / "0001" / "0" / f"{images[k]}.jpg")
        assert_frame_equals(dataset.load_frame((0, k)), stored, depth, INTRINSICS, pose)
    val = build_reader("megadepth", root=str(tmp_path), split="val", num_views=3)
    assert [int(s[0]) for s in val.sets] == [1]
    reader = build_reader("megadepth", root=str(tmp_path), split="train", num_views=3, **READ_OPTIONS)
    for clip in read_clips(reader, 2):
        check_clip(clip, 3)


# --- Waymo: preprocess_waymo.py + CUT3R's invalid_files.h5 ---------------------------------------------------------

SEGMENT = "segment-10017090168044687777_6380_000_6400_000_with_camera_labels.tfrecord"
OTHER_SEGMENT = "segment-10023947602400723454_1120_000_1140_000_with_camera_labels.tfrecord"


def write_waymo(root: Path, frames, invalid: list[str], pairs_dtype) -> list[np.ndarray]:
    """Cameras 1, 4 and 5 of one segment (folders keep the .tfrecord name); views ``invalid`` ("{cam}_{frame}")
    listed in invalid_files.h5; a second segment with no entry in it."""
    stored = []
    for segment in (SEGMENT, OTHER_SEGMENT):
        for f, (image, depth, pose) in enumerate(frames):
            for camera in (1, 4, 5):
                stem = root / segment / f"{f:05d}_{camera}"
                pixels = write_jpeg(stem.with_suffix(".jpg"), image, quality=80)
                if segment == SEGMENT and camera == 1:
                    stored.append(pixels)
                write_exr_like_opencv(stem.with_suffix(".exr"), depth)
                distortion = np.array([-0.3, 0.1, 1e-4, -2e-4, 0.0])
                np.savez(stem.with_suffix(".npz"), intrinsics=INTRINSICS, cam2world=pose, distortion=distortion)
    with h5py.File(root / "invalid_files.h5", "w") as h5:
        pairs = np.array([s.encode() for s in invalid], dtype=pairs_dtype)
        h5.create_group(SEGMENT).create_dataset("invalid_pairs", data=pairs)
    return stored


@pytest.mark.parametrize("pairs_dtype", ["S7", h5py.string_dtype("ascii")], ids=["fixed", "variable"])
def test_waymo_reads_tfrecord_named_segments_and_skips_listed_views(tmp_path: Path, sequences, pairs_dtype) -> None:
    frames = sequences[1]
    stored = write_waymo(tmp_path, frames, ["1_00002", "4_00005"], pairs_dtype)
    dataset = build_reader("waymo", root=str(tmp_path), split=RECIPE_SPLITS["waymo"], num_views=3)
    lengths = {name: len(frames_) for name, frames_ in dataset.sequences}
    assert lengths == {
        f"{SEGMENT}/1": FRAMES - 1,
        f"{SEGMENT}/4": FRAMES - 1,
        f"{OTHER_SEGMENT}/1": FRAMES,
        f"{OTHER_SEGMENT}/4": FRAMES,
    }
    kept = dict(dataset.sequences)[f"{SEGMENT}/1"]
    assert [frame for _, frame, _ in kept] == ["00000", "00001", "00003", "00004", "00005"]
    _, depth, pose = frames[3]
    assert_frame_equals(dataset.load_frame(kept[2]), stored[3], depth, INTRINSICS, pose)
    reader = build_reader("waymo", root=str(tmp_path), num_views=3, **READ_OPTIONS)
    for clip in read_clips(reader, 2):
        check_clip(clip, 3)


# --- Virtual KITTI 2: CUT3R's processed folders (the reference has no script for it) -------------------------------


def test_vkitti2_reads_every_scene_with_the_recipe_split(tmp_path: Path, sequences) -> None:
    for scene, frames in zip(("Scene01", "Scene20"), sequences, strict=True):
        for camera in ("Camera_0", "Camera_1"):
            folder = tmp_path / scene / "15-deg-left" / camera
            for f, (image, depth, pose) in enumerate(frames):
                write_jpeg(folder / f"{f:05d}_rgb.jpg", image, quality=95)
                centimetres = np.where(depth > 0, np.round(depth * 100), 65535).astype(np.uint16)
                Image.fromarray(centimetres).save(folder / f"{f:05d}_depth.png")
                np.savez(folder / f"{f:05d}_cam.npz", camera_intrinsics=INTRINSICS, camera_pose=pose)
    dataset = build_reader("vkitti2", root=str(tmp_path), split=RECIPE_SPLITS["vkitti2"], num_views=2, **READ_OPTIONS)
    assert sorted(name for name, _ in dataset.sequences) == [
        "Scene01/15-deg-left/Camera_0",
        "Scene01/15-deg-left/Camera_1",
        "Scene20/15-deg-left/Camera_0",
        "Scene20/15-deg-left/Camera_1",
    ]
    image, depth, pose = sequences[0][4]
    frame = dataset.load_frame((tmp_path / "Scene01" / "15-deg-left" / "Camera_0", "00004"))
    stored = read_back(tmp_path / "Scene01" / "15-deg-left" / "Camera_0" / "00004_rgb.jpg")
    assert_frame_equals(frame, stored, depth, INTRINSICS, pose, depth_atol=5e-3)
    for clip in read_clips(dataset, 2):
        check_clip(clip, 2)


# --- Spring: preprocess_spring.py ----------------------------------------------------------------------------------


def write_spring(root: Path, frames, sequence: str = "0001") -> None:
    folder = root / sequence
    for i, (image, depth, pose) in enumerate(frames):
        write_png(folder / "rgb" / f"{i:04d}.png", image)
        (folder / "depth").mkdir(parents=True, exist_ok=True)
        np.save(folder / "depth" / f"{i:04d}.npy", depth.astype(np.float32))
        (folder / "cam").mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / "cam" / f"{i:04d}.npz",
            intrinsics=INTRINSICS.astype(np.float32),
            pose=script_pose(pose),
        )
        flow = np.zeros((*depth.shape, 2), dtype=np.float32)
        if i < len(frames) - 1:
            (folder / "flow_forward").mkdir(exist_ok=True)
            np.save(folder / "flow_forward" / f"{i:04d}.npy", flow)
        if i > 0:
            (folder / "flow_backward").mkdir(exist_ok=True)
            np.save(folder / "flow_backward" / f"{i:04d}.npy", flow)


def test_spring_reads_with_the_recipe_split_none(tmp_path: Path, sequences) -> None:
    frames = sequences[0]
    write_spring(tmp_path, frames)
    dataset = build_reader("spring", root=str(tmp_path), split=RECIPE_SPLITS["spring"], num_views=3, **READ_OPTIONS)
    assert len(dataset) == FRAMES - 3 + 1
    image, depth, pose = frames[2]
    frame = dataset.load_frame((tmp_path / "0001", "0002"))
    assert_frame_equals(frame, image, depth, INTRINSICS, script_pose(pose), depth_atol=0)
    for clip in read_clips(dataset, 2):
        check_clip(clip, 3)


# --- MVS-Synth: preprocess_mvs_synth.py ----------------------------------------------------------------------------

# The script's world change: x and y swapped.
R_CONV = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float32)


def test_mvs_synth_reads_png_frames_copied_to_jpg_names(tmp_path: Path, sequences) -> None:
    frames = sequences[1]
    folder = tmp_path / "0000"
    for i, (image, depth, pose) in enumerate(frames):
        name = f"{i:04d}"
        raw = tmp_path / "raw" / f"{name}.png"
        write_png(raw, image)
        (folder / "rgb").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(raw, folder / "rgb" / f"{name}.jpg")  # PNG bytes under a .jpg name, as the script copies
        (folder / "depth").mkdir(exist_ok=True)
        np.save(folder / "depth" / f"{name}.npy", np.where(depth > 0, depth, np.inf).astype(np.float32))
        (folder / "cam").mkdir(exist_ok=True)
        extrinsic = np.linalg.inv(pose)  # the JSON's extrinsic (float64)
        np.savez(
            folder / "cam" / f"{name}.npz",
            intrinsics=INTRINSICS.astype(np.float32),
            pose=R_CONV @ np.linalg.inv(extrinsic),
        )
    shutil.rmtree(tmp_path / "raw")
    dataset = build_reader("mvs_synth", root=str(tmp_path), split=RECIPE_SPLITS["mvs_synth"], num_views=3)
    frame = dataset.load_frame((folder, "0001"))
    image, depth, pose = frames[1]
    np.testing.assert_array_equal(frame.image, image)  # lossless: the stored bytes are a PNG
    # The 98th percentile of the frame's depth and above is dropped, the rest is as stored.
    kept = (depth > 0) & (depth <= np.percentile(depth[depth > 0], 98))
    np.testing.assert_allclose(frame.depth[kept], depth[kept], rtol=0, atol=1e-5)
    assert (frame.depth[~kept] == 0).all() and 0.01 < (~kept & (depth > 0)).mean() < 0.03
    np.testing.assert_allclose(frame.cam_to_world, R_CONV @ pose, atol=1e-6)
    reader = build_reader("mvs_synth", root=str(tmp_path), num_views=3, **READ_OPTIONS)
    for clip in read_clips(reader, 2):
        check_clip(clip, 3)
    handles, _ = reader.clip_frames(1, np.random.default_rng(5))
    clip = reader.clip(1, (28, 28), np.random.default_rng(5))
    assert_relative_poses(clip, [frames[int(base)][2] for _, base in handles])


# --- PointOdyssey: preprocess_point_odyssey.py ---------------------------------------------------------------------


def test_pointodyssey_reads_copied_jpegs_and_sixteen_bit_depth_scaled_to_1000(tmp_path: Path, sequences) -> None:
    frames = sequences[0]
    for scene in ("kg", "cab_h_bench_3rd"):  # the second is not among the reference's training scenes
        folder = tmp_path / "train" / scene
        for i, (image, depth, pose) in enumerate(frames):
            raw = tmp_path / "raw" / f"rgb_{i:05d}.jpg"
            write_jpeg(raw, image, quality=95)
            basename = raw.name.split(".")[0].split("_")[-1]
            (folder / "rgb").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(raw, folder / "rgb" / f"{basename}.jpg")
            depth_16bit = np.round(depth / 1000.0 * 65535.0).astype(np.uint16)
            (folder / "depth").mkdir(exist_ok=True)
            np.save(folder / "depth" / f"{basename}.npy", depth_16bit.astype(np.float32) / 65535.0 * 1000.0)
            (folder / "cam").mkdir(exist_ok=True)
            np.savez(
                folder / "cam" / f"{basename}.npz",
                intrinsics=INTRINSICS.astype(np.float32),
                pose=script_pose(pose),
            )
    shutil.rmtree(tmp_path / "raw")
    dataset = build_reader(
        "pointodyssey", root=str(tmp_path), split=RECIPE_SPLITS["pointodyssey"], num_views=3, **READ_OPTIONS
    )
    assert [name for name, _ in dataset.sequences] == ["kg"]
    image, depth, pose = frames[3]
    frame = dataset.load_frame((tmp_path / "train" / "kg", "00003"))
    stored = read_back(tmp_path / "train" / "kg" / "rgb" / "00003.jpg")
    # One 16-bit step is 1000 / 65535 m (15 mm): half of it is the quantisation.
    assert_frame_equals(frame, stored, depth, INTRINSICS, script_pose(pose), depth_atol=1000.0 / 65535.0 / 2 + 1e-5)
    for clip in read_clips(dataset, 2):
        check_clip(clip, 3)


# --- OmniObject3D: preprocess_omniobject3d.py + CUT3R's scale.json -------------------------------------------------


def test_omniobject3d_reads_with_the_recipe_split_none_in_numeric_frame_order(tmp_path: Path, sequences) -> None:
    frames = sequences[1] + sequences[1][:6]  # twelve turntable frames: r_0 ... r_11
    scale = 0.37
    folder = tmp_path / "anise_001"
    for n, (image, depth, pose) in enumerate(frames):
        name = f"r_{n}"
        write_png(folder / "rgb" / f"{name}.png", image)
        (folder / "depth").mkdir(exist_ok=True)
        np.save(folder / "depth" / f"{name}.npy", (depth * 1000.0 * scale).astype(np.float32))
        stored_pose = pose.astype(np.float32)
        stored_pose[:3, 3] *= 1000.0 * scale
        (folder / "cam").mkdir(exist_ok=True)
        np.savez_compressed(folder / "cam" / f"{name}.npz", intrinsics=INTRINSICS.astype(np.float32), pose=stored_pose)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "scale.json").write_text(json.dumps({"anise_001": scale}))
    dataset = build_reader(
        "omniobject3d", root=str(tmp_path), split=RECIPE_SPLITS["omniobject3d"], num_views=3, **READ_OPTIONS
    )
    order = [base for _, base in dataset.sequences[0][1]]
    assert order == [f"r_{n}" for n in range(12)]
    image, depth, pose = frames[10]
    frame = dataset.load_frame((folder, "r_10"))
    expected_pose = pose.astype(np.float32).astype(np.float64)
    expected_pose[:3, 3] = (expected_pose[:3, 3].astype(np.float32) * np.float32(1000.0 * scale)) / (1000.0 * scale)
    assert_frame_equals(frame, image, depth, INTRINSICS, expected_pose, depth_atol=1e-5)
    for clip in read_clips(dataset, 2):
        check_clip(clip, 3)
