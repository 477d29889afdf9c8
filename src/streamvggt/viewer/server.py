"""The browser viewer: a viser server that draws a :class:`SceneState` and the controls that select from it.

Each frame gets its own nodes (a point cloud and a camera frustum showing the frame), so moving the frame slider
only toggles visibility; changing the point source or confidence percentile recomputes the clouds. viser keeps the
scene on the server, so a browser that connects mid-stream receives everything so far, and one that closes costs
nothing. GUI callbacks run on viser's threads while frames arrive on the caller's: one lock orders them.

"Export PLY" writes files on this machine, so a page that anyone on the network may open (a host other than
loopback) has it switched off unless ``allow_remote_export`` says otherwise. "Download PLY" sends the same file to
the browser that clicked and writes nothing here, so it is on everywhere.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from streamvggt.extras import require
from streamvggt.viewer.scene_state import (
    CUMULATIVE,
    MAX_POINTS_PER_FRAME,
    SINGLE,
    SOURCES,
    SceneState,
    Selection,
    ViewFrame,
    moved_view_frame,
    view_frame_from_result,
)

if TYPE_CHECKING:
    from streamvggt.io.outputs.writer import FrameCorrections
    from streamvggt.pipeline.reconstructor import FrameResult

viser = require("viser", "viewer")
vtf = require("viser.transforms", "viewer")
log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# What turns Export PLY on beyond loopback, named for both ways in: the command's flag and the API's keyword.
REMOTE_EXPORT_SWITCH = "--allow-remote-export, or allow_remote_export=True in Python,"
TIME_MODES = {"frames up to t": CUMULATIVE, "frame t alone": SINGLE}
# The confidence slider spans 0-100 in these steps, so every starting percentile in [0, 100) fits (viser rejects
# an initial value outside the range); at 100 each frame keeps only its most confident pixels.
PERCENTILE_STEP = 0.5
PLAY_FPS = 4.0  # playback speed of the play button, frames per second
THUMBNAIL_WIDTH = 160  # pixels of the image drawn in each frustum: recognisable, and cheap to send per frame
CURRENT_CAMERA, PAST_CAMERA, TRAJECTORY = (235, 80, 30), (90, 90, 90), (40, 110, 230)


class LiveViewer:
    """A viser server showing frames as they are added (:meth:`add_frame`); stop it with :meth:`stop` (or use it
    as a context manager).

    host/port: where to listen (127.0.0.1 by default: other hosts expose the scene to the network, with a
    warning); viser takes the next free port when ``port`` is busy, and port 0 picks any free one (see
    :attr:`url`). export_dir: where the "Export PLY" button writes. allow_remote_export: keep that button on
    when ``host`` is not loopback (off by default: anyone who can open the page could fill the disk).
    max_points_per_frame: pixels sampled per frame. percentile/source: the controls' initial confidence
    percentile in [0, 100) and point source.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        export_dir: str | Path = ".",
        allow_remote_export: bool = False,
        max_points_per_frame: int = MAX_POINTS_PER_FRAME,
        percentile: float = 50.0,
        source: str = "depth",
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"unknown point source '{source}': use {' or '.join(SOURCES)}")
        if not 0 <= percentile < 100:
            raise ValueError(f"the confidence threshold is a percentile in [0, 100), got {percentile}")
        self.export_enabled = host in LOOPBACK or allow_remote_export
        if host not in LOOPBACK:
            off = "" if self.export_enabled else f"; Export PLY is off ({REMOTE_EXPORT_SWITCH} turns it on)"
            log.warning("the viewer listens on %s: anyone who can reach this machine can see the scene%s", host, off)
        with _quiet():
            self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.host = host
        self.state = SceneState()
        self.export_dir = Path(export_dir)
        self.max_points_per_frame = max_points_per_frame
        self._wanted_source = source
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._playing = threading.Event()
        self._player: threading.Thread | None = None
        self._clouds: list[viser.PointCloudHandle | None] = []
        self._counts: list[int] = []  # points in each frame's cloud
        self._frustums: list[viser.CameraFrustumHandle] = []
        self._visible: list[tuple[bool, bool, bool]] = []  # (cloud shown, frustum shown, current) last sent
        self._cloud_key: tuple[str, float] | None = None  # (source, percentile) the clouds were computed with
        self._unit = 1.0  # one sampled pixel's footprint at the first frame's median depth (world units)
        self._frustum_scale = 0.1
        self._corrections: dict[int, np.ndarray] = {}  # per corrected frame: the [4, 4] similarity it shows
        try:
            self.server.scene.set_up_direction("-y")  # OpenCV world: y points down
            self.server.on_client_connect(lambda client: log.info("browser %d connected", client.client_id))
            self.server.on_client_disconnect(lambda client: log.info("browser %d left", client.client_id))
            self._build_gui(percentile)
        except BaseException:
            with _quiet():  # the server runs already: nothing else would stop it
                self.server.stop()
            raise

    @property
    def port(self) -> int:
        """The port the server listens on (the next free one after the requested port if that was busy)."""
        return self.server.get_port()

    @property
    def url(self) -> str:
        """The address to open in a browser, e.g. ``http://127.0.0.1:8080``."""
        return viewer_url(self.host, self.port)

    def __enter__(self) -> LiveViewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------------------ frames in

    def add_frame(self, frame: FrameResult | ViewFrame) -> None:
        """Show the next frame of the stream (a :class:`~streamvggt.results.FrameResult` or a ViewFrame)."""
        view = frame if isinstance(frame, ViewFrame) else view_frame_from_result(frame, self.max_points_per_frame)
        with self._lock:
            follow = int(self._slider.value) >= len(self.state) - 1 and not self._playing.is_set()
            count = self.state.add(view)
            if count == 1:
                self._first_frame(view)
            self._add_nodes(view)
            self._slider.max = max(count - 1, 1)  # a slider needs two ends: with one frame, both show frame 0
            self._slider.disabled = count < 2
            self._status.content = f"frames: {count}"
            # Control changes below call _refresh (viser runs callbacks of server-side assignments at once).
            if tuple(self._source.options) != self.state.sources:
                self._source.options = self.state.sources
            if count == 1 and self._wanted_source != self._source.value:
                if self._wanted_source in self.state.sources:
                    self._source.value = self._wanted_source
                else:
                    log.warning("no '%s' points to show: showing depth points", self._wanted_source)
            if follow and self._slider.value != count - 1:
                self._slider.value = count - 1
            else:
                self._refresh()

    def apply_corrections(self, corrections: FrameCorrections) -> None:
        """Re-place the frames a long-video map corrected (``streamvggt reconstruct --loop-closure --view``): each
        frame's points move by its world-to-world similarity and its camera to the corrected pose. Corrections are
        relative to the frame as streamed; frames not shown yet are skipped (they arrive corrected later)."""
        with self._lock:
            changed = []
            for index, extrinsic, transform in zip(
                corrections.indices, corrections.extrinsics, corrections.transforms, strict=True
            ):
                index = int(index)
                if index >= len(self.state):
                    continue
                new = np.eye(4)
                new[:3] = transform
                delta = new @ np.linalg.inv(self._corrections.get(index, np.eye(4)))
                view = moved_view_frame(self.state.frame(index), delta[:3], extrinsic)
                self.state.replace(index, view)
                self._corrections[index] = new
                changed.append(view)
            if not changed:
                return
            with self.server.atomic():
                for view in changed:
                    frustum = self._frustums[view.index]
                    frustum.wxyz = vtf.SO3.from_matrix(view.extrinsic[:, :3].T).wxyz
                    frustum.position = view.centre
                    if self._cloud_key is not None:
                        self._set_cloud(view.index, *self._cloud_key)
            log.info("viewer: %d frames re-placed by loop closure", len(changed))
            self._refresh()

    def _first_frame(self, view: ViewFrame) -> None:
        """Sizes (points, frustums) and the initial camera from the first frame's depth."""
        xyz, _ = view.points["depth"]
        z = (xyz.reshape(-1, 3) @ view.extrinsic[:, :3].T + view.extrinsic[:, 3])[:, 2]
        z = z[np.isfinite(z) & (z > 0)]
        depth = float(np.median(z)) if len(z) else 1.0
        self._unit = depth * view.stride / float(view.intrinsic[1, 1])
        self._frustum_scale = 0.1 * depth
        camera = self.server.initial_camera
        # Above, behind and to the side of the first camera: the points, the cameras and the path all show.
        camera.position = view.centre + np.array([0.5, -0.8, -1.0]) * depth
        camera.look_at = view.centre + np.array([0.0, 0.0, 0.6 * depth])
        camera.up = (0.0, -1.0, 0.0)

    def _add_nodes(self, view: ViewFrame) -> None:
        height, width = view.image.shape[:2]
        thumbnail = Image.fromarray(view.image)
        thumbnail = thumbnail.resize((THUMBNAIL_WIDTH, max(1, round(height * THUMBNAIL_WIDTH / width))))
        world_from_camera = view.extrinsic[:, :3].T
        self._frustums.append(
            self.server.scene.add_camera_frustum(
                f"/frames/{view.index:06d}/camera",
                fov=view.fov_y,
                aspect=width / height,
                scale=self._frustum_scale,
                thickness=2.0,
                thickness_units="screen",
                color=PAST_CAMERA,
                image=np.asarray(thumbnail),
                format="jpeg",
                wxyz=vtf.SO3.from_matrix(world_from_camera).wxyz,
                position=view.centre,
                visible=False,
            )
        )
        self._clouds.append(None)
        self._counts.append(0)
        self._visible.append((False, False, False))
        if self._cloud_key is not None:
            self._set_cloud(view.index, *self._cloud_key)

    # -------------------------------------------------------------------------------------------------- the GUI

    def _build_gui(self, percentile: float) -> None:
        gui = self.server.gui
        # The share button would send the scene through viser's public relay: this viewer stays local.
        gui.configure_theme(control_width="medium", show_share_button=False)
        self._status = gui.add_markdown("frames: 0")  # the page reports the frame count (tests read it)
        self._shown = gui.add_markdown("shown: nothing yet")
        with gui.add_folder("Time"):
            self._slider = gui.add_slider("Frame", min=0, max=1, step=1, initial_value=0, disabled=True)
            self._mode = gui.add_dropdown("Show", tuple(TIME_MODES), initial_value="frames up to t")
            self._play = gui.add_button("Play", hint=f"step through the frames at {PLAY_FPS:g} frames/s")
        with gui.add_folder("Points"):
            self._source = gui.add_dropdown("Source", ("depth",), initial_value="depth", hint="depth map or point map")
            self._percentile = gui.add_slider(
                "Confidence",
                min=0.0,
                max=100.0,
                step=PERCENTILE_STEP,
                initial_value=float(percentile),
                hint="hide each frame's pixels below this percentile of its confidence",
            )
            self._size = gui.add_slider(
                "Point size", min=0.2, max=5.0, step=0.1, initial_value=1.0, hint="in pixels at the first frame's depth"
            )
            self._cameras = gui.add_checkbox("Show cameras", True)
        with gui.add_folder("Export"):
            if self.export_enabled:
                hint = f"write the points on screen to {self.export_dir}"
            else:
                hint = f"off: the viewer listens on {self.host}, beyond here; {REMOTE_EXPORT_SWITCH} turns it on"
            self._export = gui.add_button("Export PLY", hint=hint, disabled=not self.export_enabled)
            # Safe on any host: the file goes to the browser that asked, nothing is written here.
            self._download = gui.add_button("Download PLY", hint="save the points on screen from this browser")
            self._exported = gui.add_markdown("")
        for control in (self._slider, self._mode, self._source, self._percentile, self._cameras):
            control.on_update(lambda _: self._refresh())
        self._size.on_update(lambda _: self._resize())
        self._play.on_click(lambda _: self._toggle_play())
        if self.export_enabled:  # viser ignores clicks on a disabled button; without a callback nothing can write
            self._export.on_click(lambda _: self._export_clicked())
        self._download.on_click(lambda event: self._download_clicked(event.client))

    def selection(self) -> Selection:
        """What the controls select now."""
        return Selection(
            frame=int(self._slider.value),
            mode=TIME_MODES[self._mode.value],
            source=self._source.value,
            percentile=float(self._percentile.value),
        )

    def _refresh(self) -> None:
        """Bring the scene in line with the controls: clouds, visibility, current camera, trajectory, status."""
        with self._lock:
            if not len(self.state):
                return
            selection = self.selection()
            key = (selection.source, selection.percentile)
            with self.server.atomic():
                if key != self._cloud_key:
                    self._cloud_key = key
                    for index in range(len(self.state)):
                        self._set_cloud(index, *key)
                shown = set(self.state.shown_frames(selection))
                current = max(shown)
                for index in range(len(self.state)):
                    self._show(index, index in shown, index == current)
                self._draw_trajectory(current)
            points = sum(self._counts[i] for i in shown)
            frames = f"frames 0-{current}" if selection.mode == CUMULATIVE and current > 0 else f"frame {current}"
            self._shown.content = f"shown: {frames}, {points:,} points"

    def _set_cloud(self, index: int, source: str, percentile: float) -> None:
        xyz, rgb = self.state.frame(index).confident(source, percentile)
        if self._clouds[index] is not None:
            self._clouds[index].remove()
            self._clouds[index] = None
        self._counts[index] = len(xyz)
        if len(xyz):  # viser's client rejects an empty cloud
            self._clouds[index] = self.server.scene.add_point_cloud(
                f"/frames/{index:06d}/points",
                xyz,
                rgb,
                point_size=self._size.value * self._unit,
                precision="float32",  # float16 loses detail far from the origin
                visible=self._visible[index][0],
            )

    def _show(self, index: int, visible: bool, current: bool) -> None:
        state = (visible, visible and self._cameras.value, current)
        if state == self._visible[index]:
            return  # send only changes: scrubbing a long stream touches few nodes
        cloud = self._clouds[index]
        if cloud is not None:
            cloud.visible = state[0]
        self._frustums[index].visible = state[1]
        self._frustums[index].color = CURRENT_CAMERA if current else PAST_CAMERA
        self._visible[index] = state

    def _draw_trajectory(self, last: int) -> None:
        centres = self.state.trajectory(last).astype(np.float32)
        if len(centres) < 2:
            self.server.scene.remove_by_name("/trajectory")
            return
        self.server.scene.add_line_segments(
            "/trajectory",
            np.stack([centres[:-1], centres[1:]], axis=1),
            TRAJECTORY,
            thickness=3.0,
            thickness_units="screen",
        )

    def _resize(self) -> None:
        with self._lock, self.server.atomic():
            for cloud in self._clouds:
                if cloud is not None:
                    cloud.point_size = self._size.value * self._unit

    # ------------------------------------------------------------------------------------------- play, export

    def _toggle_play(self) -> None:
        """Start or pause playback. Clicks from several browsers arrive on several threads: under the lock, only
        one of them can find no player and start one."""
        with self._lock:
            if self._playing.is_set():
                self._playing.clear()
                self._play.label = "Play"
                return
            self._playing.set()
            self._play.label = "Pause"
            # A player paused less than a frame ago is still alive: it sees the flag set again and keeps going.
            if self._player is None or not self._player.is_alive():
                self._player = threading.Thread(target=self._play_loop, name="viewer-play", daemon=True)
                self._player.start()

    def _play_loop(self) -> None:
        """Advance the frame slider at PLAY_FPS, from the end back to the first frame, until paused or stopped."""
        while self._playing.is_set() and not self._closed.wait(1.0 / PLAY_FPS):
            with self._lock:
                count = len(self.state)
                if count:
                    self._slider.value = (min(int(self._slider.value), count - 1) + 1) % count

    def export_ply(self, path: str | Path | None = None) -> tuple[Path, int]:
        """Write the points on screen as PLY (default: the next free ``view_NNN.ply`` in export_dir, never an
        existing file, even when exports run at once); returns the path and the number of points. Raises OSError
        if it cannot be written."""
        with self._lock:
            selection = self.selection()
        if path is not None:
            target = Path(path)
            count = self.state.export_ply(target, selection)
        else:
            target = self._reserve_export_path()
            try:
                count = self.state.export_ply(target, selection)
            except BaseException:
                target.unlink(missing_ok=True)  # the empty placeholder of a failed export
                raise
        log.info("exported %d points to %s", count, target)
        return target, count

    def _export_clicked(self) -> None:
        try:
            path, count = self.export_ply()
        except OSError as error:
            log.warning("PLY export failed: %s", error)
            self._exported.content = f"export failed: {error.strerror or error}"
            return
        self._exported.content = f"wrote {count:,} points to `{path.resolve()}`"

    def _download_clicked(self, client: viser.ClientHandle | None) -> None:
        """Send the points on screen to the browser that clicked, as ``frames_<first>-<last>.ply``."""
        if client is None:  # a click always comes from a client; nothing to answer otherwise
            return
        with self._lock:
            selection = self.selection()
        data, count = self.state.ply_bytes(selection)
        shown = self.state.shown_frames(selection)
        name = f"frames_{shown[0]:03d}-{shown[-1]:03d}.ply" if shown else "empty.ply"
        client.send_file_download(name, data)
        self._exported.content = f"sent {count:,} points to the browser as `{name}`"

    def _reserve_export_path(self) -> Path:
        """The first free ``view_NNN.ply`` in export_dir, created empty with O_EXCL so that no other export (this
        process or another) can pick it too; the export then replaces it."""
        number = 1
        while True:
            path = self.export_dir / f"view_{number:03d}.ply"
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                return path
            except FileExistsError:
                number += 1

    # --------------------------------------------------------------------------------------------- lifetime

    def set_note(self, note: str) -> None:
        """Add ``note`` after the frame count (e.g. "stream ended")."""
        self._status.content = f"frames: {len(self.state)} ({note})"

    def serve_forever(self) -> None:
        """Block until Ctrl-C or :meth:`stop`; Ctrl-C returns normally."""
        with contextlib.suppress(KeyboardInterrupt):
            while not self._closed.wait(0.5):
                pass

    def stop(self) -> None:
        """Stop playback and the server (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._playing.clear()
        if self._player is not None:
            self._player.join()
        with _quiet():
            self.server.stop()


def viewer_url(host: str, port: int) -> str:
    """The URL a browser opens for a server on ``host``: a wildcard address becomes the loopback address of its
    family, and an IPv6 address is bracketed (``http://[::1]:8080``)."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow what viser prints to stdout (a banner with the URL, "Server stopped"): the caller reports the URL."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
