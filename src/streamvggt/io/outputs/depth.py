"""Per-frame depth outputs: float32 depth and confidence as .npy, and optionally a colour PNG for viewing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from streamvggt.io.atomic import atomic_output

DEPTH_DIR = "depth"  # the per-frame depth folder inside an output folder

# Colour ramp from far (dark blue) to near (dark red), sampled evenly.
_RAMP = np.array(
    [[48, 18, 59], [65, 105, 225], [34, 200, 220], [60, 220, 110], [230, 220, 50], [245, 120, 30], [122, 4, 3]],
    dtype=np.float64,
)


def depth_names(index: int) -> tuple[str, str, str]:
    """File names of frame ``index``'s depth, confidence and colour image inside the depth folder."""
    stem = f"{index:06d}"
    return f"{stem}.npy", f"{stem}_conf.npy", f"{stem}.png"


def write_depth(
    folder: Path, index: int, depth: np.ndarray, conf: np.ndarray, valid: np.ndarray, png: bool = False
) -> list[Path]:
    """Write depth [H, W] and confidence [H, W] (float32) of frame ``index``, and a colour PNG with ``png``."""
    depth_name, conf_name, png_name = depth_names(index)
    written = []
    for name, array in ((depth_name, depth), (conf_name, conf)):
        with atomic_output(folder / name) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(array, dtype=np.float32))
        written.append(folder / name)
    if png:
        with atomic_output(folder / png_name) as tmp:
            Image.fromarray(colorize_depth(depth, valid)).save(tmp, format="PNG")
        written.append(folder / png_name)
    return written


def colorize_depth(depth: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """[H, W, 3] uint8: inverse depth between its 2nd and 98th percentile mapped to a far-to-near ramp.

    Pixels outside ``valid`` or without a positive finite depth are black.
    """
    ok = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        ok &= valid
    out = np.zeros((*depth.shape, 3), dtype=np.uint8)
    if not ok.any():
        return out
    inverse = 1.0 / depth[ok]
    low, high = np.percentile(inverse, (2, 98))
    t = np.clip((inverse - low) / max(high - low, 1e-12), 0, 1) * (len(_RAMP) - 1)
    positions = np.arange(len(_RAMP))
    out[ok] = np.stack([np.interp(t, positions, _RAMP[:, c]) for c in range(3)], axis=-1).round().astype(np.uint8)
    return out
