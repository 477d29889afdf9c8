"""Readers for the CUT3R-processed on-disk layouts (every camera OpenCV, every pose camera-to-world 4x4).

- ``generic``: ``ROOT/[split/]{scene}/rgb/{b}.png|jpg``, ``depth/{b}.npy`` (float, metres), ``cam/{b}.npz``
  (``pose``, ``intrinsics``): users' own data (the four synthetic sets have readers in synthetic_layouts).
- ``scannet``: ``ROOT/scans_{train|test}/scene*/new_scene_metadata.npz`` (``images``: basenames),
  ``color/{b}.jpg``, ``depth/{b}.png`` (uint16 mm), ``cam/{b}.npz`` (``pose``, ``intrinsics``).
- ``arkitscenes``: ``ROOT/{Training|Test}/all_metadata.npz`` (``scenes``); per scene ``new_scene_metadata.npz``
  (``images``, ``intrinsics`` rows ``(w, h, fx, fy, cx, cy)``, ``trajectories``, ``image_collection``),
  ``vga_wide/*.jpg``, ``lowres_depth/*.png`` (uint16 mm).
- ``co3d``: ``ROOT/selected_seqs_{split}.json`` ({category: {sequence: [frame ids]}});
  ``{cat}/{seq}/images/frame{id:06d}.jpg`` and ``.npz`` (``camera_pose``, ``camera_intrinsics``,
  ``maximum_depth``), ``depths/frame{id:06d}.jpg.geometric.png`` (uint16, v / 65535 * maximum_depth),
  ``masks/frame{id:06d}.png``.
- ``wildrgbd``: as ``co3d`` with ``{cat}/{seq}/rgb/{id:05d}.jpg``, ``depth/{id:05d}.png`` (uint16 mm),
  ``metadata/{id:05d}.npz``, ``masks/{id:05d}.png``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from streamvggt.train.data import scene_files
from streamvggt.train.data.base import Frame, MultiViewDataset, SequenceDataset
from streamvggt.train.data.sampling import ClipSampling

logger = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_rgb(path: Path) -> np.ndarray:
    """An image file as [H, W, 3] uint8 RGB."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def read_uint16(path: Path) -> np.ndarray:
    """A 16-bit PNG (depth) as [H, W] float32 of its raw values."""
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.uint16).astype(np.float32)


def _sampling(options: dict[str, Any] | None, default: ClipSampling) -> ClipSampling:
    if not options:
        return default
    merged = {**default.__dict__, **options}
    try:
        return ClipSampling(**merged)
    except TypeError as error:
        raise ValueError(f"bad sampling options {options}: {error}") from None


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


