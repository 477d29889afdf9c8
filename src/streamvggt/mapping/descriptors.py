"""Place descriptors for revisit detection: one small vector per keyframe, compared by cosine similarity.

Two sources: the model's own patch tokens (pooled, projected, whitened at query time; no second network), or,
for results that carry no tokens, the image itself (a weight-free normalised thumbnail). Both are float16 and at
most ``DESCRIPTOR_DIM`` values (1 KB).
"""

from __future__ import annotations

import numpy as np

DESCRIPTOR_DIM = 512  # float16: 1 KB per keyframe
THUMBNAIL = (12, 16)  # rows, columns of the image descriptor's grid


def image_descriptor(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """A normalised thumbnail [12 * 16 * 3 = 576 -> DESCRIPTOR_DIM] float16 of an image [H, W, 3] uint8.

    Block means over a 12 x 16 grid of the colour image, each channel centred and the whole scaled to unit length:
    brightness and contrast changes cancel, small shifts blur away. The thumbnail's last values beyond
    DESCRIPTOR_DIM are dropped (576 > 512): the bottom-right cells of the blue channel, the least informative part.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got {image.shape}")
    rows, cols = THUMBNAIL
    height, width = image.shape[:2]
    if height < rows or width < cols:
        raise ValueError(f"image of {height}x{width} is smaller than the {rows}x{cols} descriptor grid")
    mask = np.ones((height, width), np.float32) if valid is None else valid.astype(np.float32)
    weighted = np.concatenate((image.astype(np.float32) * mask[..., None], mask[..., None]), axis=-1)
    # Block sums with reduceat over contiguous row and column ranges: exact for any size, no resampling library.
    row_starts = (np.arange(rows) * height) // rows
    col_starts = (np.arange(cols) * width) // cols
    sums = np.add.reduceat(np.add.reduceat(weighted, row_starts, axis=0), col_starts, axis=1)
    thumb = sums[..., :3] / np.maximum(sums[..., 3:], 1.0)
    thumb -= thumb.mean(axis=(0, 1), keepdims=True)
    vec = thumb.transpose(2, 0, 1).ravel()[:DESCRIPTOR_DIM]
    return _unit(vec).astype(np.float16)


def token_descriptor(tokens: np.ndarray, seed: int = 0) -> np.ndarray:
    """A descriptor [DESCRIPTOR_DIM] float16 from one frame's patch tokens [P, C] (any C).

    Generalised-mean pooling over patches (p = 3: emphasises distinctive patches), then a fixed seeded Gaussian
    projection to DESCRIPTOR_DIM when C is larger (Johnson-Lindenstrauss: cosine similarities are kept, no weights
    are learnt). Whitening happens at query time over the map's descriptors (see :func:`whiten`).
    """
    tokens = np.asarray(tokens, dtype=np.float32)
    if tokens.ndim != 2:
        raise ValueError(f"patch tokens must be [P, C], got {tokens.shape}")
    pooled = np.cbrt(np.mean(np.abs(tokens) ** 3, axis=0)) * np.sign(tokens.mean(axis=0))
    if pooled.shape[0] > DESCRIPTOR_DIM:
        rng = np.random.default_rng(seed)
        projection = rng.standard_normal((pooled.shape[0], DESCRIPTOR_DIM)).astype(np.float32)
        pooled = pooled @ projection / np.sqrt(DESCRIPTOR_DIM)
    return _unit(pooled.astype(np.float64)).astype(np.float16)


def whiten(descriptors: np.ndarray) -> np.ndarray:
    """Centred, per-dimension standardised, unit-length descriptors [N, D] float32.

    Diagonal whitening estimated from the map's own keyframes: what every view shares (the room's overall colour,
    the tokens' common direction) is removed, which leaves what tells places apart.
    """
    desc = descriptors.astype(np.float32)
    if len(desc) > 1:
        desc = (desc - desc.mean(0)) / (desc.std(0) + 1e-3)
    norms = np.linalg.norm(desc, axis=1, keepdims=True)
    return desc / np.maximum(norms, 1e-12)


def _unit(vec: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec
