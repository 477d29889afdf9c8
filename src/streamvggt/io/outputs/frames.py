"""Per-frame outputs beside depth: the processed image the model saw, and optionally the point head's output.

With the cameras and depth maps they hold everything needed to show a finished reconstruction again (``streamvggt
view OUTDIR``) without the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from streamvggt.io.atomic import atomic_output

IMAGE_DIR = "images"
POINTMAP_DIR = "pointmap"


def image_name(index: int) -> str:
    """File name of frame ``index``'s processed image inside the images folder."""
    return f"{index:06d}.png"


def pointmap_names(index: int) -> tuple[str, str]:
    """File names of frame ``index``'s point map and its confidence inside the point-map folder."""
    return f"{index:06d}.npy", f"{index:06d}_conf.npy"


def write_image(folder: Path, index: int, image: np.ndarray) -> Path:
    """Write the processed image [H, W, 3] uint8 of frame ``index`` as PNG (lossless: it colours the points)."""
    path = folder / image_name(index)
    with atomic_output(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path


def write_pointmap(folder: Path, index: int, points: np.ndarray, conf: np.ndarray) -> list[Path]:
    """Write frame ``index``'s world points [H, W, 3] and their confidence [H, W] as float32 .npy files."""
    written = []
    for name, array in zip(pointmap_names(index), (points, conf), strict=True):
        with atomic_output(folder / name) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(array, dtype=np.float32))
        written.append(folder / name)
    return written
