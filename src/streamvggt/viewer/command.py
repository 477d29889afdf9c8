"""``streamvggt view``: stream an input into the live viewer, or reopen a finished reconstruction in it."""

from __future__ import annotations

import itertools
import logging
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.pipeline.options import ReconstructOptions
from streamvggt.pipeline.reconstructor import Reconstructor, map_follower
from streamvggt.pipeline.run import FrameCallback, FrameConsumer, open_input, run_frames
from streamvggt.results import FrameResult
from streamvggt.viewer.load import is_reconstruction, load_reconstruction
from streamvggt.viewer.scene_state import MAX_POINTS_PER_FRAME, ViewFrame
from streamvggt.viewer.server import LiveViewer

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
    options: ReconstructOptions | None = None,
    announce: Callable[[str], None] = log.info,
    **keywords: Any,
) -> ViewSummary:
    """Show ``source`` in a browser viewer at http://host:port as it is processed; returns once the stream has
    ended and, with ``wait``, Ctrl-C was pressed.

    source: anything :func:`streamvggt.reconstruct` reads (streamed through ``model`` by the same frame loop,
    without a writer), or an output folder of ``streamvggt reconstruct`` (reopened from its files; the model and
    stream options are ignored).
    options: a :class:`~streamvggt.pipeline.options.ReconstructOptions`, or the same as keywords (those of
    :func:`streamvggt.reconstruct`, plus the viewer's host, port, wait, allow_remote_export, export_dir,
    max_points_per_frame). conf_threshold and points are the controls' initial percentile and point source;
    export_dir: an existing folder where "Export PLY" writes (default: the reopened folder, else the working
    folder). announce: called with the lines a user needs (the URL; how to stop), e.g. ``print``.
    Raises InputError, CheckpointError or ValueError with a one-line message, all before the model loads.
    """
    if options is None:
        options = ReconstructOptions.from_keywords("view", **keywords)
    elif keywords:
        raise TypeError(f"view() takes options or keyword options, not both: {', '.join(keywords)}")
    server = options.viewer
    if is_reconstruction(source):
        options.check_viewer()
        frames = load_reconstruction(source, _points_per_frame(options))
        first = next(frames)  # the folder's problems surface before the server starts
        with open_viewer_for(options, server.export_dir or source, announce) as viewer:
            count, interrupted = _show(viewer, itertools.chain([first], frames))
            finish_stream(viewer, interrupted, server.wait, announce)
        return ViewSummary(url=viewer.url, frames=count, reopened=True, interrupted=interrupted)

    device = options.check(loads_model=not isinstance(model, StreamVGGT), viewer=True)
    with (
        open_input(source, options.stream) as opened,
        open_viewer_for(options, server.export_dir or ".", announce) as viewer,
    ):
        reconstructor = Reconstructor.for_input(model, options, opened, device)
        consumers: list[FrameConsumer] = [FrameCallback(viewer.add_frame)]
        if options.map.loop_closure:  # after the viewer: a loop re-places frames it already shows
            consumers.append(map_follower(reconstructor, options, opened, on_correction=viewer.apply_corrections))
        loop = run_frames(reconstructor, opened.frames, consumers, total=opened.total, progress=options.progress)
        finish_stream(viewer, loop.interrupted, server.wait, announce)
    return ViewSummary(
        url=viewer.url,
        frames=loop.frames,
        reopened=False,
        interrupted=loop.interrupted,
        skipped=list(opened.source.skipped),
    )


def open_viewer_for(
    options: ReconstructOptions, export_dir: str | os.PathLike, announce: Callable[[str], None]
) -> LiveViewer:
    """:func:`open_viewer` with the viewer section of ``options`` and its initial controls (conf_threshold,
    points)."""
    server = options.viewer
    return open_viewer(
        server.host,
        server.port,
        export_dir=export_dir,
        allow_remote_export=server.allow_remote_export,
        percentile=options.output.conf_threshold,
        points=options.output.points,
        max_points_per_frame=_points_per_frame(options),
        announce=announce,
    )


def _points_per_frame(options: ReconstructOptions) -> int:
    given = options.viewer.max_points_per_frame
    return MAX_POINTS_PER_FRAME if given is None else given


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
