"""The training loop in one process: outputs of a run, checkpoints, resuming (also after SIGKILL), errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from streamvggt import load_model
from streamvggt.cli import main
from streamvggt.train.checkpoint import latest_checkpoint, list_checkpoints, weights_fingerprint
from streamvggt.train.config import from_dict
from streamvggt.train.export import export
from streamvggt.train.loop import Trainer, train
from streamvggt.train.plot import read_metrics

OVERRIDES = {"depth": 4, "dpt_head": {"intermediate_layer_idx": [0, 1, 2, 3]}}


def config_dict(output: Path, samples: int = 6, **run) -> dict:
    """Ground-truth training of a 4-layer tiny model on 28x28 synthetic clips of 2 views, one clip per step."""
    return {
        "model": {"preset": "tiny", "overrides": OVERRIDES},
        "data": {
            "num_views": 2,
            "resolutions": [[28, 28]],
            "datasets": [
                {
                    "type": "synthetic",
                    "samples": samples,
                    "options": {"num_scenes": 3, "frames_per_scene": 6, "supersample": 1},
                }
            ],
        },
        "loss": {"kind": "gt", "camera": 5.0, "depth": 1.0, "points": 1.0, "track": 0.05, "query_points": 4},
        "optim": {"lr": 1e-3, "min_lr": 1e-4, "warmup_epochs": 0.0, "epochs": 1.0},
        "run": {"output_dir": str(output), "save_every": 2, "keep_checkpoints": 2, "progress": False, "log_every": 2}
        | run,
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("loop") / "run"
    train(from_dict(config_dict(output)))
    return output


def test_a_run_writes_metrics_checkpoints_tensorboard_a_plot_and_the_model(finished: Path) -> None:
    records = read_metrics(finished / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for record in records:
        assert {
            "loss",
            "loss/camera",
            "loss/depth",
            "loss/points",
            "loss/track",
            "lr",
            "grad_norm",
            "samples_per_s",
        } <= set(record)
        parts = sum(v for k, v in record.items() if k.startswith("loss/"))
        assert record["loss"] == pytest.approx(parts, rel=1e-5)
    assert [step for step, _ in list_checkpoints(finished)] == [4, 6]  # two kept
    assert list((finished / "tensorboard").glob("events.out.tfevents.*"))
    assert (finished / "loss_curve.png").stat().st_size > 10_000
    assert yaml.safe_load((finished / "config.yaml").read_text())["loss"]["kind"] == "gt"
    exported = load_model(finished / "model", device="cpu")  # official names, safetensors, our config.json
    assert exported.config.causal and exported.config.depth == 4
    assert weights_fingerprint(exported) == weights_fingerprint(load_model(latest_checkpoint(finished), device="cpu"))


def test_export_writes_loadable_half_precision_weights(finished: Path, tmp_path: Path) -> None:
    folder = export(finished, tmp_path / "fp16", dtype="fp16")
    half = load_model(folder, device="cpu")
    full = load_model(latest_checkpoint(finished), device="cpu")
    assert (folder / "model.safetensors").stat().st_size < 0.6 * (
        finished / "model" / "model.safetensors"
    ).stat().st_size
    for (name, a), (_, b) in zip(half.state_dict().items(), full.state_dict().items(), strict=True):
        assert a.dtype == b.dtype and torch.allclose(a, b, rtol=1e-3, atol=1e-4), name


def test_resuming_recomputes_the_same_steps(finished: Path, tmp_path: Path) -> None:
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    source = dict(list_checkpoints(finished))[4]
    os.symlink(source, resumed / "checkpoints" / source.name)
    trainer = Trainer(from_dict(config_dict(resumed)), resume=True)
    assert trainer.step == 4
    trainer.fit()
    again = {r["step"]: r["loss"] for r in read_metrics(resumed / "metrics.jsonl")}
    before = {r["step"]: r["loss"] for r in read_metrics(finished / "metrics.jsonl")}
    assert again == {5: before[5], 6: before[6]}


def test_gradient_accumulation_matches_a_larger_batch(tmp_path: Path) -> None:
    def first_step(name: str, batch_size: int, accumulation: int) -> dict:
        data = config_dict(tmp_path / name, samples=2, plot=False)
        data["data"]["batch_size"] = batch_size
        data["optim"]["accumulation_steps"] = accumulation
        data["loss"]["query_points"] = 0  # query points are drawn per micro-batch: keep them out of the comparison
        train(from_dict(data))
        return read_metrics(tmp_path / name / "metrics.jsonl")[0]

    large, accumulated = first_step("large", 2, 1), first_step("accumulated", 1, 2)
    # The same two clips: the loss is their mean either way, and the gradient (seen through its norm) the same.
    assert accumulated["loss"] == pytest.approx(large["loss"], rel=1e-5)
    assert accumulated["grad_norm"] == pytest.approx(large["grad_norm"], rel=1e-5)


def test_an_interrupted_checkpoint_is_ignored_and_cleaned_up(finished: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    (output / "checkpoints").mkdir(parents=True)
    source = dict(list_checkpoints(finished))[4]
    os.symlink(source, output / "checkpoints" / source.name)
    partial = output / "checkpoints" / ".step-00000006.tmp"
    partial.mkdir()
    (partial / "trainer.pt").write_bytes(b"truncated")
    assert latest_checkpoint(output) == output / "checkpoints" / "step-00000004"
    trainer = Trainer(from_dict(config_dict(output)), resume=True)
    assert trainer.step == 4 and not partial.exists()


def test_existing_checkpoints_are_not_overwritten_without_resume(finished: Path) -> None:
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(from_dict(config_dict(finished)))


def test_a_diverging_run_stops_with_an_error(tmp_path: Path) -> None:
    data = config_dict(tmp_path / "run")
    data["optim"]["lr"] = 1e30
    config = from_dict(data)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train(config)


def test_command_line_prints_the_config_and_reports_bad_configs(tmp_path: Path, capsys) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_dict(tmp_path / "run")), encoding="utf-8")
    assert main(["train", "--config", str(path), "--print-config", "optim.lr=2e-3"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["optim"]["lr"] == 2e-3
    assert main(["train", "--config", str(path), "optim.lr=fast"]) == 2


def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    output = tmp_path / "run"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_dict(output, samples=200, threads=1, keep_checkpoints=50)), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "streamvggt", "train", "--config", str(path)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not [s for s, _ in list_checkpoints(output) if s >= 4]:
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before a checkpoint"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    last = list_checkpoints(output)[-1][0]
    assert last < 200
    trainer = Trainer(from_dict(config_dict(output, samples=200, keep_checkpoints=50, max_steps=last + 3)), resume=True)
    assert trainer.step == last
    trainer.fit()
    steps = [r["step"] for r in read_metrics(output / "metrics.jsonl")]
    assert steps == list(range(1, last + 4))
    with open(output / "metrics.jsonl", encoding="utf-8") as f:
        assert (
            len([json.loads(line) for line in f]) == last + 3
        )  # steps after the checkpoint were dropped, not kept twice
    assert torch.load(latest_checkpoint(output) / "trainer.pt", weights_only=True)["step"] == last + 3
