"""Evaluation: dataset readers, the common input path, the report files, and the depth protocols end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import streamvggt.evaluate.depth as depth_protocols
from streamvggt.evaluate.datasets import open_depth_dataset
from streamvggt.evaluate.datasets.base import read_depth_png
from streamvggt.evaluate.datasets.sintel import read_cam, read_dpt
from streamvggt.evaluate.depth import pixel_weighted_mean, run_depth
from streamvggt.evaluate.report import write_results
from streamvggt.evaluate.runner import eval_preprocessor, resize_to, stream_sequence
from streamvggt.io.errors import InputError
from streamvggt.model.execution import ExecutionPrecision
from tests.eval_fakes import (
    FAKE_MODEL,
    FAKES,
    HEIGHT,
    KITTI_DRIVES,
    SINTEL_SEQUENCES,
    WIDTH,
    depth_of,
    fake_bonn,
    fake_sintel,
    sintel_camera,
    write_cam,
    write_dpt,
)
from tests.hand_metrics import depth_errors, lower_median, pixel_weighted, weiszfeld_scale
from tests.reconstruct_helpers import frame_pixels, tiny_model
from tests.test_eval_depth_fit import hand_adam_l1_fit

# ------------------------------------------------------------------------------------------------------ readers


def test_dpt_files_read_back_exactly(tmp_path):
    depth = np.arange(12, dtype=np.float32).reshape(3, 4) * 0.5 + 0.25
    write_dpt(tmp_path / "d.dpt", depth)
    read = read_dpt(tmp_path / "d.dpt")
    assert read.shape == (3, 4) and read.dtype == np.float32
    np.testing.assert_array_equal(read, depth)


def test_dpt_with_a_wrong_tag_or_size_is_rejected(tmp_path):
    write_dpt(tmp_path / "d.dpt", np.ones((3, 4), np.float32))
    data = (tmp_path / "d.dpt").read_bytes()
    (tmp_path / "short.dpt").write_bytes(data[:-4])
    (tmp_path / "tag.dpt").write_bytes(b"\0\0\0\0" + data[4:])
    with pytest.raises(InputError, match="corrupt"):
        read_dpt(tmp_path / "short.dpt")
    with pytest.raises(InputError, match="wrong tag"):
        read_dpt(tmp_path / "tag.dpt")


def test_cam_files_give_the_intrinsic_and_the_camera_from_world_extrinsic(tmp_path):
    intrinsic, extrinsic = sintel_camera(2)
    write_cam(tmp_path / "c.cam", intrinsic, extrinsic)
    k, n = read_cam(tmp_path / "c.cam")
    np.testing.assert_array_equal(k, intrinsic)
    np.testing.assert_array_equal(n, extrinsic)


def test_sintel_cameras_are_stacked_per_sequence_as_4x4(tmp_path):
    data = open_depth_dataset("sintel", fake_sintel(tmp_path))
    sequence = data.sequences()[0]
    intrinsics, extrinsics = data.cameras(sequence)
    assert intrinsics.shape == (3, 3, 3) and extrinsics.shape == (3, 4, 4)
    np.testing.assert_array_equal(extrinsics[1][:3], sintel_camera(1)[1])
    np.testing.assert_array_equal(extrinsics[:, 3], np.tile([0, 0, 0, 1.0], (3, 1)))


@pytest.mark.parametrize(("units", "stored", "metres"), [(5000, 7500, 1.5), (256, 640, 2.5)])
def test_depth_pngs_are_divided_by_their_units_and_zero_means_no_depth(tmp_path, units, stored, metres):
    Image.fromarray(np.array([[stored, 0]], dtype=np.uint16)).save(tmp_path / "d.png")
    np.testing.assert_array_equal(read_depth_png(tmp_path / "d.png", units), np.array([[metres, 0.0]], np.float32))


def test_an_8_bit_png_is_not_taken_for_depth(tmp_path):
    Image.fromarray(np.full((2, 2), 200, np.uint8)).save(tmp_path / "d.png")
    with pytest.raises(InputError, match="not a 16-bit"):
        read_depth_png(tmp_path / "d.png", 5000)


@pytest.mark.parametrize(
    ("dataset", "sequences", "frames"),
    [("sintel", list(SINTEL_SEQUENCES), 3), ("bonn", None, 3), ("kitti", list(KITTI_DRIVES), 3), ("nyu", ["val"], 3)],
)
def test_readers_list_the_sequences_and_pair_images_with_their_depth(tmp_path, dataset, sequences, frames):
    data = open_depth_dataset(dataset, FAKES[dataset](tmp_path / dataset))
    found = data.sequences()
    if sequences is not None:
        assert [s.name for s in found] == sequences
    assert all(len(s.frames) == frames for s in found)
    frame = found[-1].frames[1]
    image = data.read_image(frame.image)
    assert image.shape == (HEIGHT, WIDTH, 3)
    expected = depth_of(image, dataset)
    gt = data.read_depth(frame.depth)
    if dataset == "kitti":  # sparse: where measured, the stored depth
        assert 0 < (gt > 0).mean() < 0.5
        np.testing.assert_array_equal(gt[gt > 0], expected[gt > 0])
    else:
        np.testing.assert_array_equal(gt, expected)


def test_the_dataset_folder_may_be_given_by_its_parent(tmp_path):
    fake_sintel(tmp_path / "sintel")
    assert open_depth_dataset("sintel", tmp_path).root == tmp_path / "sintel"


def test_a_wrong_folder_names_the_expected_layout(tmp_path):
    with pytest.raises(InputError, match=r"no sintel dataset at .*training/final/<sequence>/\*\.png"):
        open_depth_dataset("sintel", tmp_path)
    with pytest.raises(ValueError, match="unknown depth dataset 'eth3d'"):
        open_depth_dataset("eth3d", tmp_path)


def test_bonn_with_a_missing_depth_map_is_an_error_not_a_shifted_pairing(tmp_path):
    fake_bonn(tmp_path)
    next((tmp_path / "rgbd_bonn_dataset" / "rgbd_bonn_crowd2" / "depth_110").glob("*.png")).unlink()
    with pytest.raises(InputError, match="3 images but 2 depth maps"):
        open_depth_dataset("bonn", tmp_path).sequences()


# ---------------------------------------------------------------------------------------------------- input path


def test_eval_input_resizes_the_long_side_to_518_then_to_multiples_of_14():
    sizes = {(480, 640): (378, 518), (436, 1024): (210, 518), (375, 1242): (154, 518), (518, 518): (518, 518)}
    for (h, w), expected in sizes.items():
        assert eval_preprocessor()(np.zeros((h, w, 3), np.uint8)).image.shape[:2] == expected


def test_eval_input_is_resized_not_cropped():
    image = np.zeros((480, 640, 3), np.uint8)
    image[:, :20] = 255  # a white band at the left edge survives a resize, not a centre crop
    out = eval_preprocessor()(image).image
    assert out[:, 0].min() == 255 and out[:, -1].max() == 0


def _keys_cubic(d: float, a: float = -0.75) -> float:
    """Keys' cubic convolution kernel; a = -0.75 is OpenCV's INTER_CUBIC (and torch's bicubic)."""
    d = abs(d)
    if d <= 1:
        return (a + 2) * d**3 - (a + 3) * d**2 + 1
    return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a if d < 2 else 0.0


def test_resize_to_is_opencv_style_bicubic():
    ramp = np.tile(np.arange(8, dtype=np.float32), (6, 1))
    up = resize_to(ramp, (12, 16))
    assert up.shape == (12, 16)
    for x in range(4, 12):  # away from the borders; half-pixel centres: output x samples input (x + 0.5) / 2 - 0.5
        source = (x + 0.5) / 2 - 0.5
        base = int(np.floor(source))
        expected = sum((base + k) * _keys_cubic(source - base - k) for k in (-1, 0, 1, 2))
        assert up[5, x] == pytest.approx(expected, abs=1e-5)
    np.testing.assert_array_equal(resize_to(ramp, (6, 8)), ramp)


def test_stream_sequence_returns_one_result_per_frame_at_the_model_resolution():
    frames = [(f"f{i}", frame_pixels(i, 84, 56)) for i in range(3)]
    results = stream_sequence(tiny_model(), frames, cache="window:1", preprocessor=eval_preprocessor(70))
    assert [r.name for r in results] == ["f0", "f1", "f2"] and [r.index for r in results] == [0, 1, 2]
    assert results[0].depth.shape == (42, 70)  # 84x56 -> long side 70 -> 70x46.7 -> multiples of 14


# --------------------------------------------------------------------------------------------------------- report


def test_results_are_written_as_json_and_a_markdown_table(tmp_path):
    per_sequence = {"a": {"abs_rel": 0.1, "valid_pixels": 10}, "b": {"abs_rel": float("nan"), "valid_pixels": 5}}
    summary, precision = {"abs_rel": 0.1, "valid_pixels": 15}, ExecutionPrecision("auto", "bf16")
    written = write_results(tmp_path, "x", per_sequence, summary, {"protocol": "p"}, precision=precision)
    document = json.loads((tmp_path / "x.json").read_text())
    assert document["per_sequence"]["b"]["abs_rel"] is None  # strict JSON: NaN becomes null
    assert document["meta"]["protocol"] == "p" and {"machine", "date"} <= set(document["meta"])
    assert document["meta"]["precision"] == {"requested": "auto", "resolved": "bf16"}
    assert written["summary"] == {"abs_rel": 0.1, "valid_pixels": 15}
    table = (tmp_path / "x.md").read_text()
    assert "| sequence | abs_rel | valid_pixels |" in table and "| a | 0.1000 | 10 |" in table
    assert "| **mean** | 0.1000 | 15 |" in table and "| b | nan | 5 |" in table
    assert "- precision: requested auto, resolved bf16\n" in table
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.md"]  # no temporary files left


def test_dataset_means_weight_each_row_by_its_valid_pixels():
    rows = [{"abs_rel": 0.1, "valid_pixels": 30, "frames": 1}, {"abs_rel": 0.5, "valid_pixels": 10, "frames": 2}]
    assert pixel_weighted_mean(rows) == {"abs_rel": pytest.approx(0.2), "valid_pixels": 40, "frames": 3}


# ------------------------------------------------------------------------------------------------------ protocols


def _perfect_stream(dataset: str, scale: float = 3.0):
    """A stand-in for stream_sequence whose depth is the ground truth times ``scale`` (at the GT resolution)."""

    def stream(model, frames, cache="full", preprocessor=None):
        return [SimpleNamespace(depth=scale * depth_of(image, dataset)) for _, image in frames]

    return stream


@pytest.mark.parametrize(
    ("protocol", "dataset", "align"),
    [
        ("monodepth", "sintel", None),
        ("monodepth", "bonn", None),
        ("monodepth", "kitti", None),
        ("monodepth", "nyu", None),
        ("video-depth", "sintel", None),
        ("video-depth", "bonn", "scale&shift"),
        ("video-depth", "kitti", None),
    ],
)
def test_a_prediction_equal_to_the_ground_truth_up_to_scale_scores_perfectly(
    tmp_path, monkeypatch, protocol, dataset, align
):
    monkeypatch.setattr(depth_protocols, "stream_sequence", _perfect_stream(dataset))
    root = FAKES[dataset](tmp_path / "data")
    # The exact fit: the reference's Adam takes steps of about 1e-4 even from the optimum (Adam normalises the
    # gradient of rounding-level residuals), which leaves an Abs Rel of about 1e-5.
    fit = "exact" if align == "scale&shift" else None
    summary = run_depth(protocol, dataset, root, FAKE_MODEL, tmp_path / "out", align=align, fit=fit, plots=False)
    assert summary["abs_rel"] == pytest.approx(0, abs=1e-5) and summary["rmse"] == pytest.approx(0, abs=1e-4)
    assert summary["delta_1.25"] == 1.0
    # Valid pixels are those of the ground truth alone: positive and below the dataset's cap.
    data = open_depth_dataset(dataset, root)
    gts = [data.read_depth(f.depth) for s in data.sequences() for f in s.frames]
    cap = data.max_depth or np.inf
    assert summary["valid_pixels"] == sum(int(((gt > 0) & (gt < cap)).sum()) for gt in gts)


def _stream_with_per_frame_scales(model, frames, cache="full", preprocessor=None):
    """A stand-in for stream_sequence on the Bonn fake: frame i of a sequence (its name ends in 1548266469.<10 + i>
    ...) is predicted as the ground truth times i + 1."""
    return [
        SimpleNamespace(depth=(int(name.split(".")[1][:2]) - 9) * depth_of(image, "bonn")) for name, image in frames
    ]


def test_monodepth_aligns_each_frame_on_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(depth_protocols, "stream_sequence", _stream_with_per_frame_scales)
    summary = run_depth(
        "monodepth", "bonn", FAKES["bonn"](tmp_path / "data"), FAKE_MODEL, tmp_path / "out", plots=False
    )
    assert summary["abs_rel"] == pytest.approx(0, abs=1e-6) and summary["delta_1.25"] == 1.0


def test_video_depth_fits_one_scale_per_sequence(tmp_path, monkeypatch):
    # Frames scaled by 1 and 2 (frames=2): one scale cannot fit both; the L1 optimum fits one frame exactly and
    # misses the other by a factor 2, so half the pixels are off by 50 % or 100 %.
    monkeypatch.setattr(depth_protocols, "stream_sequence", _stream_with_per_frame_scales)
    root = FAKES["bonn"](tmp_path / "data", frames=2)
    summary = run_depth("video-depth", "bonn", root, FAKE_MODEL, tmp_path / "out", max_frames=2, plots=False)
    data = open_depth_dataset("bonn", root)
    rows = []
    for sequence in data.sequences():
        gt = np.stack([data.read_depth(frame.depth) for frame in sequence.frames])
        # float32 as the stand-in streams it: the IRLS starts with half the residuals exactly 0 (weights 1e8), so
        # its scale follows the last bit of the inputs.
        pred = gt * np.float32([1.0, 2.0])[:, None, None]
        rows.append(depth_errors(weiszfeld_scale(pred, gt) * pred, gt))
    for key in ("abs_rel", "rmse", "delta_1.25"):
        assert summary[key] == pytest.approx(pixel_weighted(rows, key), rel=1e-6), key
    assert summary["delta_1.25"] == pytest.approx(0.5)  # one frame fitted exactly, the other off by a factor 2


def test_a_non_finite_prediction_where_the_ground_truth_is_valid_is_an_error(tmp_path, monkeypatch):
    def stream(model, frames, cache="full", preprocessor=None):
        results = []
        for _, image in frames:
            depth = depth_of(image, "sintel").copy()
            depth[depth >= 70] = np.nan  # where the ground truth is beyond Sintel's cap: neither scored nor plotted
            results.append(SimpleNamespace(depth=depth))
        return results

    monkeypatch.setattr(depth_protocols, "stream_sequence", stream)
    root = fake_sintel(tmp_path / "data")
    summary = run_depth("monodepth", "sintel", root, FAKE_MODEL, tmp_path / "out")
    assert summary["abs_rel"] == pytest.approx(0, abs=1e-6) and 0 < summary["valid_pixels"] < 2 * 3 * WIDTH * HEIGHT
    assert len(list((tmp_path / "out" / "plots" / "monodepth-sintel").glob("*.png"))) == 2

    def broken(model, frames, cache="full", preprocessor=None):
        return [SimpleNamespace(depth=np.full((HEIGHT, WIDTH), np.nan, dtype=np.float32)) for _ in frames]

    monkeypatch.setattr(depth_protocols, "stream_sequence", broken)
    with pytest.raises(ValueError, match="predicted depth is not finite at"):
        run_depth("monodepth", "sintel", root, FAKE_MODEL, tmp_path / "out2")


def test_sintel_ground_truth_beyond_70_m_is_not_scored(tmp_path, monkeypatch):
    monkeypatch.setattr(depth_protocols, "stream_sequence", _perfect_stream("sintel"))
    summary = run_depth(
        "monodepth", "sintel", fake_sintel(tmp_path / "data"), FAKE_MODEL, tmp_path / "out", plots=False
    )
    assert 0 < summary["valid_pixels"] < 2 * 3 * WIDTH * HEIGHT


def test_a_wrong_prediction_scores_worse_than_a_perfect_one(tmp_path, monkeypatch):
    def noisy(model, frames, cache="full", preprocessor=None):
        rng = np.random.default_rng(0)
        return [SimpleNamespace(depth=depth_of(im, "nyu") * rng.uniform(0.5, 1.5, (HEIGHT, WIDTH))) for _, im in frames]

    monkeypatch.setattr(depth_protocols, "stream_sequence", noisy)
    root = FAKES["nyu"](tmp_path / "data")
    summary = run_depth("monodepth", "nyu", root, FAKE_MODEL, tmp_path / "out", plots=False)
    # Each frame scaled by its own lower-median ratio, scored on every pixel (NYU has no cap). Mono depth streams
    # each frame alone, so each frame's noise is the stand-in's first draw; the protocol keeps depth as float32.
    data, rows = open_depth_dataset("nyu", root), []
    for frame in data.sequences()[0].frames:
        gt = data.read_depth(frame.depth).astype(np.float64)
        noise = np.random.default_rng(0).uniform(0.5, 1.5, (HEIGHT, WIDTH))
        pred = (depth_of(data.read_image(frame.image), "nyu") * noise).astype(np.float32).astype(np.float64)
        rows.append(depth_errors(pred * lower_median(gt) / lower_median(pred), gt))
    for key in ("abs_rel", "rmse", "delta_1.25"):
        assert summary[key] == pytest.approx(pixel_weighted(rows, key), rel=1e-6), key
    assert summary["abs_rel"] > 0.1  # noise of up to 50 % is not aligned away


def _affine_stream(dataset: str, scale: float, shift: float):
    """A stand-in for stream_sequence predicting ``scale`` * ground truth + ``shift``."""

    def stream(model, frames, cache="full", preprocessor=None):
        return [SimpleNamespace(depth=scale * depth_of(image, dataset) + shift) for _, image in frames]

    return stream


def _valid_gt_and_pred(root, dataset: str, scale: float, shift: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per sequence: the valid ground-truth pixels and the affine prediction there."""
    data = open_depth_dataset(dataset, root)
    out = []
    for sequence in data.sequences():
        gt = np.stack([data.read_depth(frame.depth) for frame in sequence.frames]).astype(np.float64)
        valid = (gt > 0) & (gt < (data.max_depth or np.inf))
        out.append((gt[valid], scale * gt[valid] + shift))
    return out


def test_video_depth_scale_and_shift_defaults_to_the_reference_adam_fit(tmp_path, monkeypatch):
    # Half the depth, 0.3 m short: the reference's Adam (0.1 of travel at most) cannot undo the shift.
    monkeypatch.setattr(depth_protocols, "stream_sequence", _affine_stream("bonn", 0.5, -0.3))
    root = FAKES["bonn"](tmp_path / "data", frames=2)

    summary = run_depth("video-depth", "bonn", root, FAKE_MODEL, tmp_path / "out", align="scale&shift", plots=False)

    rows = []
    for g, p in _valid_gt_and_pred(root, "bonn", 0.5, -0.3):
        scale, shift, _ = hand_adam_l1_fit(p, g)
        rows.append(depth_errors(scale * p + shift, g))
    for key in ("abs_rel", "rmse", "delta_1.25"):
        assert summary[key] == pytest.approx(pixel_weighted(rows, key), rel=1e-7), key
    assert summary["abs_rel"] > 0.05
    assert json.loads((tmp_path / "out" / "video-depth-bonn.json").read_text())["meta"]["fit"] == "reference"


def test_video_depth_exact_fit_undoes_an_affine_prediction(tmp_path, monkeypatch):
    monkeypatch.setattr(depth_protocols, "stream_sequence", _affine_stream("bonn", 0.5, -0.3))
    root = FAKES["bonn"](tmp_path / "data", frames=2)

    summary = run_depth(
        "video-depth", "bonn", root, FAKE_MODEL, tmp_path / "out", align="scale&shift", fit="exact", plots=False
    )

    assert summary["abs_rel"] == pytest.approx(0, abs=1e-9) and summary["delta_1.25"] == 1.0
    assert json.loads((tmp_path / "out" / "video-depth-bonn.json").read_text())["meta"]["fit"] == "exact"


def test_a_fit_with_another_alignment_than_scale_and_shift_is_refused(tmp_path):
    root = FAKES["bonn"](tmp_path / "data", frames=1)
    with pytest.raises(ValueError, match="--fit applies to --align scale&shift only, not scale"):
        run_depth("video-depth", "bonn", root, FAKE_MODEL, tmp_path / "out", fit="exact")
    with pytest.raises(ValueError, match="unknown scale&shift fit 'adam'"):
        run_depth("video-depth", "bonn", root, FAKE_MODEL, tmp_path / "out", align="scale&shift", fit="adam")


def test_video_depth_with_a_tiny_model_scores_the_streamed_depth(tmp_path, monkeypatch):
    streamed = []

    def recording_stream(model, frames, cache="full", preprocessor=None):
        results = stream_sequence(model, frames, cache, preprocessor)
        streamed.append(results)
        return results

    monkeypatch.setattr(depth_protocols, "stream_sequence", recording_stream)
    root = FAKES["kitti"](tmp_path / "data")
    summary = run_depth(
        "video-depth", "kitti", root, tiny_model(), tmp_path / "out", cache="window:1", max_frames=2, size=70
    )

    # Recomputed from the depth the session streamed: resized to the ground truth, one L1 scale per drive.
    data = open_depth_dataset("kitti", root)
    rows = []
    for sequence, results in zip(data.sequences(), streamed, strict=True):
        gt = np.stack([data.read_depth(frame.depth) for frame in sequence.frames[:2]])
        pred = np.stack([resize_to(result.depth, gt.shape[1:]) for result in results])
        valid = gt > 0
        rows.append(depth_errors(weiszfeld_scale(pred[valid], gt[valid]) * pred[valid], gt[valid]))
    for key in ("abs_rel", "rmse", "delta_1.25"):
        assert summary[key] == pytest.approx(pixel_weighted(rows, key), rel=1e-6), key
    assert summary["valid_pixels"] == sum(row["valid_pixels"] for row in rows)
    assert summary["frames"] == 4
    document = json.loads((tmp_path / "out" / "video-depth-kitti.json").read_text())
    assert list(document["per_sequence"]) == list(KITTI_DRIVES)
    expected = {"protocol": "video-depth", "dataset": "kitti", "align": "scale", "cache": "window:1"}
    assert {key: document["meta"][key] for key in expected} == expected
    assert document["meta"]["image_size"] == 70 and document["meta"]["max_depth"] is None
    for drive in KITTI_DRIVES:
        with Image.open(tmp_path / "out" / "plots" / "video-depth-kitti" / f"{drive}.png") as plot:
            assert plot.size[0] > 500


def test_video_depth_refuses_single_image_datasets(tmp_path):
    with pytest.raises(ValueError, match="nyu holds single images"):
        run_depth("video-depth", "nyu", FAKES["nyu"](tmp_path / "data"), FAKE_MODEL, tmp_path / "out")
