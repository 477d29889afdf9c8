"""``streamvggt data check`` and ``streamvggt train --check-data``: a good folder passes with its numbers; a
folder whose depth or poses are in the wrong units, or whose files are damaged, fails naming the problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from streamvggt.cli import main as cli_main
from streamvggt.train.data.check import reproject
from tests.layout_helpers import FRAMES, render_sequence
from tests.test_data_spring import write_spring

SIZE = ["--size", "56", "42"]


@pytest.fixture(scope="module")
def sequences() -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    # Scenes whose camera motion has depth parallax: a depth unit error shows only where it does.
    return [render_sequence(seed) for seed in (11, 12)]


def run_check(root: Path, output: Path, *extra: str) -> tuple[int, dict]:
    status = cli_main(
        ["data", "check", "--type", "spring", str(root), "--num-views", "3", *SIZE, "--output", str(output), *extra]
    )
    return status, json.loads((output / "report.json").read_text())


def test_a_good_folder_passes_with_its_counts_depth_range_and_consistency(tmp_path: Path, sequences, capsys) -> None:
    write_spring(tmp_path / "spring", sequences)
    status, report = run_check(tmp_path / "spring", tmp_path / "out", "--clips", "5")
    assert status == 0 and report["passed"] and report["problems"] == []
    assert (report["scenes"], report["frames"], report["clips"]) == (2, 2 * FRAMES, 2 * (FRAMES - 3 + 1))
    assert len(report["sampled"]) == 5 and len({c["index"] for c in report["sampled"]}) == 5
    true_depth = np.concatenate([d.ravel() for frames in sequences for _, d, _ in frames])
    for clip in report["sampled"]:
        assert true_depth.min() * 0.99 <= clip["depth_min"] <= clip["depth_median"] <= clip["depth_max"]
        assert clip["depth_max"] <= true_depth.max() * 1.01
        assert clip["invalid_fraction"] == 0.0 and clip["sky_fraction"] == 0.0
        assert clip["score"] > 0.95 and len(clip["consistency"]) == 2 and min(clip["coverage"]) > 0.5
        assert clip["best_depth_factor"] == 1.0
    with Image.open(tmp_path / "out" / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.width > 3 * 56
    assert report["contact_sheet"] == str(tmp_path / "out" / "contact_sheet.png")
    assert "passed" in capsys.readouterr().out


def test_the_same_seed_reads_the_same_clips(tmp_path: Path, sequences) -> None:
    write_spring(tmp_path / "spring", sequences)
    _, first = run_check(tmp_path / "spring", tmp_path / "a", "--clips", "3", "--seed", "7")
    _, again = run_check(tmp_path / "spring", tmp_path / "b", "--clips", "3", "--seed", "7")
    _, other = run_check(tmp_path / "spring", tmp_path / "c", "--clips", "3", "--seed", "8")
    indices = [[c["index"] for c in r["sampled"]] for r in (first, again, other)]
    assert indices[0] == indices[1] != indices[2]


def test_depth_in_millimetres_fails_naming_the_unit_problem(tmp_path: Path, sequences, capsys) -> None:
    write_spring(tmp_path / "spring", [[(i, d * 1000.0, p) for i, d, p in frames] for frames in sequences])
    status, report = run_check(tmp_path / "spring", tmp_path / "out", "--clips", "3")
    assert status == 1 and not report["passed"]
    assert len(report["problems"]) == 3
    assert all("multiplied by 0.001" in p and "units" in p for p in report["problems"])
    assert all(c["best_depth_factor"] == 0.001 and c["best_factor_score"] > 0.95 for c in report["sampled"])
    assert "FAILED: 3 problem(s)" in capsys.readouterr().out


def test_camera_positions_in_millimetres_fail(tmp_path: Path, sequences) -> None:
    scaled = []
    for frames in sequences:
        moved = []
        for image, depth, pose in frames:
            pose = pose.copy()
            pose[:3, 3] *= 1000.0
            moved.append((image, depth, pose))
        scaled.append(moved)
    write_spring(tmp_path / "spring", scaled)
    status, report = run_check(tmp_path / "spring", tmp_path / "out", "--clips", "3")
    assert status == 1
    assert sum("lands in none of the other views" in p for p in report["problems"]) == 3
    assert sum("multiplied by 1000" in p for p in report["problems"]) == 3


def test_damaged_files_and_empty_depth_are_listed_by_clip(tmp_path: Path, sequences) -> None:
    root = tmp_path / "spring"
    write_spring(root, sequences)
    cam = root / "0001" / "cam" / "0002.npz"
    np.savez(cam, intrinsics=np.eye(3), pose=np.full((4, 4), np.inf))
    for name in sorted((root / "0002" / "depth").iterdir()):
        np.save(name, np.zeros_like(np.load(name)))
    status, report = run_check(root, tmp_path / "out", "--clips", "8")
    assert status == 1
    pose_problems = [p for p in report["problems"] if "unreadable" in p]
    assert pose_problems and all(str(cam) in p and "non-finite" in p for p in pose_problems)
    assert any("view 0 has no valid depth" in p for p in report["problems"])


def test_a_missing_folder_is_a_usage_error_that_writes_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    earlier = tmp_path / "data_check_spring" / "report.json"
    earlier.parent.mkdir()
    earlier.write_text("{}")
    status = cli_main(["data", "check", "--type", "spring", str(tmp_path / "absent")])
    assert status == 2
    assert capsys.readouterr().err == f"streamvggt data check: error: dataset folder not found: {tmp_path / 'absent'}\n"
    assert earlier.read_text() == "{}" and sorted(p.name for p in tmp_path.rglob("*")) == [
        "data_check_spring",
        "report.json",
    ]


def test_the_library_reports_a_folder_it_cannot_open_without_writing(tmp_path: Path) -> None:
    from streamvggt.train.data.check import check_dataset

    report = check_dataset("spring", {"root": str(tmp_path / "absent"), "num_views": 3}, output=tmp_path / "out")
    assert report.problems == [f"cannot open the dataset: spring dataset folder not found: {tmp_path / 'absent'}"]
    assert not (tmp_path / "out").exists()


def test_python_m_runs_the_check(tmp_path: Path, sequences) -> None:
    write_spring(tmp_path / "spring", sequences)
    command = [sys.executable, "-m", "streamvggt", "data", "check", "--type", "spring", "spring"]
    command += ["--num-views", "3", *SIZE, "--clips", "1"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "passed" in result.stdout
    assert (tmp_path / "data_check_spring" / "report.json").is_file()


def test_the_error_map_marks_where_reprojected_depth_disagrees() -> None:
    depth = torch.full((2, 6, 8), 2.0)
    depth[1, :, 4:] = 3.0  # view 1 (same camera) sees the right half 50 % farther
    clip = {
        "depth": depth,
        "valid_mask": depth > 0,
        "intrinsics": torch.tensor([[4.0, 0, 4], [0, 4.0, 3], [0, 0, 1]]).expand(2, 3, 3),
        "extrinsics": torch.eye(4).expand(2, 4, 4),
    }
    result = reproject(clip, 1)
    inner = result.error[1:-1, 1:-1]
    assert torch.isnan(result.error[0]).all() and torch.isnan(result.error[:, 0]).all()  # border: not compared
    # Columns 1-4 find a 2 within their 3 x 3 range (column 4 reaches column 3); columns 5-6 see only 3s.
    assert (inner[:, :4] == 0).all() and torch.allclose(inner[:, 4:], torch.tensor(0.5))
    assert result.coverage == pytest.approx(6 * 4 / 48) and result.agree == pytest.approx(4 / 6)
    assert result.impossible == pytest.approx(2 / 6)  # view 1 sees past those points: they would hide its depth


def write_config_overrides(root: Path, output: Path) -> list[str]:
    return [
        f"data.datasets=[{{type: spring, root: '{root}', samples: 4}}]",
        "data.num_views=3",
        "data.resolutions=[[56, 42]]",
        f"run.output_dir='{output}'",
    ]


def test_train_check_data_stops_with_the_problems(tmp_path: Path, sequences, monkeypatch) -> None:
    import streamvggt.train.loop

    calls = []
    monkeypatch.setattr(streamvggt.train.loop, "train", lambda config, resume: calls.append(config) or tmp_path)
    config = str(Path(__file__).resolve().parents[1] / "configs" / "synthetic_tiny.yaml")
    write_spring(tmp_path / "mm", [[(i, d * 1000.0, p) for i, d, p in frames] for frames in sequences])
    status = cli_main(
        ["train", "--config", config, "--check-data", *write_config_overrides(tmp_path / "mm", tmp_path / "r")]
    )
    assert status == 1 and calls == []
    report = json.loads((tmp_path / "r" / "data_check" / "00_spring" / "report.json").read_text())
    assert report["problems"] and report["options"]["num_views"] == 3

    write_spring(tmp_path / "good", sequences)
    status = cli_main(
        ["train", "--config", config, "--check-data", *write_config_overrides(tmp_path / "good", tmp_path / "g")]
    )
    assert status == 0 and len(calls) == 1  # the check passed: training went ahead
    assert json.loads((tmp_path / "g" / "data_check" / "00_spring" / "report.json").read_text())["passed"]


def test_the_synthetic_dataset_is_checked_without_a_root(tmp_path: Path, capsys) -> None:
    output = tmp_path / "out"
    status = cli_main(
        ["data", "check", "--type", "synthetic", "--num-views", "3", *SIZE, "--clips", "2", "--output", str(output)]
    )
    report = json.loads((output / "report.json").read_text())
    assert status == 0 and report["passed"] and report["root"] is None and len(report["sampled"]) == 2
    assert all(clip["score"] > 0.9 for clip in report["sampled"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--type", "synthetic", "somewhere"], "the synthetic dataset is generated: give no ROOT folder"),
        (["--type", "spring"], "--type spring needs the dataset folder (ROOT)"),
    ],
)
def test_a_root_given_to_the_synthetic_type_or_missing_for_another_is_one_line(
    tmp_path: Path, monkeypatch, capsys, arguments, message
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["data", "check", *arguments]) == 2
    assert capsys.readouterr().err == f"streamvggt data check: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("under_a_file", [False, True])
def test_an_unwritable_report_folder_is_one_line_before_anything_is_read(
    tmp_path: Path, sequences, monkeypatch, capsys, under_a_file
) -> None:
    import streamvggt.train.data.check

    write_spring(tmp_path / "spring", sequences)
    (tmp_path / "file").write_text("")
    output = tmp_path / "file" / "report" if under_a_file else tmp_path / "file"
    monkeypatch.setattr(streamvggt.train.data.check, "check_dataset", lambda *a, **k: pytest.fail("data was read"))
    assert cli_main(["data", "check", "--type", "spring", str(tmp_path / "spring"), "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"streamvggt data check: error: cannot write the report into {output}: ")
    assert err.endswith("is a file, not a folder\n") and err.count("\n") == 1


def write_pseudo_labels(root: Path, sequences, amplitude: float = 0.06) -> None:
    """A generic dataset as ``data import --from reconstruct`` leaves it, as weak as a model's predictions: each
    frame's depth off by a smooth wave of its own (up to ``amplitude``), so neighbouring views agree only in part."""

    def weak(depth: np.ndarray, frame: int) -> np.ndarray:
        columns = np.arange(depth.shape[1])
        return depth * (1 + amplitude * np.sin(columns / 5 + 2.1 * frame))[None, :]

    noisy = [[(i, weak(d, n), p) for n, (i, d, p) in enumerate(frames)] for frames in sequences]
    write_spring(root, noisy)
    for scene in ("0001", "0002"):
        (root / scene / "import.json").write_text(json.dumps({"source": "reconstruct", "depth": "predicted"}))


