"""Where frames come from: a folder of images, a glob, a video file, a camera or a stream URL.

:func:`open_source` recognises the input and fails early (missing path, empty folder, not a video); the source
then yields frames lazily, so sampling skips frames before paying for decoding and a long video is never held
in memory. :func:`read_frames` samples (every Nth frame, or N frames per second), decodes, and skips unreadable
frames with a warning.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import math
import os
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from streamvggt.io.errors import InputError
from streamvggt.io.inputs.preprocess import to_rgb

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Default sampling of videos and streams: one frame per second, as the reference demo does. Every frame of a
# 30 fps video would make the full cache grow 30 times faster for nearly the same views.
DEFAULT_VIDEO_FPS = 1.0
STREAM_TIMEOUT_S = 15.0  # how long to wait for a network stream to open or to send data

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:(//|/)")  # rtsp://..., http://..., file:/path (not C:/)
_GLOB_CHARS = ("*", "?", "[")


class UnreadableFrameError(Exception):
    """One frame cannot be decoded; the stream goes on without it."""


@dataclass(frozen=True)
class ReadPosition:
    """Where :func:`read_frames` stands just after a kept frame: reading again from here (``resume=``) yields
    exactly the frames an uninterrupted read yields after it. Saved in a run's state as :meth:`to_dict`."""

    kept: int  # frames yielded so far, this one included
    source_index: int  # this frame's position in the source before sampling
    timestamp: float | None  # its time in seconds (video)
    pts: int | None  # its presentation timestamp in the video stream's time base: where a video seeks to
    start: float | None  # the first frame's time: the origin of frame-rate sampling
    last_bin: int  # frame-rate sampling's last kept 1/fps bin

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReadPosition:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class Frame:
    """A decoded frame and where it came from."""

    image: np.ndarray  # [H, W, 3] uint8 RGB, as decoded
    name: str = "frame"  # file name relative to the input, or frame_NNNNNN for video
    index: int = 0  # position in the source before sampling (file or decoded-frame number)
    timestamp: float | None = None  # seconds since the start of a video or stream
    # Where to resume reading after this frame (set by read_frames). It travels with the frame, so a loop that
    # reads ahead still saves the position of the frame whose outputs it saved.
    position: ReadPosition | None = None


@dataclass(frozen=True)
class FrameRef:
    """A frame before decoding: sampling looks at ``index`` and ``timestamp`` first."""

    name: str
    index: int
    timestamp: float | None
    decode: Callable[[], np.ndarray]  # raises UnreadableFrameError
    pts: int | None = None  # presentation timestamp in the video stream's time base


