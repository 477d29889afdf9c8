"""Per-view and per-clip image transforms: crop and resize around the principal point, colour jitter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def crop_around_principal_point(
    image: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The largest crop centred on the principal point, so that it lands at the image centre.

    image [H, W, 3] uint8, depth [H, W], intrinsics [3, 3] (pixel centres at integers). The model assumes a
    centred principal point, so this is the first step of every view. Raises ValueError when the principal point
    lies so far off centre that less than 2/5 of the image would remain along an axis.
    """
    height, width = depth.shape
    cx, cy = (round(float(v)) for v in intrinsics[:2, 2])
    margin_x, margin_y = min(cx, width - cx), min(cy, height - cy)
    if margin_x <= width / 5 or margin_y <= height / 5:
        raise ValueError(f"principal point ({cx}, {cy}) is too far off centre in a {width}x{height} image")
    left, top = cx - margin_x, cy - margin_y
    return crop(image, depth, intrinsics, left, top, 2 * margin_x, 2 * margin_y)


def crop(
    image: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray, left: int, top: int, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A window of the view; the principal point moves by the window's offset."""
    intrinsics = intrinsics.copy()
    intrinsics[0, 2] -= left
    intrinsics[1, 2] -= top
    window = (slice(top, top + height), slice(left, left + width))
    return image[window], depth[window], intrinsics


def resize(
    image: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize to (width, height): Lanczos when shrinking, bicubic when enlarging; depth by nearest neighbour.

    Intrinsics scale about the pixel corner (0, 0) of the image, the convention in which a resize is a pure
    scaling: cx' = (cx + 0.5) * sx - 0.5.
    """
    old_height, old_width = depth.shape
    sx, sy = width / old_width, height / old_height
    method = Image.Resampling.LANCZOS if max(sx, sy) < 1 else Image.Resampling.BICUBIC
    image = np.asarray(Image.fromarray(image).resize((width, height), resample=method))
    # Nearest source pixel of each output pixel centre; never mixes depths across an edge.
    rows = np.minimum(((np.arange(height) + 0.5) / sy).astype(np.int64), old_height - 1)
    cols = np.minimum(((np.arange(width) + 0.5) / sx).astype(np.int64), old_width - 1)
    depth = depth[rows[:, None], cols[None, :]]
    intrinsics = intrinsics.copy()
    intrinsics[0, 0] *= sx
    intrinsics[1, 1] *= sy
    intrinsics[0, 2] = (intrinsics[0, 2] + 0.5) * sx - 0.5
    intrinsics[1, 2] = (intrinsics[1, 2] + 0.5) * sy - 0.5
    return image, depth, intrinsics


def crop_resize(
    image: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray, size: tuple[int, int], enlarge: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A view at ``size`` (W, H): crop around the principal point, scale to cover (W + enlarge, H + enlarge),
    then take the centre (W, H) window.

    ``enlarge`` (0 .. aug_crop-1, drawn per view) zooms in a little: the reference's crop augmentation.
    Returns image [H, W, 3] uint8, depth [H, W] float32, intrinsics [3, 3] float64.
    """
    out_width, out_height = size
    image, depth, intrinsics = crop_around_principal_point(image, depth, intrinsics.astype(np.float64))
    height, width = depth.shape
    scale = max((out_width + enlarge) / width, (out_height + enlarge) / height)
    # The 1e-8 guards floor() against 517.9999 when the scale is exact.
    new_width = max(out_width, int(np.floor(width * scale + 1e-8)))
    new_height = max(out_height, int(np.floor(height * scale + 1e-8)))
    image, depth, intrinsics = resize(image, depth, intrinsics, new_width, new_height)
    left, top = (new_width - out_width) // 2, (new_height - out_height) // 2
    image, depth, intrinsics = crop(image, depth, intrinsics, left, top, out_width, out_height)
    return np.ascontiguousarray(image), np.ascontiguousarray(depth, dtype=np.float32), intrinsics


# ------------------------------------------------------------------------------------------------- colour jitter


@dataclass(frozen=True)
class ColorJitter:
    """One set of colour changes, applied identically to every view of a clip (a clip is one camera's video).

    brightness, contrast, saturation: multiplicative factors (1 = unchanged); hue: shift in turns (0 = unchanged);
    order: the order of the four operations (0 brightness, 1 contrast, 2 saturation, 3 hue).
    """

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    order: tuple[int, ...] = (0, 1, 2, 3)

    @classmethod
    def sample(
        cls,
        rng: np.random.Generator,
        brightness: float = 0.5,
        contrast: float = 0.5,
        saturation: float = 0.5,
        hue: float = 0.1,
    ) -> ColorJitter:
        """Factors uniform in [1 - s, 1 + s], hue shift in [-hue, hue], a random order (the reference's ranges)."""

        def factor(strength: float) -> float:
            return float(rng.uniform(max(0.0, 1 - strength), 1 + strength))

        return cls(
            brightness=factor(brightness),
            contrast=factor(contrast),
            saturation=factor(saturation),
            hue=float(rng.uniform(-hue, hue)),
            order=tuple(int(i) for i in rng.permutation(4)),
        )

    def __call__(self, images: Tensor) -> Tensor:
        """images: [..., 3, H, W] in [0, 1] -> same shape, in [0, 1]."""
        for op in self.order:
            if op == 0:
                images = (images * self.brightness).clamp(0, 1)
            elif op == 1:
                mean = grayscale(images).mean(dim=(-2, -1), keepdim=True)
                images = _blend(images, mean, self.contrast)
            elif op == 2:
                images = _blend(images, grayscale(images), self.saturation)
            elif op == 3 and self.hue != 0:
                images = shift_hue(images, self.hue)
        return images


def grayscale(images: Tensor) -> Tensor:
    """[..., 3, H, W] -> luma [..., 1, H, W] (ITU-R 601 weights)."""
    r, g, b = images.unbind(-3)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def _blend(images: Tensor, other: Tensor, factor: float) -> Tensor:
    return (factor * images + (1 - factor) * other).clamp(0, 1)


def shift_hue(images: Tensor, shift: float) -> Tensor:
    """Rotate the hue of [..., 3, H, W] images in [0, 1] by ``shift`` turns, keeping saturation and value."""
    r, g, b = images.unbind(-3)
    value, argmax = images.max(dim=-3)
    minimum = images.min(dim=-3).values
    chroma = value - minimum
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    # Hue in sextants: which channel is the maximum decides the formula.
    hue = torch.where(
        argmax == 0,
        ((g - b) / safe) % 6,
        torch.where(argmax == 1, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    hue = torch.where(chroma > 0, hue, torch.zeros_like(hue))
    hue = (hue / 6 + shift) % 1.0
    # HSV -> RGB: channel n takes v - c * clamp(min(k, 4 - k), 0, 1) with k = (n + 6h) mod 6.
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = (n + hue * 6) % 6
        channels.append(value - chroma * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels, dim=-3)
