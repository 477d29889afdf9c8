"""Reading a source again from a saved position gives exactly the frames an uninterrupted read gives after it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamvggt.io import InputError, open_source, read_frames
from streamvggt.io.inputs.sources import ReadPosition, VideoSource
from tests.reconstruct_helpers import frame_pixels, write_images, write_video


def write_h264(path: Path, frames: int, fps: int = 10, gop: int = 6, b_frames: int = 2) -> Path:
    """H.264 with B-frames and a keyframe every ``gop`` frames: frames in decode order differ from display order,
    and most frames need earlier ones to decode."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 70, 56, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = b_frames
        stream.options = {"keyint_min": str(gop), "sc_threshold": "0", "bf": str(b_frames)}
        for i in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame_pixels(i), format="rgb24")))
        container.mux(stream.encode())
    return path


def read_all(spec, resume: ReadPosition | None = None, **sampling) -> list:
    with open_source(spec) as source:
        return list(read_frames(source, resume=resume, **sampling))


def assert_same_frames(resumed: list, expected: list) -> None:
    assert [(f.name, f.index, f.timestamp, f.position) for f in resumed] == [
        (f.name, f.index, f.timestamp, f.position) for f in expected
    ]
    for got, want in zip(resumed, expected, strict=True):
        assert np.array_equal(got.image, want.image), got.name


def no_reopen(monkeypatch) -> list:
    """Records the video sources opened again (the fallback when seeking fails)."""
    reopened: list = []
    real_open = VideoSource._open

    def spy(self):
        if hasattr(self, "_container"):
            reopened.append(self.description)
        real_open(self)

    monkeypatch.setattr(VideoSource, "_open", spy)
    return reopened


@pytest.mark.parametrize("sampling", [{}, {"stride": 3}, {"max_frames": 5}])
def test_a_folder_resumes_after_its_kth_kept_frame_without_reading_the_earlier_ones(tmp_path, sampling):
    folder = tmp_path / "frames"
    paths = write_images(folder, [f"{i}.png" for i in range(12)])
    expected = read_all(folder, **sampling)
    for k in range(1, len(expected) + 1):
        with open_source(folder) as source:
            for path in paths[: expected[k - 1].index + 1]:
                path.write_bytes(b"gone")  # frames before the position are never decoded again
            resumed = list(read_frames(source, resume=expected[k - 1].position, **sampling))
        write_images(folder, [f"{i}.png" for i in range(12)])
        assert_same_frames(resumed, expected[k:])


def test_a_glob_resumes_like_a_folder(tmp_path):
    write_images(tmp_path / "a", [f"{i}.png" for i in range(5)])
    write_images(tmp_path / "b", [f"{i}.png" for i in range(5)])
    pattern = str(tmp_path / "*" / "*.png")
    expected = read_all(pattern, stride=2)
    assert_same_frames(read_all(pattern, expected[2].position, stride=2), expected[3:])


def test_positions_survive_the_json_round_trip_of_a_saved_state(tmp_path):
    path = write_h264(tmp_path / "clip.mp4", frames=20)
    expected = read_all(path, fps=4.0)
    saved = json.loads(json.dumps(expected[2].position.to_dict()))
    assert_same_frames(read_all(path, ReadPosition.from_dict(saved), fps=4.0), expected[3:])


@pytest.mark.parametrize("sampling", [{"stride": 1}, {"stride": 4}, {"fps": 3.0}, {}])
def test_an_h264_video_with_b_frames_resumes_by_seeking_with_the_same_pixels(tmp_path, monkeypatch, sampling):
    path = write_h264(tmp_path / "clip.mp4", frames=45)
    expected = read_all(path, **sampling)
    reopened = no_reopen(monkeypatch)
    for k in range(1, len(expected) + 1):
        assert_same_frames(read_all(path, expected[k - 1].position, **sampling), expected[k:])
    assert reopened == []  # every resume seeked; none read from the start


def test_a_resumed_video_decodes_only_from_the_keyframe_before_the_position(tmp_path, monkeypatch):
    path = write_h264(tmp_path / "clip.mp4", frames=60, gop=6)
    expected = read_all(path, stride=1)
    decoded = []
    real = VideoSource._decoded

    def counting(self):
        for frame in real(self):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(VideoSource, "_decoded", counting)
    resumed = read_all(path, expected[49].position, stride=1)
    assert len(resumed) == 10
    assert len(decoded) <= 10 + 12  # the rest plus at most two GOPs, not the 50 frames before


def test_an_mpeg4_video_resumes_by_seeking(tmp_path, monkeypatch):
    path = write_video(tmp_path / "clip.mp4", frames=30, fps=10)
    expected = read_all(path, fps=5.0)
    reopened = no_reopen(monkeypatch)
    for k in (1, 4, 9, 15):
        assert_same_frames(read_all(path, expected[k - 1].position, fps=5.0), expected[k:])
    assert reopened == []


def test_a_position_the_seek_cannot_find_falls_back_to_reading_from_the_start(tmp_path, monkeypatch):
    path = write_h264(tmp_path / "clip.mp4", frames=20)
    expected = read_all(path, stride=2)
    reopened = no_reopen(monkeypatch)
    position = expected[3].position
    moved = ReadPosition(**{**position.to_dict(), "pts": position.pts + 1})  # no frame has this timestamp
    assert_same_frames(read_all(path, moved, stride=2), expected[4:])
    assert reopened == [f"video {path}"]


def test_resuming_a_finished_read_yields_nothing(tmp_path):
    path = write_h264(tmp_path / "clip.mp4", frames=12)
    expected = read_all(path, stride=1)
    assert read_all(path, expected[-1].position, stride=1) == []
    folder = tmp_path / "frames"
    write_images(folder, ["a.png", "b.png"])
    assert read_all(folder, read_all(folder)[-1].position) == []


def test_max_frames_counts_the_frames_before_the_position(tmp_path):
    folder = tmp_path / "frames"
    write_images(folder, [f"{i}.png" for i in range(10)])
    expected = read_all(folder, max_frames=6)
    assert [f.index for f in read_all(folder, expected[3].position, max_frames=6)] == [4, 5]


def test_a_camera_or_live_stream_cannot_be_resumed(tmp_path):
    path = write_video(tmp_path / "clip.mp4", frames=6, fps=10)
    position = read_all(path, stride=1)[2].position
    with open_source(f"file:{path}") as source, pytest.raises(InputError) as raised:
        next(read_frames(source, stride=1, resume=position))
    assert str(raised.value) == f"a camera or live stream cannot be resumed (stream file:{path}): run without --resume"
