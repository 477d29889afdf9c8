"""Depth maps as 16-bit PNG, the format RGB-D tools read: an integer per pixel, ``depth x values_per_unit``, with 0
for "no depth" (padding, non-finite or non-positive depth, or beyond the 16-bit range)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from streamvggt.io.atomic import atomic_output

log = logging.getLogger(__name__)

MAX_VALUE = 65535


def depth_to_uint16(depth: np.ndarray, valid: np.ndarray, values_per_unit: float) -> tuple[np.ndarray, int]:
    """Depth [H, W] (model units) as uint16 [H, W] = round(depth x values_per_unit), and the number of valid pixels
    set to 0 because they lie beyond the range (rounded value above 65535)."""
    scaled = np.asarray(depth, dtype=np.float64) * values_per_unit
    ok = valid & np.isfinite(scaled) & (scaled > 0)
    rounded = np.rint(np.where(ok, scaled, 0.0))
    beyond = ok & (rounded > MAX_VALUE)
    return np.where(beyond, 0, rounded).astype(np.uint16), int(beyond.sum())


def write_depth16(path: Path, depth: np.ndarray, valid: np.ndarray, values_per_unit: float) -> Path:
    """Write ``depth`` [H, W] as a 16-bit greyscale PNG (see :func:`depth_to_uint16`); warns about clipped pixels."""
    values, beyond = depth_to_uint16(depth, valid, values_per_unit)
    if beyond:
        log.warning(
            "%s: %d pixels are deeper than %.4g model units, the 16-bit limit at %g per unit: written as 0 (no depth)",
            path.name,
            beyond,
            MAX_VALUE / values_per_unit,
            values_per_unit,
        )
    with atomic_output(path) as tmp:
        Image.fromarray(values).save(tmp, format="PNG")  # uint16 arrays become mode I;16: 16-bit greyscale PNG
    return path
