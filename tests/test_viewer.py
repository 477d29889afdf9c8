"""The live viewer: what a selection shows, reopening an output folder, the server and CLI, and (marked
``browser``) the page in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from streamvggt.cli import main
from streamvggt.io import InputError, open_source, read_frames
from streamvggt.pipeline.reconstructor import Reconstructor, reconstruct
from streamvggt.viewer import (
    LiveViewer,
    SceneState,
    Selection,
    is_reconstruction,
    load_reconstruction,
    make_view_frame,
    view,
    view_frame_from_result,
)
from streamvggt.viewer import server as viewer_server
from streamvggt.viewer.scene_state import CUMULATIVE, SINGLE, sampling_stride
from streamvggt.viewer.server import viewer_url
from tests.reconstruct_helpers import HEIGHT, WIDTH, tiny_checkpoint, tiny_model, write_images

CHROMIUM = Path("/usr/bin/chromium")
FRAMES = 4


@pytest.fixture(autouse=True)
def live_viewers(monkeypatch):
    """Every LiveViewer a test starts, stopped (server closed, player thread joined) when the test ends, however
    it ends: a failed assertion inside a test must not leave a server or thread running into the next one."""
    started: list[LiveViewer] = []
    start = LiveViewer.__init__

    def recording_init(self: LiveViewer, *args, **kwargs) -> None:
        start(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(LiveViewer, "__init__", recording_init)
    yield started
    for viewer in started:
        viewer.stop()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("viewer") / "frames"
    write_images(folder, [f"{i}.png" for i in range(FRAMES)])
    return folder


@pytest.fixture(scope="module")
def results(model, frames_dir):
    with open_source(frames_dir) as source:
        return list(Reconstructor(model, size=70).run(read_frames(source)))


@pytest.fixture(scope="module")
def output_dir(model, frames_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("viewer") / "out"
    reconstruct(frames_dir, out, model, size=70, pointmaps=True)
    return out


def synthetic_frame(index: int, height: int = 4, width: int = 6, max_points: int = 24):
    """A frame seen by an identity camera (f = 10, principal point at W/2, H/2) at depth 2 + index, with
    confidence equal to the pixel's position in row-major order (1 .. H*W) and the point map at x = index."""
    intrinsic = np.array([[10.0, 0, width / 2], [0, 10.0, height / 2], [0, 0, 1]])
    extrinsic = np.hstack([np.eye(3), [[0.0], [0.0], [float(index)]]])  # camera centre at z = -index
    depth = np.full((height, width), 2.0 + index, dtype=np.float32)
    conf = np.arange(1, height * width + 1, dtype=np.float32).reshape(height, width)
    image = np.full((height, width, 3), 10 * index, dtype=np.uint8)
    pointmap = np.zeros((height, width, 3), dtype=np.float32)
    pointmap[..., 0] = index
    valid = np.ones((height, width), dtype=bool)
    return make_view_frame(
        index, f"{index}.png", image, extrinsic, intrinsic, depth, conf, valid, (pointmap, conf), max_points
    )


@pytest.fixture
def scene() -> SceneState:
    state = SceneState()
    for index in range(FRAMES):
        state.add(synthetic_frame(index))
    return state


# ---------------------------------------------------------------------------------------------- the scene model


def test_slider_shows_frames_up_to_t_or_frame_t_alone(scene):
    assert scene.shown_frames(Selection(2, CUMULATIVE)) == [0, 1, 2]
    assert scene.shown_frames(Selection(2, SINGLE)) == [2]
    assert scene.shown_frames(Selection(0, CUMULATIVE)) == [0]
    assert scene.shown_frames(Selection(9, CUMULATIVE)) == [0, 1, 2, 3]  # clamped to the frames there are
    assert scene.shown_frames(Selection(9, SINGLE)) == [3]
    assert SceneState().shown_frames(Selection(0)) == []
    with pytest.raises(ValueError, match="time mode"):
        scene.shown_frames(Selection(1, "backwards"))


