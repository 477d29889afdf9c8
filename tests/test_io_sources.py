"""Frame sources: folders in natural order, globs, videos, streams, sampling and unreadable inputs."""

from __future__ import annotations

import logging
import struct

import numpy as np
import pytest

from streamvggt.io import InputError, open_source, read_frames
from streamvggt.io.inputs.sources import expected_frames, natural_key
from tests.reconstruct_helpers import frame_pixels, write_images, write_video


def names(frames) -> list[str]:
    return [f.name for f in frames]


def test_natural_order_puts_2_before_10():
    assert sorted(["10.jpg", "2.jpg", "1.jpg", "frame_b2.png", "frame_a10.png"], key=natural_key) == [
        "1.jpg",
        "2.jpg",
        "10.jpg",
        "frame_a10.png",
        "frame_b2.png",
    ]


def test_folder_yields_images_in_natural_order_and_ignores_other_files(tmp_path):
    write_images(tmp_path, ["10.png", "2.jpg", "1.PNG"])
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / ".hidden.png").write_bytes(b"junk")  # hidden files (.DS_Store, ._x.png) are never frames
    (tmp_path / "sub").mkdir()
    with open_source(tmp_path) as source:
        assert source.kind == "images" and source.frame_count == 3
        frames = list(read_frames(source))
    assert names(frames) == ["1.PNG", "2.jpg", "10.png"]
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[0].image.shape == (56, 70, 3) and frames[0].image.dtype == np.uint8
    assert (frames[0].image == frame_pixels(2)).all()  # 1.PNG was written third; PNG is lossless


def test_glob_selects_matching_images(tmp_path):
    write_images(tmp_path / "a", ["1.png", "3.png"])
    write_images(tmp_path / "b", ["2.png", "x.jpg"])
    with open_source(str(tmp_path / "*" / "*.png")) as source:
        assert names(read_frames(source)) == ["a/1.png", "a/3.png", "b/2.png"]


def test_single_image_file(tmp_path):
    (path,) = write_images(tmp_path, ["only.png"])
    with open_source(path) as source:
        assert names(read_frames(source)) == ["only.png"]


def test_stride_and_max_frames(tmp_path):
    write_images(tmp_path, [f"{i}.png" for i in range(7)])
    with open_source(tmp_path) as source:
        assert expected_frames(source, stride=3) == 3
        assert names(read_frames(source, stride=3)) == ["0.png", "3.png", "6.png"]
    with open_source(tmp_path) as source:
        assert expected_frames(source, max_frames=2) == 2
        assert names(read_frames(source, max_frames=2)) == ["0.png", "1.png"]


def test_frame_rate_needs_timestamps(tmp_path):
    write_images(tmp_path, ["0.png"])
    with open_source(tmp_path) as source, pytest.raises(InputError, match="use a stride"):
        next(read_frames(source, fps=2.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stride": 2, "fps": 1.0}, "not both"),
        ({"stride": 0}, r"^--stride must be at least 1, got 0$"),
        ({"fps": -1.0}, r"^--fps must be a positive number, got -1\.0$"),
        ({"max_frames": 0}, r"^--max-frames must be at least 1, got 0$"),  # the flag the command line user typed
    ],
)
def test_bad_sampling_settings_are_rejected(tmp_path, kwargs, message):
    write_images(tmp_path, ["0.png"])
    with open_source(tmp_path) as source, pytest.raises(ValueError, match=message):
        next(read_frames(source, **kwargs))


def test_video_frames_have_timestamps_and_sample_by_rate(tmp_path):
    path = write_video(tmp_path / "clip.mp4", frames=12, fps=10)
    with open_source(path) as source:
        assert source.kind == "video" and source.frame_count == 12
        assert expected_frames(source, fps=5.0) == 6
        frames = list(read_frames(source, fps=5.0))
    assert [f.index for f in frames] == [0, 2, 4, 6, 8, 10]
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert frames[0].image.shape == (56, 70, 3)
    assert np.abs(frames[0].image.astype(int) - frame_pixels(0)).mean() < 10  # lossy, but the same picture