def check_generic(root: Path, *extra: str) -> int:
    """``data check --type generic`` of ``root`` (2 clips of 3 views) into ``root.parent / "out"``."""
    command = ["check", "--type", "generic", str(root), "--num-views", "3", *SIZE, "--clips", "2", *extra]
    return cli_main(["data", *command, "--output", str(root.parent / "out")])


def test_weak_pseudo_labels_get_an_honest_hint_not_a_conversion_bug(tmp_path: Path, sequences) -> None:
    write_pseudo_labels(tmp_path / "own", sequences)
    status = check_generic(tmp_path / "own", "--option", "static=true", "--option", "is_metric=false")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert status == 1 and report["label_sources"] == ["reconstruct"]
    consistency = [p for p in report["problems"] if "reprojection consistency" in p]
    assert len(consistency) == 2
    for problem, clip in zip(consistency, report["sampled"], strict=True):
        assert f"only {100 * clip['score']:.0f} % of view 0's depth" in problem
        assert "a model's predictions" in problem and "not a conversion bug" in problem
        assert "wrong?" not in problem and "\n" not in problem
        assert f"--min-consistency {np.floor(clip['score'] * 20) / 20:g}" in problem


def test_weaker_labels_are_accepted_knowingly_with_a_lower_threshold_recorded_in_the_report(
    tmp_path: Path, sequences, capsys
) -> None:
    write_pseudo_labels(tmp_path / "own", sequences)
    status = check_generic(tmp_path / "own", "--option", "static=true", "--min-consistency", "0.05")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert status == 0 and report["passed"]
    assert report["min_consistency"] == 0.05 and report["weaker_labels_accepted"] is True
    assert (
        "weaker labels accepted knowingly: clips held to consistency >= 0.05 (default 0.5)" in capsys.readouterr().out
    )


