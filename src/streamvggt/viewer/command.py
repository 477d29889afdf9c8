"""``streamvggt view``: stream an input into the live viewer, or reopen a finished reconstruction in it."""

from __future__ import annotations

import itertools
import logging
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from streamvggt.io.inputs.preprocess import DEFAULT_SIZE, Preprocessor
from streamvggt.io.inputs.sources import expected_frames, open_source, read_frames
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.pipeline.reconstructor import FrameResult, Reconstructor
from streamvggt.runtime.device import select_device
from streamvggt.runtime.precision import resolve_precision
from streamvggt.streaming.cache import parse_policy
from streamvggt.viewer.load import is_reconstruction, load_reconstruction
from streamvggt.viewer.scene_state import MAX_POINTS_PER_FRAME, ViewFrame
from streamvggt.viewer.server import LiveViewer
from streamvggt.weights import load_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ViewSummary:
    """What :func:`view` showed."""

    url: str
    frames: int
    reopened: bool  # read from a finished reconstruction, without the model
    interrupted: bool = False  # the stream was stopped by Ctrl-C
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (frame, reason) of unreadable frames


def view(
    source: str | os.PathLike,
    model: StreamVGGT | str | os.PathLike | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    cache: str = "full",
    device: str | torch.device | None = None,
    precision: str = "auto",
    compile: bool | str = False,
    preprocess: str = "crop",
    size: int = DEFAULT_SIZE,
    stride: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    percentile: float = 50.0,
    points: str = "depth",
    export_dir: str | os.PathLike | None = None,
    allow_remote_export: bool = False,
    max_points_per_frame: int = MAX_POINTS_PER_FRAME,
    progress: bool = False,
    wait: bool = True,
    announce: Callable[[str], None] = log.info,
) -> ViewSummary:
    """Show ``source`` in a browser viewer at http://host:port as it is processed; returns once the stream has
    ended and, with ``wait``, Ctrl-C was pressed.

    source: anything :func:`streamvggt.reconstruct` reads (streamed through ``model``, see its options), or an
    output folder of ``streamvggt reconstruct`` (reopened from its files; the model options are ignored).
    precision, compile: the trunk precision the model loads in and whether steps run compiled (see
    :func:`streamvggt.reconstruct`).
    percentile, points: the controls' initial confidence percentile and point source.
    export_dir: an existing folder where "Export PLY" writes (default: the reopened folder, else the working
    folder); checked before anything loads.
    allow_remote_export: keep "Export PLY" on when ``host`` is not loopback (see :class:`LiveViewer`).
    announce: called with the lines a user needs (the URL; how to stop), e.g. ``print``.
    Raises InputError, CheckpointError or ValueError with a one-line message.
    """
    if export_dir is not None:
        check_export_dir(export_dir)  # at start-up: Export PLY would only fail at the click
    options = {
        "percentile": percentile,
        "points": points,
        "max_points_per_frame": max_points_per_frame,
        "allow_remote_export": allow_remote_export,
    }
    if is_reconstruction(source):
        frames = load_reconstruction(source, max_points_per_frame)
        first = next(frames)  # the folder's problems surface before the server starts
        with open_viewer(host, port, export_dir=export_dir or source, announce=announce, **options) as viewer:
            count, interrupted = _show(viewer, itertools.chain([first], frames))
            finish_stream(viewer, interrupted, wait, announce)
        return ViewSummary(viewer.url, count, reopened=True, interrupted=interrupted)

    parse_policy(cache)  # reject bad settings before anything slow
    preprocessor = Preprocessor(preprocess, size)
    if not isinstance(model, StreamVGGT):
        device = select_device(device)
        resolve_precision(device, precision)  # a bad precision fails before the viewer starts
    with open_source(source) as frames_source:
        frames = read_frames(frames_source, stride, fps, max_frames)
        first_frame = next(frames)
        preprocessor.check(first_frame.image.shape[1], first_frame.image.shape[0], first_frame.name)
        with open_viewer(host, port, export_dir=export_dir or ".", announce=announce, **options) as viewer:
            if not isinstance(model, StreamVGGT):
                model = load_model(model, device=device, precision=precision)
            reconstructor = Reconstructor(model, cache, preprocessor, compile=compile)
            results = reconstructor.run(itertools.chain([first_frame], frames))
            total = expected_frames(frames_source, stride, fps, max_frames)
            bar = tqdm(results, total=total, unit="frame", disable=not progress, dynamic_ncols=True)
            count, interrupted = _show(viewer, bar)
            finish_stream(viewer, interrupted, wait, announce)
    return ViewSummary(viewer.url, count, False, interrupted, list(frames_source.skipped))


def open_viewer(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    export_dir: str | os.PathLike = ".",
    allow_remote_export: bool = False,
    percentile: float = 50.0,
    points: str = "depth",
    max_points_per_frame: int = MAX_POINTS_PER_FRAME,
    announce: Callable[[str], None] = log.info,
) -> LiveViewer:
    """A started :class:`LiveViewer` (a context manager that stops it) whose URL has been announced."""
    check_host(host, port)
    viewer = LiveViewer(
        host,
        port,
        export_dir=export_dir,
        allow_remote_export=allow_remote_export,
        max_points_per_frame=max_points_per_frame,
        percentile=percentile,
        source=points,
    )
    announce(f"viewer: {viewer.url}")
    return viewer


def _show(viewer: LiveViewer, frames: Iterable[FrameResult | ViewFrame]) -> tuple[int, bool]:
    """Add every frame to the viewer; returns (frames shown, whether Ctrl-C stopped the stream)."""
    try:
        for frame in frames:
            viewer.add_frame(frame)
    except KeyboardInterrupt:
        if not len(viewer.state):
            raise
        log.warning("interrupted: showing the first %d frames", len(viewer.state))
        return len(viewer.state), True
    return len(viewer.state), False


def finish_stream(viewer: LiveViewer, interrupted: bool, wait: bool, announce: Callable[[str], None]) -> None:
    """Mark the end of the stream on the page and, with ``wait``, keep serving until Ctrl-C."""
    viewer.set_note("stream interrupted" if interrupted else "stream ended")
    if wait:
        announce(f"{len(viewer.state)} frames at {viewer.url}; press Ctrl-C to stop the viewer")
        viewer.serve_forever()


def check_export_dir(path: str | os.PathLike) -> None:
    """ValueError with one line unless ``path`` is a folder this process can write to (Export PLY's target)."""
    if not os.path.isdir(path):
        why = "it is not a folder" if os.path.exists(path) else "no such folder"
        raise ValueError(f"cannot export to {path}: {why} (--export-dir)")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"cannot export to {path}: the folder is not writable (--export-dir)")


def check_host(host: str, port: int) -> None:
    """ValueError with one line unless ``host`` is an address of this machine and ``port`` a port number (viser
    would retry a bad address on a thousand ports)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0-65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
    except OSError as error:
        raise ValueError(f"cannot listen on {host}: {error.strerror or error}") from None