class FrameSource(ABC):
    """Frames of one input. ``kind`` is "images", "video" or "stream" (camera or URL, possibly endless)."""

    kind: str
    description: str  # names the input in messages

    def __init__(self) -> None:
        self.skipped: list[tuple[str, str]] = []  # (frame name, reason) of frames that could not be decoded

    @abstractmethod
    def refs(self) -> Iterator[FrameRef]:
        """The source's frames in order, not decoded yet. Can be iterated once."""

    def refs_after(self, index: int, pts: int | None) -> Iterator[FrameRef]:
        """The frames after frame ``index`` (whose presentation timestamp is ``pts``, for video), as :meth:`refs`
        would yield them. By default :meth:`refs` skipped up to there (nothing is decoded to RGB)."""
        return (ref for ref in self.refs() if ref.index > index)

    @property
    def frame_count(self) -> int | None:
        """Frames in the source when known (before sampling)."""
        return None

    @property
    def duration(self) -> float | None:
        """Seconds of video when known."""
        return None

    @abstractmethod
    def close(self) -> None:
        """Release files and devices."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------------------- images


def natural_key(name: str) -> list[str | int]:
    """Sort key that orders digit runs by value: "2.jpg" before "10.jpg"."""
    # re.split with a group alternates text and digits, text first, so positions compare like with like.
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", name))]


class ImageFiles(FrameSource):
    """Image files in natural order; ``root`` is what names are relative to."""

    kind = "images"

    def __init__(self, paths: list[Path], root: Path, description: str) -> None:
        super().__init__()
        self.paths = paths
        self.root = root
        self.description = description

    @classmethod
    def from_folder(cls, folder: Path) -> ImageFiles:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]  # hidden: .DS_Store, ._x.jpg
        images = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
        if not images:
            if not entries:
                raise InputError(f"folder {folder} is empty")
            raise InputError(
                f"no images in folder {folder}: {len(entries)} entries, none a file ending in "
                f"{', '.join(IMAGE_EXTENSIONS)} (for a video, pass the video file itself)"
            )
        images.sort(key=lambda p: natural_key(p.name))
        return cls(images, folder, f"folder {folder}")

    @classmethod
    def from_glob(cls, pattern: str) -> ImageFiles:
        matches = [Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True)]
        images = [p for p in matches if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
        if not images:
            found = f"{len(matches)} paths, none an image file" if matches else "nothing"
            raise InputError(f"input not found: pattern '{pattern}' matches {found}")
        root = Path(os.path.commonpath([p.parent for p in images]))
        images.sort(key=lambda p: natural_key(p.relative_to(root).as_posix()))
        return cls(images, root, f"pattern '{pattern}'")

    @property
    def frame_count(self) -> int:
        return len(self.paths)

    def close(self) -> None:
        """Nothing to release: each image is opened and closed as it is read."""

    def refs(self) -> Iterator[FrameRef]:
        return self.refs_after(-1, None)

    def refs_after(self, index: int, pts: int | None) -> Iterator[FrameRef]:
        for position in range(index + 1, len(self.paths)):
            path = self.paths[position]
            yield FrameRef(
                name=path.relative_to(self.root).as_posix(),
                index=position,
                timestamp=None,
                decode=partial(read_image, path),
            )


def read_image(path: Path) -> np.ndarray:
    """The image at ``path`` as [H, W, 3] uint8 RGB, upright by its EXIF orientation; UnreadableFrameError if bad."""
    try:
        with Image.open(path) as image:
            image.load()  # Image.open reads the header only: a truncated file fails here
            return to_rgb(ImageOps.exif_transpose(image))
    # Pillow reports damaged files as OSError (truncated, unidentified), SyntaxError (broken chunks) or ValueError.
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableFrameError(_reason(error)) from None


# ---------------------------------------------------------------------------------------------- video and streams


class VideoSource(FrameSource):
    """Frames decoded with PyAV (FFmpeg) from a file, a camera device or a stream URL."""

    def __init__(
        self, target: str, description: str, kind: str, container_format: str | None = None, **open_kw: Any
    ) -> None:
        super().__init__()
        self.description = description
        self.kind = kind
        self._open_args = (target, container_format, open_kw)
        self._open()

    def _open(self) -> None:
        import av

        target, container_format, open_kw = self._open_args
        try:
            self._container = av.open(target, format=container_format, **open_kw)
        except (av.error.FFmpegError, OSError, ValueError) as error:  # ValueError: a format this FFmpeg lacks
            raise InputError(f"cannot open {self.description}: {_reason(error)}") from None
        if not self._container.streams.video:
            self._container.close()
            raise InputError(f"{self.description} has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # decode with frame and slice threads

    @property
    def frame_count(self) -> int | None:
        return self._stream.frames or None

    @property
    def duration(self) -> float | None:
        if self._stream.duration is not None and self._stream.time_base is not None:
            return float(self._stream.duration * self._stream.time_base)
        return self._container.duration / 1e6 if self._container.duration else None

    def refs(self) -> Iterator[FrameRef]:
        return self._refs(self._decoded(), 0)

    def refs_after(self, index: int, pts: int | None) -> Iterator[FrameRef]:
        """Seeks to the keyframe at or before ``pts``, decodes forward to that frame and goes on after it: the
        frames equal those of a read from the start, without decoding the video up to there. Falls back to
        reading from the start when the container cannot seek or the frame is not where its timestamp says."""
        frames = self._seek_past(pts) if pts is not None and self.kind == "video" else None
        if frames is None:
            self._container.close()
            self._open()
            return (ref for ref in self.refs() if ref.index > index)
        return self._refs(frames, index + 1)

    def _seek_past(self, pts: int) -> Iterator[Any] | None:
        """Decoded frames right after the frame whose timestamp is ``pts``, or None when it cannot be found."""
        import av

        time_base = self._stream.time_base
        # Seek targets further and further back: a demuxer may land on a keyframe shown after ``pts``.
        step = int(1 / time_base) if time_base else 0  # one second in the stream's time base
        for back in (0, step, 4 * step, 16 * step):
            try:
                self._container.seek(max(pts - back, 0), stream=self._stream, backward=True, any_frame=False)
            except (av.error.FFmpegError, OSError, ValueError) as error:
                log.info("%s: cannot seek (%s), reading from the start", self.description, _reason(error))
                return None
            frames = self._decoded()
            first = next(frames, None)
            if first is None or first.pts is None:
                return None
            if first.pts > pts:
                continue  # landed after the frame: seek further back
            frame = first
            while frame is not None and frame.pts is not None and frame.pts < pts:
                frame = next(frames, None)
            # Not there (the frame was dropped, timestamps repeat or are missing): read from the start instead.
            return frames if frame is not None and frame.pts == pts else None
        return None

    def _refs(self, frames: Iterator[Any], index: int) -> Iterator[FrameRef]:
        """Refs of decoded ``frames``, numbered from ``index``."""
        rate = self._stream.average_rate
        for frame in frames:
            timestamp = frame.time if frame.time is not None else (float(index / rate) if rate else None)
            yield FrameRef(
                name=f"frame_{index:06d}",
                index=index,
                timestamp=timestamp,
                decode=partial(_upright_rgb, frame),
                pts=frame.pts,
            )
            index += 1

    def _decoded(self) -> Iterator[Any]:
        """The decoded frames from the container's current position; broken packets are skipped with a warning."""
        import av

        packets = self._container.demux(self._stream)
        count = 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as error:  # a broken container or a dropped connection ends the stream
                log.warning("%s: stopped reading after %d frames: %s", self.description, count, _reason(error))
                return
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as error:
                where = "packet" if packet.pts is None else f"packet at {float(packet.pts * packet.time_base):.3f} s"
                log.warning("skipping %s of %s: %s", where, self.description, _reason(error))
                self.skipped.append((where, _reason(error)))
                continue
            for frame in decoded:
                count += 1
                yield frame

    def close(self) -> None:
        self._container.close()