def test_converted_ground_truth_that_disagrees_is_told_what_to_check(tmp_path: Path, sequences) -> None:
    write_pseudo_labels(tmp_path / "gt", sequences)
    for record in (tmp_path / "gt").glob("*/import.json"):
        record.unlink()
    status, report = run_check(tmp_path / "gt", tmp_path / "out", "--clips", "1")
    assert status == 1 and report["label_sources"] == []
    (problem,) = [p for p in report["problems"] if "reprojection consistency" in p]
    assert "check the depth units, the pose convention (camera-to-world, OpenCV axes) and the intrinsics" in problem
    assert "--min-consistency" in problem


def test_the_check_command_and_library_share_the_default_threshold() -> None:
    from streamvggt.train.data import check, command

    assert command.DEFAULT_MIN_CONSISTENCY == check.DEFAULT_MIN_CONSISTENCY


def test_train_check_data_accepts_weaker_labels_set_in_the_config(tmp_path: Path, sequences, monkeypatch) -> None:
    import streamvggt.train.loop

    calls = []
    monkeypatch.setattr(streamvggt.train.loop, "train", lambda config, resume: calls.append(config) or tmp_path)
    config = str(Path(__file__).resolve().parents[1] / "configs" / "synthetic_tiny.yaml")
    write_pseudo_labels(tmp_path / "own", sequences)
    overrides = write_config_overrides(tmp_path / "own", tmp_path / "r")
    overrides[overrides.index("data.datasets=[{type: spring, root: '" + str(tmp_path / "own") + "', samples: 4}]")] = (
        "data.datasets=[{type: generic, root: '" + str(tmp_path / "own") + "', samples: 4, options: {static: true}}]"
    )
    assert cli_main(["train", "--config", config, "--check-data", *overrides]) == 1 and calls == []
    report = json.loads((tmp_path / "r" / "data_check" / "00_generic" / "report.json").read_text())
    assert any("data.datasets.0.min_consistency=" in p for p in report["problems"])
    status = cli_main(["train", "--config", config, "--check-data", *overrides, "data.datasets.0.min_consistency=0.05"])
    assert status == 0 and len(calls) == 1
    report = json.loads((tmp_path / "r" / "data_check" / "00_generic" / "report.json").read_text())
    assert report["passed"] and report["min_consistency"] == 0.05 and report["weaker_labels_accepted"]