def set_display_rotation(path, matrix: tuple[int, ...]) -> None:
    """Overwrite the video track's display matrix in an MP4's ``tkhd`` box (16.16 / 2.30 fixed point, as phones
    write it): PyAV cannot set it when encoding."""
    data = bytearray(path.read_bytes())
    box = data.find(b"tkhd")
    # version+flags (4), times/track id/reserved/duration (20 in version 0), reserved (8), layer..volume (8)
    offset = box + 4 + 4 + (20 if data[box + 4] == 0 else 32) + 8 + 8
    data[offset : offset + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(bytes(data))


def test_video_with_a_portrait_display_matrix_is_turned_upright(tmp_path):
    path = write_video(tmp_path / "portrait.mp4", frames=2, fps=10)
    # The iPhone portrait matrix: shown turned 90 degrees clockwise.
    set_display_rotation(path, (0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30))
    with open_source(path) as source:
        frame = next(iter(read_frames(source)))
    upright = np.rot90(frame_pixels(0), k=-1)
    assert frame.image.shape == (70, 56, 3) and frame.image.flags.c_contiguous
    assert np.abs(frame.image.astype(int) - upright).mean() < 10


def test_video_default_is_one_frame_per_second(tmp_path):
    path = write_video(tmp_path / "clip.mp4", frames=12, fps=10)
    with open_source(path) as source:
        assert [f.timestamp for f in read_frames(source)] == pytest.approx([0.0, 1.0])


def test_video_stride(tmp_path):
    path = write_video(tmp_path / "clip.mp4", frames=12, fps=10)
    with open_source(path) as source:
        assert [f.index for f in read_frames(source, stride=5)] == [0, 5, 10]


def test_stream_url_is_read_as_a_stream(tmp_path):
    path = write_video(tmp_path / "clip.mp4", frames=6, fps=10)
    with open_source(f"file:{path}") as source:
        assert source.kind == "stream"
        assert len(list(read_frames(source, stride=1))) == 6


def test_missing_input(tmp_path):
    with pytest.raises(InputError, match="input not found"):
        open_source(tmp_path / "nope")
    with pytest.raises(InputError, match="matches nothing"):
        open_source(str(tmp_path / "*.png"))


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="is empty"):
        open_source(tmp_path)


def test_folder_of_non_images(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.csv").write_text("1,2")
    with pytest.raises(InputError, match="no images in folder"):
        open_source(tmp_path)


def test_text_file_named_jpg(tmp_path):
    (tmp_path / "fake.jpg").write_text("this is not a JPEG")
    with open_source(tmp_path / "fake.jpg") as source, pytest.raises(InputError, match="cannot read image"):
        list(read_frames(source))


def test_text_file_named_mp4(tmp_path):
    (tmp_path / "fake.mp4").write_text("this is not a video")
    with pytest.raises(InputError, match=r"cannot open video .*fake.mp4: Invalid data"):
        open_source(tmp_path / "fake.mp4")


def test_missing_camera_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    with pytest.raises(InputError, match="cannot open camera 97"):
        open_source("97")


def test_truncated_jpeg_among_good_frames_is_skipped_with_a_warning(tmp_path, caplog):
    write_images(tmp_path, ["0.jpg", "1.jpg", "2.jpg"])
    data = (tmp_path / "1.jpg").read_bytes()
    (tmp_path / "1.jpg").write_bytes(data[: len(data) // 2])
    with open_source(tmp_path) as source, caplog.at_level(logging.WARNING):
        frames = list(read_frames(source))
        assert names(frames) == ["0.jpg", "2.jpg"]
        assert [name for name, _ in source.skipped] == ["1.jpg"]
    assert any("skipping 1.jpg" in r.message and "truncated" in r.message.lower() for r in caplog.records)


def test_folder_where_no_image_can_be_read(tmp_path):
    (tmp_path / "a.jpg").write_text("not a JPEG")
    (tmp_path / "b.png").write_bytes(b"\x89PNG broken")
    with open_source(tmp_path) as source, pytest.raises(InputError, match=r"no frame of folder .* could be read \(2"):
        list(read_frames(source))
