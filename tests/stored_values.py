"""What a rendered frame holds once written in a layout's encodings: the ground truth that a reader must return."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Depth stored in whole millimetres is within half a step of the truth (plus float32 error in metres).
MM_ROUNDING = 0.5e-3 + 1e-6


def as_stored_jpeg(image: np.ndarray) -> np.ndarray:
    """``image`` [H, W, 3] uint8 after the JPEG encoding the layout helpers write (quality 95)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))