class GenericDataset(SequenceDataset):
    """Folders of ``rgb/``, ``depth/`` (.npy metres) and ``cam/`` (.npz ``pose``, ``intrinsics``) per scene."""

    name = "generic"

    def __init__(
        self,
        root: str,
        num_views: int,
        split: str = "train",
        split_folder: bool = False,
        is_metric: bool = True,
        static: bool = False,
        sampling: dict[str, Any] | None = None,
        aug_crop: int = 16,
        color_jitter: bool = True,
        name: str = "generic",
    ) -> None:
        """split_folder: scenes live under ``root/split`` (PointOdyssey) rather than ``root`` (Spring).
        static: whether the scenes are rigid (dynamic ones must not get depth-derived track targets)."""
        super().__init__(num_views, aug_crop, color_jitter)
        self.name, self.is_metric, self.static = name, is_metric, static
        self.sampling = _sampling(sampling, ClipSampling(max_interval=16, video_prob=1.0, fixed_interval_prob=1.0))
        base = _require(Path(root) / split if split_folder else Path(root), "dataset folder")
        for scene in sorted(p for p in base.iterdir() if (p / "rgb").is_dir()):
            images = sorted(p for p in (scene / "rgb").iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            self.sequences.append((scene.name, images))
        self.index_sequences()

    def load_frame(self, handle: Path) -> Frame:
        scene, stem = handle.parent.parent, handle.stem
        depth = np.load(scene / "depth" / f"{stem}.npy").astype(np.float32)
        with np.load(scene / "cam" / f"{stem}.npz") as cam:
            return Frame(image=read_rgb(handle), depth=depth, intrinsics=cam["intrinsics"], cam_to_world=cam["pose"])


class ScanNetDataset(SequenceDataset):
    """ScanNet as processed by CUT3R: metric, video-like clips with strides up to 30 frames."""

    name = "scannet"

    def __init__(
        self,
        root: str,
        num_views: int,
        split: str = "train",
        sampling: dict[str, Any] | None = None,
        aug_crop: int = 16,
        color_jitter: bool = True,
    ) -> None:
        super().__init__(num_views, aug_crop, color_jitter)
        default = ClipSampling(max_interval=30, video_prob=0.6, fixed_interval_prob=0.6, block_shuffle=16)
        self.sampling = _sampling(sampling, default)
        base = _require(Path(root) / ("scans_train" if split == "train" else "scans_test"), "ScanNet split folder")
        for scene in sorted(p for p in base.iterdir() if p.name.startswith("scene")):
            # CUT3R may store the names as an object array: a pickle (of strings) in the user's own data files.
            with np.load(scene / "new_scene_metadata.npz", allow_pickle=True) as meta:
                names = [str(b) for b in meta["images"]]
            self.sequences.append((scene.name, [(scene, b) for b in names]))
        self.index_sequences()

    def load_frame(self, handle: tuple[Path, str]) -> Frame:
        scene, base = handle
        depth = read_uint16(scene / "depth" / f"{base}.png") / 1000.0
        with np.load(scene / "cam" / f"{base}.npz") as cam:
            return Frame(
                image=read_rgb(scene / "color" / f"{base}.jpg"),
                depth=depth,
                intrinsics=cam["intrinsics"],
                cam_to_world=cam["pose"],
            )


class ARKitScenesDataset(MultiViewDataset):
    """ARKitScenes (low-resolution depth) as processed by CUT3R: metric, static.

    A clip is, with even odds, a video-like run from a random frame of the scene (strides up to 8) or
    ``num_views`` shuffled frames of a co-visible group from ``image_collection``. Scenes of the split that are
    also in the high-resolution variant (a folder of that name in ``{root}_highres/Training``, or
    ``{root}_highres/Validation`` for the test split) are left out, as in the reference mix, so that no scene is
    counted twice; without that folder nothing is left out. Scenes come in sorted order.

    Deviations from the reference reader (bugs there): the video run comes from the group's own scene (the
    reference indexes a per-frame table with the group number, so it picks the scene of an unrelated frame), and
    a group of exactly ``num_views`` frames gives each of them once (the reference draws them with replacement).
    """

    name = "arkitscenes"
    is_metric = True
    static = True

    def __init__(
        self,
        root: str,
        num_views: int,
        split: str = "train",
        exclude_highres: bool = True,
        sampling: dict[str, Any] | None = None,
        aug_crop: int = 16,
        color_jitter: bool = True,
    ) -> None:
        super().__init__(num_views, aug_crop, color_jitter)
        default = ClipSampling(max_interval=8, video_prob=0.8, fixed_interval_prob=0.5, block_shuffle=16)
        self.sampling = _sampling(sampling, default)
        base = _require(Path(root) / scene_files.arkit_split_folder(split, highres=False), "ARKitScenes split folder")
        index = base / "all_metadata.npz"
        listed = scene_files.load_arrays(index, "ARKitScenes index", ["scenes"])["scenes"]
        scenes = sorted(set(scene_files.names(listed, index)))
        if not scenes:
            raise ValueError(f"ARKitScenes index {index} lists no scenes")
        highres = Path(str(Path(root)) + "_highres") / scene_files.arkit_split_folder(split, highres=True)
        if exclude_highres and highres.is_dir():
            excluded = {p.name for p in highres.iterdir()}
            scenes = [s for s in scenes if s not in excluded]
        # Frames of all scenes in one list; a scene is a range of it and a group a list of indices into it.
        self.frames: list[tuple[Path, str, np.ndarray, np.ndarray]] = []
        self.groups: list[tuple[list[int], range]] = []
        for scene in scenes:
            self._add_scene(base / scene)
        if not self.groups:
            raise ValueError(f"{self.name}: no scene with a group of {num_views} views under {base}")

    def _add_scene(self, scene: Path) -> None:
        path = scene / "new_scene_metadata.npz"
        keys = ["images", "intrinsics", "trajectories", "image_collection"]
        meta = scene_files.load_arrays(path, "ARKitScenes scene metadata", keys)
        images = scene_files.names(meta["images"], path)
        intrinsics = scene_files.pinhole_rows(meta["intrinsics"], len(images), path)
        poses = scene_files.camera_poses(meta["trajectories"], len(images), path)
        collection = scene_files.covisibility(meta["image_collection"], len(images), path)
        if len(images) < self.num_views:
            logger.info("%s: skipping scene %s (%d frames)", self.name, scene.name, len(images))
            return
        offset = len(self.frames)
        self.frames.extend(zip([scene] * len(images), images, intrinsics, poses, strict=True))
        span = range(offset, len(self.frames))
        for ref, members in collection.items():
            group = sorted({ref, *(i for i, _ in members)})
            if len(group) >= self.num_views:
                self.groups.append(([offset + i for i in group], span))

    def __len__(self) -> int:
        return len(self.groups)

    def clip_frames(self, index: int, rng: np.random.Generator) -> tuple[list, bool]:
        group, span = self.groups[index]
        if rng.random() < 0.5:
            start = int(rng.integers(0, len(span) - self.num_views + 1))
            positions, is_video = self.sampling.sample(len(span), start, self.num_views, rng)
            return [span[p] for p in positions], is_video
        return [int(i) for i in rng.permutation(group)[: self.num_views]], False

    def load_frame(self, handle: int) -> Frame:
        scene, name, intrinsics, pose = self.frames[handle]
        image_path = scene_files.require_file(scene / "vga_wide" / name.replace(".png", ".jpg"), "ARKitScenes image")
        image = read_rgb(image_path)
        depth = scene_files.read_depth_mm(scene / "lowres_depth" / name, image.shape, "ARKitScenes depth")
        return Frame(image=image, depth=depth, intrinsics=intrinsics, cam_to_world=pose)


class Co3dDataset(SequenceDataset):
    """Co3D v2 as processed by CUT3R: object-centric turntable videos, up to scale (``is_metric`` False).

    With probability ``mask_background`` (per clip) depth outside the object mask is dropped, as in the
    reference's ``mask_bg='rand'``. Clips come out in the stored frame order (the reference reverses them).
    """

    name = "co3d"
    is_metric = False
    excluded_sequences: frozenset[tuple[str, str]] = frozenset()  # (category, sequence) pairs never read

    def __init__(
        self,
        root: str,
        num_views: int,
        split: str = "train",
        mask_background: float = 0.1,
        sampling: dict[str, Any] | None = None,
        aug_crop: int = 16,
        color_jitter: bool = True,
    ) -> None:
        super().__init__(num_views, aug_crop, color_jitter)
        self.sampling = _sampling(sampling, ClipSampling())
        self.root = Path(root)
        self.mask_background = mask_background
        index = _require(self.root / f"selected_seqs_{split}.json", "Co3D sequence index")
        selected = json.loads(index.read_text(encoding="utf-8"))
        for category, sequences in sorted(selected.items()):
            for sequence, frame_ids in sorted(sequences.items()):
                if (category, sequence) in self.excluded_sequences:
                    continue
                folder = self.root / category / sequence
                self.sequences.append((f"{category}/{sequence}", [(folder, int(i)) for i in frame_ids]))
        self.index_sequences()

    def clip_frames(self, index: int, rng: np.random.Generator) -> tuple[list, bool]:
        handles, is_video = super().clip_frames(index, rng)
        masked = bool(rng.random() < self.mask_background)
        return [(*h, masked) for h in handles], is_video

    def paths(self, folder: Path, frame: int) -> tuple[Path, Path, Path, Path]:
        """Image, camera metadata, depth and mask files of one frame."""
        stem = f"frame{frame:06d}"
        return (
            folder / "images" / f"{stem}.jpg",
            folder / "images" / f"{stem}.npz",
            folder / "depths" / f"{stem}.jpg.geometric.png",
            folder / "masks" / f"{stem}.png",
        )

    def read_depth(self, path: Path, meta: Any) -> np.ndarray:
        return read_uint16(path) / 65535.0 * float(np.nan_to_num(meta["maximum_depth"]))

    def load_frame(self, handle: tuple[Path, int, bool]) -> Frame:
        folder, frame, masked = handle
        image_path, meta_path, depth_path, mask_path = self.paths(folder, frame)
        with np.load(meta_path) as meta:
            depth = self.read_depth(depth_path, meta)
            intrinsics, pose = meta["camera_intrinsics"], meta["camera_pose"]
        if masked:
            with Image.open(mask_path) as mask:
                depth = depth * (np.asarray(mask.convert("L"), dtype=np.float32) / 255.0 > 0.1)
        return Frame(image=read_rgb(image_path), depth=depth, intrinsics=intrinsics, cam_to_world=pose)


class WildRGBDDataset(Co3dDataset):
    """WildRGB-D in the Co3D arrangement: metric depth in millimetres, five-digit frame names, sequences named
    ``scenes/scene_{n}`` (folders nested one level). ``box/scenes/scene_257`` is left out, as in the reference."""

    name = "wildrgbd"
    is_metric = True
    # The reference reader drops this sequence although the preprocess selects it.
    excluded_sequences = frozenset({("box", "scenes/scene_257")})

    def paths(self, folder: Path, frame: int) -> tuple[Path, Path, Path, Path]:
        stem = f"{frame:05d}"
        return (
            folder / "rgb" / f"{stem}.jpg",
            folder / "metadata" / f"{stem}.npz",
            folder / "depth" / f"{stem}.png",
            folder / "masks" / f"{stem}.png",
        )

    def read_depth(self, path: Path, meta: Any) -> np.ndarray:
        return read_uint16(path) / 1000.0
