"""Preprocessing as the reference demo: sizes in crop and pad mode, colour conversion, bad sizes."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from streamvggt.io import InputError, Preprocessor, to_rgb


def blank(width: int, height: int, value: int = 100) -> np.ndarray:
    return np.full((height, width, 3), value, dtype=np.uint8)


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (640, 480, (392, 518)),  # round(480 * 518 / 640 / 14) * 14 = 392
        (1920, 1080, (294, 518)),
        (518, 518, (518, 518)),
        (480, 640, (518, 518)),  # portrait: 686 high after scaling, centre-cropped to 518
    ],
)
def test_crop_mode_sets_width_518_and_height_a_multiple_of_14(width, height, expected):
    out = Preprocessor("crop")(blank(width, height))
    assert out.image.shape == (*expected, 3)
    assert out.image.shape[0] % 14 == 0
    assert out.valid == (0, 0, *expected)


def test_crop_mode_crops_the_centre_of_tall_frames():
    image = blank(480, 640, 0)
    image[:60] = 255  # a white band at the top: rows 0-65 after scaling to 686 rows, cropped from row 84
    out = Preprocessor("crop")(image)
    assert out.image.max() < 10


def test_pad_mode_pads_to_a_white_square():
    out = Preprocessor("pad")(blank(480, 640, 0))  # portrait: height 518, width round(388.5 / 14) * 14 = 392
    assert out.image.shape == (518, 518, 3)
    assert out.valid == (0, 63, 518, 392)
    assert (out.image[:, :63] == 255).all() and (out.image[:, 63 + 392 :] == 255).all()
    assert (out.image[:, 63 : 63 + 392] == 0).all()


def test_pad_mode_landscape_pads_top_and_bottom():
    out = Preprocessor("pad")(blank(640, 480, 0))
    assert out.image.shape == (518, 518, 3)
    assert out.valid == (63, 0, 392, 518)


def test_output_size_follows_the_size_option():
    assert Preprocessor("crop", size=70)(blank(70, 56)).image.shape == (56, 70, 3)
    assert Preprocessor("pad", size=70)(blank(70, 56)).image.shape == (70, 70, 3)
    with pytest.raises(ValueError, match="multiple of 14"):
        Preprocessor("crop", size=500)
    with pytest.raises(ValueError, match="crop or pad"):
        Preprocessor("squash")


def test_rgba_is_composited_on_white():
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:10, :, 3] = 255  # top half opaque red, bottom half transparent
    rgb = to_rgb(Image.fromarray(rgba, "RGBA"))
    assert rgb.shape == (20, 20, 3) and rgb.dtype == np.uint8
    assert (rgb[:10] == [200, 0, 0]).all()
    assert (rgb[10:] == 255).all()


def test_palette_with_transparency_is_composited_on_white():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    image.info["transparency"] = 0
    assert (to_rgb(image) == 255).all()


def test_greyscale_becomes_three_equal_channels():
    grey = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 10, "L")
    rgb = to_rgb(grey)
    assert rgb.shape == (4, 4, 3)
    assert (rgb[..., 0] == np.asarray(grey)).all() and (rgb[..., 0] == rgb[..., 2]).all()


def test_16_bit_greyscale_is_scaled_to_8_bits(tmp_path):
    values = np.array([[0, 32896], [65535, 257]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")  # a 16-bit PNG, opened as mode I;16 or I
    with Image.open(tmp_path / "deep.png") as image:
        assert image.mode.startswith("I")
        rgb = to_rgb(image)
    assert rgb[..., 0].tolist() == [[0, 128], [255, 1]]


def test_float_greyscale_is_scaled_by_its_range():
    image = Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32), "F")
    assert to_rgb(image)[..., 0].tolist() == [[0, 128], [255, 64]]


@pytest.mark.parametrize(("width", "height"), [(1, 1), (13, 100)])
def test_frames_smaller_than_a_patch_are_rejected(width, height):
    with pytest.raises(InputError, match=f"{width}x{height} pixels"):
        Preprocessor("crop")(blank(width, height), "tiny.png")


def test_too_elongated_frames_are_rejected():
    with pytest.raises(InputError, match="too elongated"):
        Preprocessor("crop")(blank(4000, 20), "strip.png")


def test_mixed_sizes_are_resized_to_the_first_frame_with_one_warning(caplog):
    pre = Preprocessor("crop", size=70)
    first = pre(blank(70, 56), "a.png")
    with caplog.at_level(logging.WARNING):
        second = pre(blank(140, 140), "b.png")
        pre(blank(140, 140), "c.png")
    assert second.image.shape == first.image.shape == (56, 70, 3)
    warnings = [r for r in caplog.records if "resizing" in r.message]
    assert len(warnings) == 1
    assert "b.png is 140x140" in warnings[0].message and "70x56" in warnings[0].message
