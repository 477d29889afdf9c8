"""Running a model over one evaluation sequence: the protocols' common input path and output resizing.

Every protocol streams its frames through a model session (:class:`streamvggt.pipeline.reconstructor.Reconstructor`), so
any cache policy can be evaluated; single-image protocols stream one-frame sequences.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from streamvggt.io.inputs.preprocess import DEFAULT_SIZE, Preprocessor
from streamvggt.io.inputs.sources import Frame
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.pipeline.reconstructor import FrameResult, Reconstructor

log = logging.getLogger(__name__)


def eval_preprocessor(size: int = DEFAULT_SIZE) -> Preprocessor:
    """The evaluation input path of SPEC §5: longest side ``size``, then resized (not cropped) to multiples of 14."""
    return Preprocessor("resize", size)


def stream_sequence(
    model: StreamVGGT,
    frames: Iterable[tuple[str, np.ndarray]],
    cache: str = "full",
    preprocessor: Preprocessor | None = None,
    query_points: np.ndarray | Callable[[tuple[int, int]], np.ndarray] | None = None,
) -> list[FrameResult]:
    """Stream ``frames`` ((name, [H, W, 3] uint8 RGB) in order) through one new session of ``model``.

    preprocessor: its mode and size are used (default: :func:`eval_preprocessor`); a fresh copy runs each
    sequence, because a preprocessor remembers the first frame's size of its stream. query_points: pixels of the
    first frame to track, or a function of its size (see :class:`streamvggt.pipeline.reconstructor.Reconstructor`).
    Returns one result per frame, at the model's resolution (see :func:`resize_to` for the input's).
    """
    template = preprocessor or eval_preprocessor()
    fresh = Preprocessor(template.mode, template.size, template.patch_size)
    reconstructor = Reconstructor(model, cache, fresh, query_points=query_points)
    results = [reconstructor.step(Frame(image, name, index)) for index, (name, image) in enumerate(frames)]
    log.debug("streamed %d frames (cache %s)", len(results), cache)
    return results


def resize_to(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a [H, W] float map to ``shape`` (height, width) by bicubic interpolation.

    torch's bicubic (a = -0.75, pixel centres at +0.5, no antialiasing) is the interpolation of OpenCV's
    INTER_CUBIC that the reference uses, so the numbers match it without an OpenCV dependency.
    """
    if array.ndim != 2:
        raise ValueError(f"expected a [H, W] map, got shape {array.shape}")
    if tuple(array.shape) == tuple(shape):
        return np.asarray(array, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=tuple(shape), mode="bicubic", align_corners=False)[0, 0].numpy()
