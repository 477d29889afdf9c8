"""``streamvggt eval``: the protocols from the command line, their output files, and one-line errors."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

import streamvggt.evaluate.depth as depth_protocols
from streamvggt.cli import build_parser
from streamvggt.evaluate.datasets import open_depth_dataset
from streamvggt.evaluate.runner import resize_to, stream_sequence
from tests.eval_fakes import FAKES, SINTEL_SEQUENCES
from tests.hand_metrics import (
    auc,
    depth_errors,
    homogeneous,
    lower_median,
    pair_angles,
    sim3_trajectory_errors,
    weiszfeld_scale,
)
from tests.reconstruct_helpers import tiny_checkpoint
from tests.test_cli import run_cli


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint"))


def test_monodepth_on_sintel_prints_the_averages_and_writes_the_report(tmp_path, checkpoint, monkeypatch):
    streamed = []  # each frame's depth, in the order the protocol streams them

    def recording_stream(model, frames, cache="full", preprocessor=None):
        results = stream_sequence(model, frames, cache, preprocessor)
        streamed.extend(result.depth for result in results)
        return results

    monkeypatch.setattr(depth_protocols, "stream_sequence", recording_stream)
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
    # Recomputed from each frame's streamed depth: resized to the ground truth, scaled by its own median ratio,
    # clipped at 70 m, scored where 0 < gt < 70; frames weighted by their valid pixels.
    data = open_depth_dataset("sintel", root)
    errors, ratios, depths = [], [], iter(streamed)
    for sequence in data.sequences():
        for frame in sequence.frames:
            gt = data.read_depth(frame.depth).astype(np.float64)
            pred = resize_to(next(depths), gt.shape).astype(np.float64)
            valid = (gt > 0) & (gt < 70)
            aligned = np.minimum(pred * lower_median(gt[valid]) / lower_median(pred[valid]), 70.0)[valid]
            errors.append(np.abs(aligned - gt[valid]) / gt[valid])
            ratios.append(np.maximum(aligned / gt[valid], gt[valid] / aligned))
    summary = document["summary"]
    assert summary["frames"] == 4 and summary["valid_pixels"] == sum(e.size for e in errors)
    assert summary["abs_rel"] == pytest.approx(np.concatenate(errors).mean(), rel=1e-6)
    assert summary["delta_1.25"] == pytest.approx((np.concatenate(ratios) < 1.25).mean(), rel=1e-9)
    assert f"abs_rel {summary['abs_rel']:.4f}" in stdout
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
    assert document["meta"]["fit"] == "reference"  # the published tables' solver unless --fit says otherwise
    assert len(document["per_sequence"]) == 5 and document["summary"]["frames"] == 10
    assert not (tmp_path / "out" / "plots").exists()


def test_synthetic_scores_the_model_beside_the_baselines(tmp_path, checkpoint, monkeypatch):
    import streamvggt.evaluate.synthetic as synthetic

    streamed = []

    def recording_stream(model, frames, cache="full", preprocessor=None):
        results = stream_sequence(model, frames, cache, preprocessor)
        streamed.append(results)
        return results

    monkeypatch.setattr(synthetic, "stream_sequence", recording_stream)
    code, stdout, stderr = run_cli(
        "eval", "synthetic", "--checkpoint", checkpoint, "--sequences", 1, "--num-frames", 3, "--no-progress",
        "-o", tmp_path / "out",
    )  # fmt: skip
    assert code == 0, stderr
    assert stdout.startswith("synthetic: depth_abs_rel ")
    document = json.loads((tmp_path / "out" / "synthetic.json").read_text())
    ((name, row),) = document["per_sequence"].items()
    assert name == f"seed{synthetic.HELD_OUT_SEED + 1}"
    # Recomputed by hand from the streamed depth and cameras and the held-out scene's ground truth.
    truth = synthetic.synthetic_sequence(3, seed=synthetic.HELD_OUT_SEED + 1)
    (results,) = streamed
    depth = np.stack([result.depth for result in results]).astype(np.float64)
    extrinsics = homogeneous(np.stack([result.extrinsic for result in results]))
    assert row["depth_abs_rel"] == pytest.approx(
        depth_errors(weiszfeld_scale(depth, truth.depth) * depth, truth.depth)["abs_rel"], rel=1e-6
    )
    rra, rta = pair_angles(extrinsics, truth.extrinsics)
    assert row["rra_deg"] == pytest.approx(rra.mean(), rel=1e-6)
    assert row["rta_deg"] == pytest.approx(rta.mean(), rel=1e-6)
    assert row["auc_30"] == pytest.approx(auc(rra, rta), abs=1e-12)
    trajectory = sim3_trajectory_errors(np.linalg.inv(extrinsics), np.linalg.inv(truth.extrinsics))
    for key in ("ate", "rpe_trans", "rpe_rot_deg"):
        assert row[key] == pytest.approx(trajectory[key], rel=1e-5), key
    assert row["baseline_identity_pose/rta_deg"] == pytest.approx(90.0)
    constant = np.ones_like(truth.depth)
    flat = depth_errors(weiszfeld_scale(constant, truth.depth) * constant, truth.depth)
    assert row["baseline_constant_depth/depth_abs_rel"] == pytest.approx(flat["abs_rel"], rel=1e-6)
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
    assert stderr.startswith("streamvggt eval: error: ") and message in stderr and stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["recon", "--dataset", "dtu", "--root", "."], "unknown reconstruction dataset 'dtu'"),
        (["recon", "--dataset", "7scenes", "--root", "nowhere"], "no 7scenes dataset at"),
        (["recon", "--dataset", "7scenes", "--root", ".", "--max-frames", "0"], "--max-frames must be at least 1"),
        (["pose", "--dataset", "kitti", "--root", "."], "unknown pose dataset 'kitti'"),
        (["pose", "--dataset", "tum", "--root", "nowhere"], "no tum dataset at"),
        (["pose", "--dataset", "co3d", "--root", "CO3D", "--max-frames", "1"], "--max-frames must be at least 2"),
        (["pose", "--dataset", "co3d", "--root", "CO3D", "--num-frames", "51"], "--num-frames must be in [2, 50]"),
        (["synthetic", "--num-frames", "2"], "--num-frames must be at least 3"),
        (["synthetic", "--num-frames", "0"], "--num-frames must be at least 3"),  # not "at least 1": 1 fails too
        (["pose", "--dataset", "co3d", "--root", "CO3D", "--num-frames", "0"], "--num-frames must be in [2, 50]"),
        # Options the protocol would ignore are refused, not silently dropped.
        (["pose", "--dataset", "tum", "--root", ".", "--seed", "3"], "--seed does not apply to eval pose"),
        (["pose", "--dataset", "tum", "--root", ".", "--num-frames", "5"], "--num-frames does not apply"),
        (["recon", "--dataset", "7scenes", "--root", ".", "--size", "224"], "--size does not apply to eval recon"),
        (["recon", "--dataset", "7scenes", "--root", ".", "--use-ba"], "--use-ba does not apply"),
        (["pose", "--dataset", "tum", "--root", ".", "--align", "scale"], "--align does not apply"),
        (["pose", "--dataset", "tum", "--root", ".", "--fit", "exact"], "--fit does not apply to eval pose"),
        (["video-depth", "--dataset", "bonn", "--root", ".", "--fit", "exact"], "--fit applies to --align scale&shift"),
        (["monodepth", "--dataset", "nyu", "--root", ".", "--sequences", "2"], "--sequences does not apply"),
        (["synthetic", "--max-frames", "4"], "--max-frames does not apply to eval synthetic"),
        (
            ["synthetic", "--precision", "fp8"],
            "unknown precision 'fp8'; choose one of auto, fp32, bf16, fp16, int8, or reference",
        ),
        (["synthetic", "--device", "gpu"], "unknown device 'gpu': use auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_arguments_and_folders_are_checked_before_the_model_loads(tmp_path, arguments, message):
    from tests.eval_fakes_mv import write_co3d

    write_co3d(tmp_path / "CO3D", {"s1": 2})
    arguments = [str(tmp_path / a) if a in ("CO3D", "nowhere") else a for a in arguments]
    # The checkpoint does not exist: loading it would be the error if the checks came after the load.
    missing = tmp_path / "missing.pt"
    code, stdout, stderr = run_cli("eval", *arguments, "--checkpoint", missing, "-o", tmp_path / "out")
    assert code == 1 and stdout == ""
    assert stderr.startswith("streamvggt eval: error: ") and message in stderr and stderr.count("\n") == 1
    assert "missing.pt" not in stderr


def test_an_output_path_that_is_a_file_fails_before_the_model_loads(tmp_path):
    (tmp_path / "taken").write_text("")
    code, _, stderr = run_cli(
        "eval", "synthetic", "--checkpoint", tmp_path / "missing.pt", "-o", tmp_path / "taken"
    )  # fmt: skip
    assert code == 1
    assert stderr == f"streamvggt eval: error: cannot write to {tmp_path / 'taken'}: it is a file, not a folder\n"


def test_synthetic_honours_no_plots(tmp_path, checkpoint):
    code, stdout, stderr = run_cli(
        "eval", "synthetic", "--checkpoint", checkpoint, "--sequences", 1, "--num-frames", 3, "--no-plots",
        "--no-progress", "-o", tmp_path / "out",
    )  # fmt: skip
    assert code == 0, stderr
    assert (tmp_path / "out" / "synthetic.json").is_file() and not (tmp_path / "out" / "plots").exists()
    assert "plots/" not in stdout


def test_the_documented_eval_commands_are_each_one_shell_command_the_parser_accepts():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text(encoding="utf-8")
    lines = [line.split("  #")[0] for line in docs.splitlines() if line.startswith("streamvggt eval ")]
    assert len(lines) == 6
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
        assert not {"&", ";", "|", "&&", "||"} & set(words), line  # an unquoted & would background half of it
        args = build_parser().parse_args(words[1:])
        assert args.output == Path("results")
    assert build_parser().parse_args(shlex.split(lines[2])[1:]).align == "scale&shift"


def test_eval_defaults_to_the_precision_of_the_published_numbers():
    """fp32 on a CPU whatever auto would pick there; on CUDA the reference's bf16/fp16 autocast (auto)."""
    from streamvggt.evaluate.command import eval_precision

    args = build_parser().parse_args(["eval", "synthetic", "-o", "out"])
    assert args.precision == "reference"
    assert build_parser().parse_args(["eval", "synthetic", "-o", "out", "--precision", "int8"]).precision == "int8"
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (eval_precision("reference", cpu), eval_precision("reference", cuda)) == ("fp32", "auto")
    assert [eval_precision(mode, cpu) for mode in ("auto", "fp32", "bf16", "int8")] == ["auto", "fp32", "bf16", "int8"]


def test_eval_results_record_the_requested_and_resolved_precision(tmp_path, checkpoint, monkeypatch):
    # A CPU where auto picks int8: the default still runs fp32, and --precision auto says what it resolved to.
    monkeypatch.setattr("streamvggt.runtime.precision.choose_cpu_precision", lambda dim, tokens: "int8")
    recorded = {}
    for given in ([], ["--precision", "auto"]):
        out = tmp_path / (given[-1] if given else "default")
        code, _, stderr = run_cli(
            "eval", "synthetic", "--checkpoint", checkpoint, "--sequences", 1, "--num-frames", 3, "--no-plots",
            "--no-progress", "--device", "cpu", "-o", out, *given,
        )  # fmt: skip
        assert code == 0, stderr
        recorded[out.name] = json.loads((out / "synthetic.json").read_text())["meta"]["precision"]
    assert recorded == {
        "default": {"requested": "fp32", "resolved": "fp32"},
        "auto": {"requested": "auto", "resolved": "int8"},
    }
