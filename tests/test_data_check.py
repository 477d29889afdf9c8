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


def test_a_missing_folder_fails_with_a_report(tmp_path: Path) -> None:
    status, report = run_check(tmp_path / "absent", tmp_path / "out")
    assert status == 1 and report["problems"] == [
        f"cannot open the dataset: spring dataset folder not found: {tmp_path / 'absent'}"
    ]
    assert not (tmp_path / "out" / "contact_sheet.png").exists()


def test_python_m_runs_the_check(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "streamvggt", "data", "check", "--type", "spring", str(tmp_path / "absent")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "cannot open the dataset" in result.stdout
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
