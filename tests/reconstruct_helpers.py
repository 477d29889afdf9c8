"""Small inputs for the reconstruction tests: image folders, videos and a tiny random checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from streamvggt import ModelConfig, StreamVGGT

WIDTH, HEIGHT = 70, 56  # multiples of 14: with --size 70 the model sees the frames unscaled


def frame_pixels(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """A smooth colourful [H, W, 3] uint8 frame, shifted a little from frame to frame (video codecs keep it)."""
    v, u = np.mgrid[0:height, 0:width] / 10.0
    channels = [np.sin(u + 0.3 * index + c) * np.cos(0.7 * v + c) for c in (0.0, 2.0, 4.0)]
    return np.round(127.5 + 127.5 * np.stack(channels, axis=-1)).astype(np.uint8)


def write_images(folder: Path, names: list[str], width: int = WIDTH, height: int = HEIGHT) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        Image.fromarray(frame_pixels(i, width, height)).save(folder / name)
        paths.append(folder / name)
    return paths


def write_video(path: Path, frames: int, fps: int = 10, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """An MPEG-4 video (FFmpeg's own encoder, in every PyAV build) of ``frames`` frames at ``fps``."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(i, width, height), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def tiny_model(seed: int = 0) -> StreamVGGT:
    """The tiny preset with random weights; the camera head's field-of-view bias is raised so that cameras have
    ordinary focal lengths (an untrained head often outputs a field of view of 0)."""
    torch.manual_seed(seed)
    model = StreamVGGT(ModelConfig.preset("tiny")).eval()
    with torch.no_grad():
        model.camera_head.pose_branch.fc2.bias[7:9] = 0.4
    return model


def tiny_checkpoint(folder: Path) -> Path:
    return tiny_model().save_pretrained(folder)