def _upright_rgb(frame: Any) -> np.ndarray:
    """A decoded video frame as RGB [H, W, 3] uint8, turned as its display matrix says (phones store portrait
    video as landscape frames plus a rotation; FFmpeg's players apply it, decoding alone does not)."""
    image = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) % 4  # PyAV: degrees counter-clockwise, in [-180, 180]
    return np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image


def open_camera(index: int) -> VideoSource:
    """Camera ``index`` through the platform's capture API (Video4Linux on Linux, AVFoundation on macOS)."""
    if sys.platform.startswith("linux"):
        return open_camera_device(f"/dev/video{index}", f"camera {index} (/dev/video{index})")
    if sys.platform == "darwin":
        # "<video>:none": no audio device. AVFoundation needs a frame rate the camera supports; 30 is near universal.
        return VideoSource(
            target=f"{index}:none",
            description=f"camera {index}",
            kind="stream",
            container_format="avfoundation",
            options={"framerate": "30"},
        )
    raise InputError(f"camera indices work on Linux and macOS; on {sys.platform} pass the camera's stream URL")


def open_camera_device(path: str, description: str | None = None) -> VideoSource:
    return VideoSource(target=path, description=description or f"camera {path}", kind="stream", container_format="v4l2")


# ----------------------------------------------------------------------------------------------------- entry point


def open_source(spec: str | os.PathLike) -> FrameSource:
    """The source for ``spec``: a folder, an image or video file, a glob pattern, a camera index or a stream URL.

    Raises InputError when it does not exist or cannot be opened (videos are opened here, images when read).
    """
    text = os.fspath(spec)
    if _URL.match(text) and not Path(text).exists():
        return VideoSource(target=text, description=f"stream {text}", kind="stream", timeout=STREAM_TIMEOUT_S)
    if text.isdigit() and not Path(text).exists():
        return open_camera(int(text))
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFiles.from_folder(path)
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return ImageFiles([path], path.parent, f"image {path}")
        return VideoSource(str(path), f"video {path}", "video")
    if path.exists():  # neither file nor folder: a device such as /dev/video0
        return open_camera_device(str(path))
    if any(c in text for c in _GLOB_CHARS):
        return ImageFiles.from_glob(text)
    raise InputError(f"input not found: {text}")


def is_image_input(spec: str | os.PathLike) -> bool:
    """Whether :func:`open_source` reads ``spec`` as image files (a folder, an image file or a glob), whose frames
    have no times, without opening it."""
    path = Path(os.fspath(spec)).expanduser()
    if path.is_dir():
        return True
    if path.exists():
        return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
    return any(c in os.fspath(spec) for c in _GLOB_CHARS) and not _URL.match(os.fspath(spec))


