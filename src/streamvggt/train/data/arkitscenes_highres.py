"""ARKitScenes with its high-resolution laser depth, as processed by CUT3R (``preprocess_arkitscenes_highres.py``).

Layout: ``ROOT/{Training|Validation}/{scene}/scene_metadata.npz`` with ``images`` (``{scene}_{timestamp}.png``),
``intrinsics`` rows ``(w, h, fx, fy, cx, cy)`` and ``trajectories`` [N, 4, 4] camera-to-world (OpenCV, already
turned upright like the images); ``vga_wide/{scene}_{timestamp}.jpg`` and ``highres_depth/{scene}_{timestamp}.png``
(uint16 millimetres, resized to the image with nearest neighbours).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from streamvggt.train.data.base import Frame, SequenceDataset
from streamvggt.train.data.layouts import _sampling, read_rgb
from streamvggt.train.data.sampling import ClipSampling
from streamvggt.train.data.scene_files import (
    arkit_split_folder,
    camera_poses,
    load_arrays,
    names,
    pinhole_rows,
    read_depth_mm,
    require_file,
)

logger = logging.getLogger(__name__)


def timestamp(name: str, path: Path) -> float:
    """The capture time in a frame name ``{scene}_{seconds}.png``."""
    try:
        return float(Path(name).stem.split("_")[-1])
    except ValueError:
        raise ValueError(f"{path}: frame name '{name}' is not '<scene>_<timestamp>.png'") from None


class ARKitScenesHighResDataset(SequenceDataset):
    """ARKitScenes scenes that have laser-scanner depth: metric, static; every scene folder of the split is one
    sequence in time order, sampled with strides up to 8 (``sampling``). Scenes with fewer frames than a clip
    are skipped.

    Deviations from the reference reader: frames are ordered by their timestamp as a number; the reference sorts
    the names as strings, which misorders a scene whose timestamps change digit count (``999.9`` vs ``1000.1``).
    Frames listed in the metadata without their image or depth file on disk are not used (the preprocess can
    list such frames; the reference fails when it draws one).
    """

    name = "arkitscenes_highres"
    is_metric = True
    static = True

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
        self.sampling = _sampling(sampling, ClipSampling(max_interval=8, block_shuffle=16))
        base = Path(root) / arkit_split_folder(split, highres=True)
        if not base.is_dir():
            raise FileNotFoundError(f"ARKitScenes high-res split folder not found: {base}")
        scenes = sorted(p for p in base.iterdir() if p.is_dir())
        if not scenes:
            raise ValueError(f"ARKitScenes high-res split folder {base} has no scene folders")
        for scene in scenes:
            self.sequences.append((scene.name, self._scene_frames(scene)))
        self.index_sequences()

    def _scene_frames(self, scene: Path) -> list[tuple[Path, str, Any, Any]]:
        """(scene, name, intrinsics, camera-to-world) of each frame of a scene, in time order."""
        path = scene / "scene_metadata.npz"
        meta = load_arrays(path, "ARKitScenes high-res scene metadata", ["images", "intrinsics", "trajectories"])
        frame_names = names(meta["images"], path)
        intrinsics = pinhole_rows(meta["intrinsics"], len(frame_names), path)
        poses = camera_poses(meta["trajectories"], len(frame_names), path)
        order = sorted(range(len(frame_names)), key=lambda i: timestamp(frame_names[i], path))
        # The preprocess keeps a frame whose image it matched only to within a millisecond of the depth's time,
        # then looks for the image under the depth's own name and writes neither file: such frames are listed
        # but absent (the reference reader fails on them).
        images, depths = _file_names(scene / "vga_wide"), _file_names(scene / "highres_depth")
        present = [i for i in order if frame_names[i].replace(".png", ".jpg") in images and frame_names[i] in depths]
        if len(present) < len(order):
            logger.info("%s: %s lists %d frames without files", self.name, path, len(order) - len(present))
        return [(scene, frame_names[i], intrinsics[i], poses[i]) for i in present]

    def load_frame(self, handle: tuple[Path, str, Any, Any]) -> Frame:
        scene, name, intrinsics, pose = handle
        image = read_rgb(require_file(scene / "vga_wide" / name.replace(".png", ".jpg"), "ARKitScenes image"))
        depth = read_depth_mm(scene / "highres_depth" / name, image.shape, "ARKitScenes high-res depth")
        return Frame(image=image, depth=depth, intrinsics=intrinsics, cam_to_world=pose)


def _file_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()
