"""Writing one scene of the ``generic`` training layout, all at once or not at all.

``SCENE/rgb/{stem}.png|jpg``, ``depth/{stem}.npy`` (float32 [H, W], 0 where unknown), ``cam/{stem}.npz``
(``pose``: camera-to-world [4, 4] OpenCV, ``intrinsics``: [3, 3] with pixel centres at integers), and
``import.json``: where the frames came from, the depth source, the units, and each stem's source name. Stems are
``000000``, ``000001``, ... in the capture's order, so the reader's sorted listing is that order.

Everything is written into a hidden folder beside ``SCENE`` and renamed at the end, so a reader never sees a
half-imported scene and a failed import leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from streamvggt.io.errors import InputError, OutputError

logger = logging.getLogger(__name__)

COPIED_SUFFIXES = (".png", ".jpg", ".jpeg")  # formats the reader opens as they are


@dataclass
class ImportedFrame:
    """One frame to write: the image (pixels [H, W, 3] uint8, or a PNG/JPEG file copied byte for byte),
    depth [H, W] (0 unknown), intrinsics [3, 3] (pixel centres at integers), camera-to-world [4, 4] OpenCV."""

    name: str  # the frame's name in the source, recorded in import.json
    image: np.ndarray | Path
    depth: np.ndarray
    intrinsics: np.ndarray
    cam_to_world: np.ndarray


def check_frame(frame: ImportedFrame, size: tuple[int, int]) -> None:
    """Raise InputError naming the frame when its arrays cannot form a training frame of ``size`` (H, W)."""
    if frame.depth.shape != size:
        raise InputError(f"{frame.name}: depth is {list(frame.depth.shape)}, the image is {list(size)}")
    if frame.intrinsics.shape != (3, 3) or not np.isfinite(frame.intrinsics).all():
        raise InputError(f"{frame.name}: intrinsics must be a finite 3x3 matrix")
    pose = frame.cam_to_world
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise InputError(f"{frame.name}: the camera pose must be a finite 4x4 matrix")
    if not np.allclose(pose[:3, :3].T @ pose[:3, :3], np.eye(3), atol=1e-4):
        raise InputError(f"{frame.name}: the camera pose's rotation is not orthonormal")


class SceneWriter:
    """Collects frames into a hidden folder beside ``scene`` and publishes them with :meth:`commit`.

    Use as a context manager: leaving it without :meth:`commit` (an error) deletes the hidden folder.
    overwrite: replace an existing non-empty ``scene`` (otherwise that is an OutputError, checked up front).
    """

    def __init__(self, scene: Path, overwrite: bool = False) -> None:
        self.scene = Path(scene)
        if self.scene.exists() and not self.scene.is_dir():
            raise OutputError(f"output {self.scene} exists and is not a folder")
        if self.scene.is_dir() and any(self.scene.iterdir()) and not overwrite:
            raise OutputError(f"output {self.scene} is not empty (pass --overwrite to replace it)")
        self.overwrite = overwrite
        # The frames go one level down in the hidden folder: a reader listing scenes (folders holding rgb/)
        # beside it during the import does not take it for a scene.
        self.hidden = self.scene.parent / f".{self.scene.name}.{secrets.token_hex(4)}.tmp"
        self.staging = self.hidden / self.scene.name
        self.names: list[str] = []

    def __enter__(self) -> SceneWriter:
        try:
            for folder in ("rgb", "depth", "cam"):
                (self.staging / folder).mkdir(parents=True)
        except OSError as error:
            self.__exit__()  # a context manager whose __enter__ fails is not exited: leave nothing behind
            raise OutputError(f"cannot create output {self.scene}: {error.strerror}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(self.hidden)

    def add(self, frame: ImportedFrame) -> None:
        """Write ``frame`` under the next stem (InputError when its arrays do not fit together)."""
        stem = f"{len(self.names):06d}"
        if isinstance(frame.image, Path):
            with Image.open(frame.image) as image:
                size = (image.height, image.width)
            image_path = self.staging / "rgb" / f"{stem}{frame.image.suffix.lower()}"
        else:
            size = frame.image.shape[:2]
            image_path = self.staging / "rgb" / f"{stem}.png"
        check_frame(frame, size)
        try:
            if isinstance(frame.image, Path):
                shutil.copyfile(frame.image, image_path)
            else:
                Image.fromarray(frame.image).save(image_path)
            np.save(self.staging / "depth" / f"{stem}.npy", np.asarray(frame.depth, dtype=np.float32))
            np.savez(
                self.staging / "cam" / f"{stem}.npz",
                pose=np.asarray(frame.cam_to_world, dtype=np.float64),
                intrinsics=np.asarray(frame.intrinsics, dtype=np.float64),
            )
        except OSError as error:
            raise OutputError(f"cannot write {self.staging}: {error.strerror}") from None
        self.names.append(frame.name)

    def commit(self, provenance: dict[str, Any]) -> Path:
        """Write ``import.json`` (``provenance`` plus the stem -> source name list) and publish the scene."""
        if not self.names:
            raise InputError("no frame to import")
        document = {**provenance, "frames": [{"stem": f"{i:06d}", "name": n} for i, n in enumerate(self.names)]}
        try:
            (self.staging / "import.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
            if self.scene.exists():
                # Only reached with overwrite or an empty folder (checked in __init__).
                shutil.rmtree(self.scene)
            self.staging.rename(self.scene)
            self.hidden.rmdir()
        except OSError as error:
            raise OutputError(f"cannot publish {self.scene}: {error.strerror}") from None
        logger.info("imported %d frames into %s", len(self.names), self.scene)
        return self.scene