def check_sampling(stride: int | None, fps: float | None, max_frames: int | None) -> None:
    """Reject impossible sampling settings (ValueError, named by the command's flags) before anything is opened."""
    if stride is not None and fps is not None:
        raise ValueError("choose either a stride or a frame rate, not both")
    if stride is not None and stride < 1:
        raise ValueError(f"--stride must be at least 1, got {stride}")
    if fps is not None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"--fps must be a positive number, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be at least 1, got {max_frames}")


def read_frames(
    source: FrameSource,
    stride: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    resume: ReadPosition | None = None,
) -> Iterator[Frame]:
    """Decoded frames of ``source``: every ``stride``-th, or the first of each 1/``fps`` second, at most ``max_frames``.

    Without ``stride`` or ``fps``: every image, and DEFAULT_VIDEO_FPS frames per second of video or stream.
    Unreadable frames are skipped with a warning (and listed in ``source.skipped``); raises InputError when
    no frame at all could be read. Each frame carries its :class:`ReadPosition`; ``resume`` (a frame's position,
    read with the same sampling) goes on after that frame: image files are skipped unread and a video seeks, and
    the frames equal those of an uninterrupted read. A camera or live stream cannot be resumed (InputError).
    """
    check_sampling(stride, fps, max_frames)
    if stride is None and fps is None:
        stride, fps = (1, None) if source.kind == "images" else (None, DEFAULT_VIDEO_FPS)
    if fps is not None and source.kind == "images":
        raise InputError(f"a frame rate needs a video or a stream, and {source.description} is images: use a stride")
    produced = 0
    start: float | None = None
    last_bin = -1
    refs = source.refs()
    if resume is not None:
        if source.kind == "stream":
            raise InputError(f"a camera or live stream cannot be resumed ({source.description}): run without --resume")
        produced, start, last_bin = resume.kept, resume.start, resume.last_bin
        refs = source.refs_after(resume.source_index, resume.pts)
    for ref in refs:
        if max_frames is not None and produced >= max_frames:
            break
        if stride is not None:
            if ref.index % stride:
                continue
        else:
            if ref.timestamp is None:
                raise InputError(f"{source.description} has no frame timestamps: use a stride instead of a frame rate")
            start = ref.timestamp if start is None else start
            time_bin = math.floor((ref.timestamp - start) * fps + 1e-6)  # keep the first frame of each 1/fps bin
            if time_bin <= last_bin:
                continue
            last_bin = time_bin
        try:
            image = ref.decode()
        except UnreadableFrameError as error:
            if source.frame_count == 1:  # nothing to skip to: the one frame is the input
                raise InputError(f"cannot read {source.description}: {error}") from None
            log.warning("skipping %s: %s", ref.name, error)
            source.skipped.append((ref.name, str(error)))
            continue
        produced += 1
        position = ReadPosition(produced, ref.index, ref.timestamp, ref.pts, start, last_bin)
        yield Frame(image=image, name=ref.name, index=ref.index, timestamp=ref.timestamp, position=position)
    if produced == 0:
        if source.skipped:
            name, reason = source.skipped[0]
            raise InputError(
                f"no frame of {source.description} could be read ({len(source.skipped)} unreadable; {name}: {reason})"
            )
        raise InputError(f"{source.description} has no frames")


def expected_frames(
    source: FrameSource, stride: int | None = None, fps: float | None = None, max_frames: int | None = None
) -> int | None:
    """About how many frames :func:`read_frames` will yield with these settings (None: unknown, e.g. a camera)."""
    if stride is None and fps is None:
        stride, fps = (1, None) if source.kind == "images" else (None, DEFAULT_VIDEO_FPS)
    count = None
    if stride is not None and source.frame_count is not None:
        count = math.ceil(source.frame_count / stride)
    elif fps is not None and source.duration is not None:
        count = max(1, math.ceil(source.duration * fps))
        if source.frame_count is not None:
            count = min(count, source.frame_count)
    if max_frames is not None:
        count = max_frames if count is None else min(count, max_frames)
    return count


def _reason(error: BaseException) -> str:
    """One line for an error from Pillow or FFmpeg (FFmpeg messages carry an errno prefix and the path)."""
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return text.strip().splitlines()[0]