def test_shown_points_are_those_of_the_shown_frames_in_order(scene):
    xyz, rgb = scene.shown_points(Selection(2, CUMULATIVE, "pointmap", 0.0))
    assert len(xyz) == 3 * 24
    np.testing.assert_array_equal(xyz[:, 0], np.repeat([0, 1, 2], 24))  # the point map's x is the frame index
    np.testing.assert_array_equal(rgb[:, 0], np.repeat([0, 10, 20], 24))
    xyz, _ = scene.shown_points(Selection(2, SINGLE, "pointmap", 0.0))
    assert len(xyz) == 24 and (xyz[:, 0] == 2).all()


def test_confidence_percentile_keeps_each_frames_pixels_at_or_above_it(scene):
    # Confidences 1..24 per frame: the 50th percentile is 12.5, so 12 pixels of each frame stay.
    counts = {p: len(scene.shown_points(Selection(0, SINGLE, "depth", p))[0]) for p in (0, 50, 75, 99)}
    assert counts == {0: 24, 50: 12, 75: 6, 99: 1}
    xyz, _ = scene.frame(0).confident("pointmap", 50)
    assert len(xyz) == 12


def test_depth_points_are_unprojected_with_the_camera(scene):
    frame = scene.frame(1)  # depth 3, camera translated by z = +1: world z = 3 - 1
    xyz, conf = frame.points["depth"]
    assert xyz.shape == (4, 6, 3) and conf.shape == (4, 6)
    np.testing.assert_allclose(xyz[..., 2], 2.0)
    np.testing.assert_allclose(xyz[0, :, 0], (np.arange(6) - 3) * 3 / 10, rtol=1e-6)  # x = (u - cx) z / f
    np.testing.assert_allclose(frame.centre, [0, 0, -1])
    assert frame.fov_y == pytest.approx(2 * np.arctan(2 / 10))
    np.testing.assert_allclose(scene.trajectory(2), [[0, 0, 0], [0, 0, -1], [0, 0, -2]])


def test_frames_are_sampled_to_bound_the_points_per_frame():
    assert sampling_stride((392, 518), 60_000) == 2 and sampling_stride((392, 518), 50_000) == 3  # 196 x 259 = 50,764
    assert sampling_stride((4, 6), 24) == 1 and sampling_stride((4, 6), 23) == 2 and sampling_stride((4, 6), 2) == 4
    frame = synthetic_frame(0, max_points=6)
    assert frame.stride == 2 and frame.points["depth"][0].shape == (2, 3, 3) and frame.colors.shape == (2, 3, 3)
    np.testing.assert_array_equal(frame.points["depth"][1], [[1, 3, 5], [13, 15, 17]])  # every 2nd row and column


def test_frames_must_arrive_in_order():
    state = SceneState()
    state.add(synthetic_frame(0))
    with pytest.raises(ValueError, match="in order"):
        state.add(synthetic_frame(2))


