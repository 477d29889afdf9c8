"""``streamvggt eval``: the protocols from the command line, their output files, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.eval_fakes import FAKES, SINTEL_SEQUENCES
from tests.reconstruct_helpers import tiny_checkpoint
from tests.test_cli import run_cli


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint"))


def test_monodepth_on_sintel_prints_the_averages_and_writes_the_report(tmp_path, checkpoint):
    root = FAKES["sintel"](tmp_path / "sintel", frames=2)
    code, stdout, stderr = run_cli(
        "eval", "monodepth", "--dataset", "sintel", "--root", root, "--checkpoint", checkpoint,
        "--size", 70, "--device", "cpu", "--no-progress", "-o", tmp_path / "out",
    )  # fmt: skip
    assert code == 0, stderr
    assert stdout.startswith("monodepth-sintel: abs_rel ") and "monodepth-sintel.json" in stdout
    document = json.loads((tmp_path / "out" / "monodepth-sintel.json").read_text())
    assert list(document["per_sequence"]) == list(SINTEL_SEQUENCES)
    meta = document["meta"]
    assert (meta["protocol"], meta["align"]) == ("monodepth", "median")
    assert meta["max_depth"] == meta["post_clip_max"] == 70
    assert meta["checkpoint"] == str(checkpoint) and meta["cache"] == "full"
    summary = document["summary"]
    assert summary["frames"] == 4 and np.isfinite(summary["abs_rel"]) and 0 <= summary["delta_1.25"] <= 1
    assert "| **mean** |" in (tmp_path / "out" / "monodepth-sintel.md").read_text()
    assert (tmp_path / "out" / "plots" / "monodepth-sintel" / "alley_1.png").is_file()


def test_video_depth_runs_with_a_bounded_cache_and_an_alignment(tmp_path, checkpoint):
    root = FAKES["bonn"](tmp_path / "bonn", frames=3)
    code, _, stderr = run_cli(
        "eval", "video-depth", "--dataset", "bonn", "--root", root, "--checkpoint", checkpoint, "--size", 70,
        "--cache", "window:1", "--max-frames", 2, "--align", "scale&shift", "--no-plots", "--no-progress",
        "-o", tmp_path / "out",
    )  # fmt: skip
    assert code == 0, stderr
    document = json.loads((tmp_path / "out" / "video-depth-bonn.json").read_text())
    assert document["meta"]["cache"] == "window:1" and document["meta"]["align"] == "scale&shift"
    assert len(document["per_sequence"]) == 5 and document["summary"]["frames"] == 10
    assert not (tmp_path / "out" / "plots").exists()


def test_synthetic_scores_the_model_beside_the_baselines(tmp_path, checkpoint):
    code, stdout, stderr = run_cli(
        "eval", "synthetic", "--checkpoint", checkpoint, "--sequences", 1, "--num-frames", 3, "--no-progress",
        "-o", tmp_path / "out",
    )  # fmt: skip
    assert code == 0, stderr
    assert stdout.startswith("synthetic: depth_abs_rel ")
    document = json.loads((tmp_path / "out" / "synthetic.json").read_text())
    (row,) = document["per_sequence"].values()
    for key in ("depth_abs_rel", "rra_deg", "rta_deg", "auc_30", "ate", "rpe_trans", "rpe_rot_deg"):
        assert np.isfinite(row[key]), key
    assert row["baseline_identity_pose/rta_deg"] == pytest.approx(90.0)
    assert row["baseline_constant_depth/depth_abs_rel"] > 0.01
    assert document["summary"] == pytest.approx(row)
    assert len(list((tmp_path / "out" / "plots" / "synthetic").glob("*.png"))) == 1


def test_a_perfect_synthetic_prediction_scores_perfectly_on_every_metric():
    from streamvggt.evaluate.synthetic import flatten_scores, score, synthetic_sequence

    sequence = synthetic_sequence(3)
    row = flatten_scores(score(sequence.depth * 2.0, sequence.extrinsics, sequence, rpe=True))
    assert row["depth_abs_rel"] == pytest.approx(0, abs=1e-6) and row["auc_30"] == pytest.approx(1.0)
    assert row["ate"] == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["monodepth", "--root", "."], "eval monodepth needs --dataset NAME and --root PATH"),
        (["monodepth", "--dataset", "eth3d", "--root", "."], "unknown depth dataset 'eth3d'"),
        (["monodepth", "--dataset", "sintel", "--root", "nowhere"], "no sintel dataset at nowhere: expected"),
        (["monodepth", "--dataset", "kitti", "--root", ".", "--max-frames", "0"], "--max-frames must be at least 1"),
        (["video-depth", "--dataset", "nyu", "--root", "NYU"], "nyu holds single images"),
        (["synthetic", "--cache", "window:x"], "window"),
    ],
)
def test_errors_are_one_line(tmp_path, checkpoint, arguments, message):
    FAKES["nyu"](tmp_path / "NYU", frames=1)
    arguments = [str(tmp_path / a) if a in ("NYU", "nowhere") else a for a in arguments]
    message = message.replace("nowhere", str(tmp_path / "nowhere"))
    code, stdout, stderr = run_cli("eval", *arguments, "--checkpoint", checkpoint, "-o", tmp_path / "out")
    assert code == 1 and stdout == ""
    assert stderr.startswith("streamvggt: error: ") and message in stderr and stderr.count("\n") == 1
