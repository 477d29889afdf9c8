"""From decoded images to model input: RGB conversion and the reference's resizing (crop, pad or resize mode)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from streamvggt.io.errors import InputError

log = logging.getLogger(__name__)

MODES = ("crop", "pad", "resize")
DEFAULT_SIZE = 518  # the resolution the models were trained at
PATCH_SIZE = 14
WHITE = 255

# Modes that hold more than 8 bits per pixel: 16-bit integer greyscale and 32-bit float.
_HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def to_rgb(image: Image.Image) -> np.ndarray:
    """An image of any Pillow mode as [H, W, 3] uint8 RGB.

    Transparent images are composited on white (as the reference demo does); 16-bit greyscale is scaled from
    [0, 65535] and float greyscale from [0, max(1, max value)] to 8 bits.
    """
    if image.mode in _HIGH_DEPTH_MODES:
        values = np.asarray(image, dtype=np.float64)
        full_scale = max(1.0, float(values.max(initial=0.0))) if image.mode == "F" else 65535.0
        grey = np.round(np.clip(values / full_scale, 0.0, 1.0) * 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (WHITE, WHITE, WHITE, 255)), rgba)
    return np.asarray(image.convert("RGB"))


@dataclass(frozen=True)
class Preprocessed:
    """A frame ready for the model and where its content lies (pad mode adds a white border)."""

    image: np.ndarray  # [H, W, 3] uint8 RGB
    valid: tuple[int, int, int, int]  # top, left, height, width of the image content inside ``image``


class Preprocessor:
    """Resizes a stream's frames as the reference demo does, all to one size.

    crop: width ``size``, height scaled and rounded to a multiple of the patch size, centre-cropped to ``size`` if
    taller. pad: the longest side ``size``, the other scaled and rounded, then padded with white to a square.
    resize: the evaluation protocols' input path: the longest side ``size`` (Lanczos when shrinking, bicubic when
    enlarging), then both sides resized (not cropped) down to multiples of the patch size with Lanczos.
    A frame whose size differs from the first frame's is first resized to the first frame's size (with a warning),
    because a stream's frames must all have one size.
    """

    def __init__(self, mode: str = "crop", size: int = DEFAULT_SIZE, patch_size: int = PATCH_SIZE) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown preprocessing mode '{mode}': use crop or pad (or resize, for evaluation)")
        if size < patch_size or size % patch_size:
            raise ValueError(f"size must be a positive multiple of {patch_size}, got {size}")
        self.mode = mode
        self.size = size
        self.patch_size = patch_size
        self.first_size: tuple[int, int] | None = None  # (width, height) of the first frame, as decoded
        self.content_box: tuple[int, int, int, int] | None = None  # of the frames so far (all share one size)
        self._warned: set[tuple[int, int]] = set()

    def __call__(self, image: np.ndarray, name: str = "frame") -> Preprocessed:
        """Preprocess one decoded frame [h, w, 3] uint8; ``name`` appears in errors and warnings."""
        height, width = image.shape[:2]
        self.check(width, height, name)
        pil = Image.fromarray(image)
        if self.first_size is None:
            self.first_size = (width, height)
        elif (width, height) != self.first_size:
            if (width, height) not in self._warned:
                self._warned.add((width, height))
                first_w, first_h = self.first_size
                log.warning(
                    "%s is %dx%d but the first frame is %dx%d: resizing such frames to the first size",
                    name,
                    width,
                    height,
                    first_w,
                    first_h,
                )
            pil = pil.resize(self.first_size, Image.Resampling.BICUBIC)
        new_w, new_h = self._resized_shape(*self.first_size)
        if self.mode == "resize":
            resized = np.asarray(self._eval_resize(pil, new_w, new_h))
            self.content_box = (0, 0, new_h, new_w)
            return Preprocessed(resized, self.content_box)
        resized = np.asarray(pil.resize((new_w, new_h), Image.Resampling.BICUBIC))
        if self.mode == "crop":
            top = max(0, (new_h - self.size) // 2)
            cropped = np.ascontiguousarray(resized[top : top + self.size])
            self.content_box = (0, 0, cropped.shape[0], new_w)
            return Preprocessed(cropped, self.content_box)
        top, left = (self.size - new_h) // 2, (self.size - new_w) // 2
        padded = np.full((self.size, self.size, 3), WHITE, dtype=np.uint8)
        padded[top : top + new_h, left : left + new_w] = resized
        self.content_box = (top, left, new_h, new_w)
        return Preprocessed(padded, self.content_box)

    def resized_box(self) -> tuple[int, int, int, int]:
        """Where the whole resized frame lies in the processed image: top, left, height, width (pixels).

        In crop mode its top is negative (the rows cropped away lie above the image); in pad mode it is the content
        box. A frame of W x H pixels maps onto it by scales W / width and H / height. Needs a preprocessed frame.
        """
        if self.first_size is None:
            raise ValueError("no frame was preprocessed yet: the resized frame's size is not known")
        new_w, new_h = self._resized_shape(*self.first_size)
        if self.mode == "crop":
            return -max(0, (new_h - self.size) // 2), 0, new_h, new_w
        if self.mode == "pad":
            return (self.size - new_h) // 2, (self.size - new_w) // 2, new_h, new_w
        return 0, 0, new_h, new_w

    def check(self, width: int, height: int, name: str = "frame") -> None:
        """Raise InputError for a frame that cannot become model input: smaller than a patch, or too elongated."""
        if min(width, height) < self.patch_size:
            raise InputError(
                f"{name} is {width}x{height} pixels: frames must be at least {self.patch_size}x{self.patch_size}"
            )
        new_w, new_h = self._resized_shape(width, height)
        if min(new_w, new_h) < self.patch_size:
            raise InputError(
                f"{name} is {width}x{height} pixels: too elongated for {self.mode} mode at size {self.size} "
                f"(it would be {new_w}x{new_h}, less than one {self.patch_size}-pixel patch)"
            )

    def _eval_resize(self, image: Image.Image, width: int, height: int) -> Image.Image:
        """The reference's two resizes (long side first, then to patch multiples), so evaluation inputs match its
        pixels; a single resize would differ by resampling noise."""
        long_w, long_h = self._long_side_shape(*image.size)
        filter_ = Image.Resampling.LANCZOS if max(image.size) > self.size else Image.Resampling.BICUBIC
        image = image.resize((long_w, long_h), filter_)
        if (long_w, long_h) == (width, height):
            return image
        return image.resize((width, height), Image.Resampling.LANCZOS)

    def _long_side_shape(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) scaled so that the longest side is ``size``."""
        scale = self.size / max(width, height)
        return round(width * scale), round(height * scale)

    def _resized_shape(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after scaling: in crop and pad modes the short side is rounded to a multiple of the
        patch size; in resize mode both sides are rounded down to one."""
        p = self.patch_size
        if self.mode == "resize":
            long_w, long_h = self._long_side_shape(width, height)
            return long_w // p * p, long_h // p * p
        if self.mode == "crop" or width >= height:
            return self.size, round(height * self.size / width / p) * p
        return round(width * self.size / height / p) * p, self.size