def test_export_ply_writes_exactly_the_points_on_screen(scene, tmp_path):
    selection = Selection(1, CUMULATIVE, "pointmap", 50.0)
    count = scene.export_ply(tmp_path / "shown.ply", selection)
    xyz, rgb = scene.shown_points(selection)
    assert count == len(xyz) == 24
    cloud = trimesh.load(tmp_path / "shown.ply")
    np.testing.assert_allclose(cloud.vertices, xyz)
    np.testing.assert_array_equal(cloud.colors[:, :3], rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["shown.ply"]  # no temporary file left


# ------------------------------------------------------------------------------------ reopening an output folder


def test_reconstruct_saves_what_the_viewer_needs(output_dir):
    cameras = json.loads((output_dir / "cameras.json").read_text())
    frame = cameras["frames"][2]
    assert frame["image"] == "images/000002.png"
    assert (frame["pointmap"], frame["pointmap_conf"]) == ("pointmap/000002.npy", "pointmap/000002_conf.npy")
    assert np.asarray(Image.open(output_dir / frame["image"])).shape == (HEIGHT, WIDTH, 3)
    assert np.load(output_dir / frame["pointmap"]).shape == (HEIGHT, WIDTH, 3)
    assert is_reconstruction(output_dir) and not is_reconstruction(output_dir / "images")


def test_reopened_folder_shows_what_the_stream_showed(output_dir, results):
    reopened = list(load_reconstruction(output_dir))
    assert [f.index for f in reopened] == list(range(FRAMES))
    for loaded, result in zip(reopened, results, strict=True):
        streamed = view_frame_from_result(result)
        assert loaded.name == streamed.name
        np.testing.assert_array_equal(loaded.image, streamed.image)
        np.testing.assert_allclose(loaded.extrinsic, streamed.extrinsic, atol=1e-12)
        np.testing.assert_array_equal(loaded.valid, streamed.valid)
        for source in ("depth", "pointmap"):
            np.testing.assert_allclose(loaded.points[source][0], streamed.points[source][0], rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(loaded.points[source][1], streamed.points[source][1])


def test_folder_from_before_images_and_point_maps_reopens_with_grey_depth_points(output_dir, tmp_path, caplog):
    old = shutil.copytree(output_dir, tmp_path / "old", ignore=shutil.ignore_patterns("images", "pointmap"))
    cameras = json.loads((old / "cameras.json").read_text())
    for frame in cameras["frames"]:
        for key in ("image", "pointmap", "pointmap_conf"):
            del frame[key]
    (old / "cameras.json").write_text(json.dumps(cameras))
    state = SceneState()
    for frame in load_reconstruction(old):
        state.add(frame)
    assert len(state) == FRAMES and state.sources == ("depth",)
    assert (state.frame(0).colors == 160).all()
    assert "4 frames" in caplog.text and "no saved image" in caplog.text


def test_incomplete_folder_is_a_one_line_input_error(output_dir, tmp_path):
    broken = shutil.copytree(output_dir, tmp_path / "broken")
    (broken / "depth" / "000002.npy").unlink()
    with pytest.raises(InputError, match=r"cannot read .*000002\.npy"):
        list(load_reconstruction(broken))
    (broken / "cameras.json").write_text('{"frames": []}')
    with pytest.raises(InputError, match="lists no frames"):
        list(load_reconstruction(broken))


# --------------------------------------------------------------------------------------- the server, the command


def test_viewer_follows_the_stream_and_exports_the_selection(results, tmp_path):
    with LiveViewer(port=0, export_dir=tmp_path) as viewer:
        assert viewer.url == f"http://127.0.0.1:{viewer.port}" and viewer.port > 0
        for result in results:
            viewer.add_frame(result)
        assert viewer.selection() == Selection(FRAMES - 1, CUMULATIVE, "depth", 50.0)  # followed the last frame
        assert viewer.state.sources == ("depth", "pointmap")
        path, count = viewer.export_ply()
        assert path == tmp_path / "view_001.ply" and count == len(viewer.state.shown_points(viewer.selection())[0])
        assert len(trimesh.load(path).vertices) == count
        assert viewer.export_ply()[0].name == "view_002.ply"  # never overwrites an earlier export


def test_viewer_warns_when_listening_beyond_this_machine(caplog):
    with LiveViewer(host="0.0.0.0", port=0):
        pass
    assert "anyone who can reach this machine" in caplog.text


def test_export_button_is_off_beyond_this_machine_unless_allowed(caplog):
    # A page the whole network may open must not let it write files here without being asked to.
    with LiveViewer(host="0.0.0.0", port=0) as remote:
        assert not remote.export_enabled and remote._export.disabled
        assert remote._export._impl.update_cb == []  # no callback: a forged click writes nothing
    switch = "--allow-remote-export, or allow_remote_export=True in Python,"
    assert f"Export PLY is off ({switch} turns it on)" in caplog.text
    with LiveViewer(host="0.0.0.0", port=0, allow_remote_export=True) as allowed:
        assert allowed.export_enabled and not allowed._export.disabled and len(allowed._export._impl.update_cb) == 1
    with LiveViewer(port=0) as local:
        assert local.export_enabled and not local._export.disabled


class RecordingClient:
    """Stands in for a browser's viser client: records the files sent to it."""

    def __init__(self) -> None:
        self.files: list[tuple[str, bytes]] = []

    def send_file_download(self, filename: str, content: bytes) -> None:
        self.files.append((filename, content))


def test_download_sends_the_points_on_screen_to_the_browser_on_any_host(results, tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    # Export is off on this host; a download sends the file to the browser and writes nothing here.
    with LiveViewer(host="0.0.0.0", port=0, export_dir=exports) as viewer:
        for result in results:
            viewer.add_frame(result)
        assert len(viewer._download._impl.update_cb) == 1
        viewer._slider.value = 1
        client = RecordingClient()
        viewer._download_clicked(client)
        ((name, data),) = client.files
        xyz, rgb = viewer.state.shown_points(viewer.selection())
    assert name == "frames_000-001.ply" and len(xyz) > 0
    (tmp_path / name).write_bytes(data)
    cloud = trimesh.load(tmp_path / name)
    np.testing.assert_allclose(np.asarray(cloud.vertices), xyz, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(cloud.colors)[:, :3], rgb)
    assert list(exports.iterdir()) == []


def test_cli_passes_allow_remote_export_to_the_viewer(output_dir, monkeypatch):
    seen = []
    stop = LiveViewer.stop

    def recording_stop(self: LiveViewer) -> None:
        seen.append(self.export_enabled)
        stop(self)

    monkeypatch.setattr(LiveViewer, "stop", recording_stop)
    for flags in ([], ["--allow-remote-export"]):
        args = ["view", str(output_dir), "--host", "0.0.0.0", "--port", "0", "--exit-when-done", *flags]
        assert main(args) == 0
    assert seen == [False, True]


@pytest.mark.parametrize(("export_dir", "why"), [("afile/x", "no such folder"), ("afile", "it is not a folder")])
def test_an_export_dir_that_cannot_take_files_fails_before_the_model_loads(
    tmp_path, monkeypatch, capsys, export_dir, why
):
    (tmp_path / "afile").write_text("not a folder")
    write_images(tmp_path / "frames", ["0.png"])
    monkeypatch.setattr("streamvggt.pipeline.reconstructor.load_model", pytest.fail)
    code = main(["view", str(tmp_path / "frames"), "--port", "0", "--export-dir", str(tmp_path / export_dir)])
    assert code == 1
    message = f"cannot export to {tmp_path / export_dir}: {why} (--export-dir)"
    assert capsys.readouterr().err == f"streamvggt view: error: {message}\n"


def test_confidence_slider_takes_every_accepted_percentile(output_dir, capsys):
    with LiveViewer(port=0, percentile=99.5) as viewer:
        slider = viewer._percentile
        assert (slider.min, slider.max, slider.step) == (0.0, 100.0, 0.5)
        assert viewer.selection().percentile == 99.5
    assert main(["view", str(output_dir), "--port", "0", "--exit-when-done", "--conf-threshold", "99.5"]) == 0
    assert f"{FRAMES} frames reopened" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"percentile in \[0, 100\), got 100"):
        LiveViewer(port=0, percentile=100.0)


def test_server_stops_when_building_the_gui_fails(monkeypatch):
    servers = []

    class Recorded(viewer_server.viser.ViserServer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            servers.append(self)

    def broken_gui(self, percentile: float) -> None:
        raise RuntimeError("no GUI")

    monkeypatch.setattr(viewer_server.viser, "ViserServer", Recorded)
    monkeypatch.setattr(LiveViewer, "_build_gui", broken_gui)
    with pytest.raises(RuntimeError, match="no GUI"):
        LiveViewer(port=0)
    (server,) = servers
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", server.get_port()), timeout=2).close()


def test_url_brackets_ipv6_addresses():
    assert viewer_url("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert viewer_url("0.0.0.0", 8080) == "http://127.0.0.1:8080"
    assert viewer_url("", 8080) == "http://127.0.0.1:8080"
    assert viewer_url("localhost", 80) == "http://localhost:80"
    assert viewer_url("::1", 8080) == "http://[::1]:8080"
    assert viewer_url("::", 8080) == "http://[::1]:8080"
    assert viewer_url("fe80::1", 9) == "http://[fe80::1]:9"
    if not socket.has_ipv6:
        return
    with LiveViewer(host="::1", port=0) as viewer:
        assert viewer.url == f"http://[::1]:{viewer.port}"
        with urllib.request.urlopen(viewer.url, timeout=10) as page:  # the URL is one a browser can open
            assert page.status == 200


def play_threads() -> int:
    return sum(t.name == "viewer-play" and t.is_alive() for t in threading.enumerate())


class SlowButton:
    """A Play button whose label takes 10 ms to change, as a message to a slow browser might: it holds each click
    between reading the play state and starting the player, where clicks on other threads could interleave."""

    def __init__(self) -> None:
        self._label = "Play"

    @property
    def label(self) -> str:
        return self._label

    @label.setter
    def label(self, label: str) -> None:
        time.sleep(0.01)
        self._label = label


def test_concurrent_play_clicks_start_at_most_one_player():
    with LiveViewer(port=0) as viewer:
        for index in range(2):
            viewer.add_frame(synthetic_frame(index))
        viewer._play = SlowButton()
        for _ in range(10):
            clicks = threading.Barrier(4, timeout=10)  # four browsers press Play at the same moment

            def click(clicks: threading.Barrier) -> None:
                clicks.wait()
                viewer._toggle_play()

            threads = [threading.Thread(target=click, args=(clicks,)) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=10)
            assert play_threads() <= 1
            assert not viewer._playing.is_set() and viewer._play.label == "Play"  # four toggles: paused again
    assert play_threads() == 0


def test_concurrent_exports_write_distinct_files(tmp_path):
    with LiveViewer(port=0, export_dir=tmp_path) as viewer:
        for index in range(FRAMES):
            viewer.add_frame(synthetic_frame(index))
        start = threading.Barrier(6, timeout=10)
        written = []

        def export() -> None:
            start.wait()
            written.append(viewer.export_ply())

        threads = [threading.Thread(target=export) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    assert sorted(path.name for path, _ in written) == [f"view_{n:03d}.ply" for n in range(1, 7)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"view_{n:03d}.ply" for n in range(1, 7)]  # no temp files
    for path, count in written:
        assert count == 4 * 12 and len(trimesh.load(path).vertices) == count  # 4 frames, 12 pixels each above p50


def test_failed_export_leaves_no_placeholder(tmp_path, monkeypatch):
    with LiveViewer(port=0, export_dir=tmp_path) as viewer:
        viewer.add_frame(synthetic_frame(0))

        def full_disk(path, selection) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(viewer.state, "export_ply", full_disk)
        viewer._export_clicked()
        assert viewer._exported.content == "export failed: No space left on device"
    assert list(tmp_path.iterdir()) == []


class ViserClient:
    """A bare viser client on a websocket: collects the strings of every message the server sends (node names,
    markdown such as "frames: 3"), as a browser would receive them."""

    def __init__(self, port: int) -> None:
        import msgspec
        import viser
        from viser._messages import ViewerCameraMessage  # what the browser sends; viser has no public client
        from websockets.sync.client import connect

        self.socket = connect(f"ws://127.0.0.1:{port}", subprotocols=[f"viser-v{viser.__version__}"])
        self.strings: set[str] = set()
        # viser counts a client as connected once it reports its camera, as a browser does on load.
        camera = ViewerCameraMessage((1, 0, 0, 0), (0, 0, 0), 1.0, 0.01, 100.0, 480, 640, (0, 0, 1), (0, -1, 0))
        self.socket.send(msgspec.msgpack.encode(camera.as_serializable_dict([])))

    def receive_until(self, *wanted: str, timeout: float = 20.0) -> None:
        import msgspec
        import zstandard

        deadline = time.monotonic() + timeout
        while not set(wanted) <= self.strings:
            raw = self.socket.recv(timeout=max(deadline - time.monotonic(), 0.01))
            size, compressed = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little")
            inner = zstandard.ZstdDecompressor().decompress(raw[16 : 16 + compressed], max_output_size=size)
            self._collect(msgspec.msgpack.decode(inner))

    def _collect(self, value) -> None:
        if isinstance(value, str):
            self.strings.add(value)
        elif isinstance(value, dict):
            for item in value.values():
                self._collect(item)
        elif isinstance(value, list | tuple):
            for item in value:
                self._collect(item)

    def close(self) -> None:
        self.socket.close()


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_browser_leaving_mid_stream_leaves_the_stream_and_server_running(caplog):
    caplog.set_level("INFO", logger="streamvggt.viewer.server")
    total = 12
    with LiveViewer(port=0) as viewer:
        for index in range(2):
            viewer.add_frame(synthetic_frame(index))
        stopping = threading.Event()

        def feed() -> None:
            for index in range(2, total):
                if stopping.is_set():
                    return
                viewer.add_frame(synthetic_frame(index))
                time.sleep(0.02)

        feeder = threading.Thread(target=feed)
        clients: list[ViserClient] = []
        try:
            first = ViserClient(viewer.port)
            clients.append(first)
            first.receive_until("frames: 2", "/frames/000001/points")  # joined mid-stream: sees the frames so far
            feeder.start()
            wait_until(lambda: len(viewer.state) >= 4)
            first.close()  # leaves while frames are still arriving
            assert len(viewer.state) < total
            feeder.join(timeout=30)
            assert not feeder.is_alive() and len(viewer.state) == total
            wait_until(lambda: "browser 0 left" in caplog.text)

            second = ViserClient(viewer.port)  # the server still serves, with every frame
            clients.append(second)
            second.receive_until(
                f"frames: {total}", *(f"/frames/{i:06d}/{node}" for i in range(total) for node in ("points", "camera"))
            )
        finally:
            stopping.set()
            if feeder.ident is not None:
                feeder.join(timeout=30)
            for client in clients:
                client.close()


def test_gui_callbacks_on_other_threads_while_frames_arrive_keep_the_scene_consistent(tmp_path):
    total = 12
    with LiveViewer(port=0, export_dir=tmp_path) as viewer:
        viewer.add_frame(synthetic_frame(0))
        done = threading.Event()
        errors: list[BaseException] = []

        def browser(seed: int) -> None:
            # What a browser's events do: each control change runs its callback on a viser thread.
            rng = np.random.default_rng(seed)
            try:
                while not done.is_set():
                    viewer._slider.value = int(rng.integers(0, total))
                    viewer._percentile.value = float(rng.choice([0.0, 50.0, 99.5]))
                    viewer._mode.value = str(rng.choice(["frames up to t", "frame t alone"]))
                    viewer._toggle_play()
                    viewer.export_ply()
            except BaseException as error:
                errors.append(error)

        browsers = [threading.Thread(target=browser, args=(seed,)) for seed in range(2)]
        for thread in browsers:
            thread.start()
        try:
            for index in range(1, total):
                viewer.add_frame(synthetic_frame(index))
        finally:
            done.set()  # the browsers stop even when a frame fails to arrive
            for thread in browsers:
                thread.join(timeout=30)
        assert errors == [] and not any(thread.is_alive() for thread in browsers)
        viewer._slider.value, viewer._percentile.value, viewer._mode.value = total - 1, 0.0, "frames up to t"
        assert len(viewer._clouds) == len(viewer._frustums) == total
        assert viewer._counts == [24] * total  # every cloud recomputed for percentile 0
        assert viewer._shown.content == f"shown: frames 0-{total - 1}, {24 * total:,} points"
        exports = sorted(tmp_path.iterdir())
        assert [p.name for p in exports] == [f"view_{n:03d}.ply" for n in range(1, len(exports) + 1)]


CTRL_C_DEADLINE = 60.0  # seconds; the stream of the test takes about 2 s


def test_view_streams_an_input_then_serves_until_ctrl_c(model, frames_dir, tmp_path, live_viewers):
    lines, gave_up = [], threading.Event()
    ctrl_c = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))

    def announce(line: str) -> None:
        lines.append(line)
        if "Ctrl-C" in line:  # the stream has ended: press Ctrl-C
            ctrl_c.start()

    def give_up() -> None:
        # The Ctrl-C never came or never landed: stop the server so that serve_forever returns and the test fails.
        gave_up.set()
        for viewer in live_viewers:
            viewer.stop()

    watchdog = threading.Timer(CTRL_C_DEADLINE, give_up)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C raises KeyboardInterrupt
    watchdog.start()
    try:
        summary = view(frames_dir, model, port=0, size=70, export_dir=tmp_path, announce=announce)
    finally:
        watchdog.cancel()
        ctrl_c.cancel()
        signal.signal(signal.SIGINT, previous)
    assert not gave_up.is_set(), f"view() still served {CTRL_C_DEADLINE:.0f} s after it began; lines: {lines}"
    assert summary.frames == FRAMES and not summary.reopened and not summary.interrupted
    assert lines[0] == f"viewer: {summary.url}" and f"{FRAMES} frames at {summary.url}" in lines[1]


def test_cli_view_reopens_an_output_folder(output_dir, capsys):
    assert main(["view", str(output_dir), "--port", "0", "--exit-when-done"]) == 0
    stdout = capsys.readouterr().out
    assert "viewer: http://127.0.0.1:" in stdout and f"{FRAMES} frames reopened from its files" in stdout


def test_cli_reconstruct_with_view_writes_outputs_and_shows_them(frames_dir, tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "out"
    args = ["reconstruct", str(frames_dir), "-o", str(out), "--checkpoint", str(checkpoint), "--size", "70"]
    # 99.5: a percentile both the written points.ply and the viewer's confidence slider take
    assert main([*args, "--view", "--port", "0", "--exit-when-done", "--no-progress", "--conf-threshold", "99.5"]) == 0
    stdout = capsys.readouterr().out
    assert "viewer: http://127.0.0.1:" in stdout and f"{FRAMES} frames in" in stdout
    assert (out / "points.ply").is_file() and len(list((out / "images").iterdir())) == FRAMES


def test_cli_view_bad_host_is_one_line(frames_dir, capsys):
    assert main(["view", str(frames_dir), "--host", "203.0.113.7", "--exit-when-done"]) == 1
    stderr = capsys.readouterr().err
    assert stderr.startswith("streamvggt view: error: cannot listen on 203.0.113.7") and stderr.count("\n") == 1


# --------------------------------------------------------------------------------------------- in the browser


def canvas_pixels(page) -> np.ndarray:
    """[H, W, 3] uint8 screenshot of the 3D canvas (the largest canvas on the page)."""
    import io

    box = max(
        (c.bounding_box() for c in page.locator("canvas").all()),
        key=lambda b: 0 if b is None else b["width"] * b["height"],
    )
    return np.asarray(Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB"))


def wait_for_canvas(page, drawn, timeout: float = 15.0) -> np.ndarray:
    """The canvas once ``drawn(pixels)`` holds (software WebGL takes a few frames to draw a changed scene)."""
    import time

    deadline = time.monotonic() + timeout
    while not drawn(pixels := canvas_pixels(page)):
        if time.monotonic() > deadline:
            pytest.fail("the canvas did not show the expected change")
        page.wait_for_timeout(250)
    return pixels


def browser_missing(reason: str) -> None:
    """Skip the browser test on a developer's machine without a browser; fail it in CI (CI=true), where a
    missing browser would otherwise turn the only end-to-end check of the page into a silent skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}: the browser test cannot run")
    pytest.skip(reason)


def playwright_sync_api():
    """Playwright's sync API, and /usr/bin/chromium present (else :func:`browser_missing`)."""
    try:
        from playwright import sync_api
    except ImportError:
        browser_missing("playwright is not installed (pip install .[dev])")
    if not CHROMIUM.exists():
        browser_missing(f"{CHROMIUM} is missing (make chromium, or apt-get install chromium)")
    return sync_api


def test_a_missing_browser_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but /usr/bin/chromium is missing"):
        browser_missing(f"{CHROMIUM} is missing")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="/usr/bin/chromium is missing"):
        browser_missing(f"{CHROMIUM} is missing")


@pytest.mark.browser
def test_browser_sees_the_stream_live_and_the_slider_scrubs_time(results, tmp_path):
    sync_api = playwright_sync_api()
    with LiveViewer(port=0, export_dir=tmp_path) as viewer, sync_api.sync_playwright() as playwright:
        for result in results[:2]:
            viewer.add_frame(result)
        # SwiftShader (software WebGL) is what a headless machine without a GPU has; recent Chromium asks for it.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--enable-unsafe-swiftshader"])
        leaving = browser.new_page()
        leaving.goto(viewer.url)
        leaving.get_by_text("frames: 2").wait_for(timeout=30_000)  # connected mid-stream: sees the frames so far
        viewer.add_frame(results[2])
        leaving.close()  # a browser leaves mid-stream: the stream goes on
        for result in results[3:]:
            viewer.add_frame(result)
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(viewer.url)
        page.get_by_text(f"frames: {FRAMES}").wait_for(timeout=30_000)
        page.get_by_text(f"shown: frames 0-{FRAMES - 1}").wait_for()
        close = page.locator(".mantine-Notification-closeButton")  # "software WebGL" notice over the canvas
        if close.count():
            close.first.click()
        wait_for_canvas(page, lambda pixels: pixels.std() > 10)  # not blank
        page.wait_for_timeout(1000)  # let the camera images and the closing notice settle
        all_frames = canvas_pixels(page)

        slider = page.get_by_role("slider").first  # the frame slider comes first in the panel
        assert slider.get_attribute("aria-valuemax") == str(FRAMES - 1)
        slider.focus()
        page.keyboard.press("Home")  # drag the slider back to the first frame
        page.get_by_text("shown: frame 0,").wait_for()
        first_frame = wait_for_canvas(page, lambda pixels: np.abs(pixels.astype(int) - all_frames).mean() > 2)
        page.screenshot(path=str(tmp_path / "viewer.png"))
        page.get_by_role("button", name="Download PLY").click()
        link = page.get_by_role("link", name=re.compile("frames_000-000"))  # viser offers the file in a notice
        with page.expect_download(timeout=30_000) as download_info:
            link.click()
        download = download_info.value
        downloaded = Path(download.path()).read_bytes()
        browser.close()
        shown_points = len(viewer.state.shown_points(viewer.selection())[0])
        assert viewer.selection().frame == 0

    assert all_frames.std() > 10 and first_frame.std() > 10  # the canvas draws something, not a flat colour
    assert np.abs(first_frame.astype(int) - all_frames).mean() > 2  # fewer points on screen after the move
    assert download.suggested_filename == "frames_000-000.ply"  # the browser saved what is on screen: frame 0
    assert f"element vertex {shown_points}\n".encode() in downloaded[:300] and shown_points > 0
    if os.environ.get("STREAMVGGT_VIEWER_SCREENSHOT"):  # e.g. docs/viewer.png
        shutil.copy(tmp_path / "viewer.png", os.environ["STREAMVGGT_VIEWER_SCREENSHOT"])
