"""Acceptance: distillation with two CPU processes (gloo) on synthetic clips learns, keeps the replicas identical,
and a run resumed from a checkpoint continues exactly as the uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from streamvggt import StreamVGGT, load_model
from streamvggt.train.checkpoint import TRAINER_STATE, list_checkpoints, weights_fingerprint
from streamvggt.train.config import ModelSection

# Four trunk layers instead of 24: the same code paths at a sixth of the cost.
OVERRIDES = {"depth": 4, "dpt_head": {"intermediate_layer_idx": [0, 1, 2, 3]}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        "-m", "streamvggt", "train", "--config", str(config), *args,
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def losses(output: Path) -> dict[int, float]:
    with open(output / "metrics.jsonl", encoding="utf-8") as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random full-attention teacher and a distillation config for a randomly initialised causal student."""
    root = tmp_path_factory.mktemp("distributed")
    torch.manual_seed(1)
    StreamVGGT(ModelSection(preset="tiny", overrides=OVERRIDES).architecture(causal=False)).save_pretrained(
        root / "teacher"
    )
    config = {
        "model": {
            "preset": "tiny",
            "overrides": OVERRIDES,
            "teacher": str(root / "teacher"),
            "freeze": ["aggregator.patch_embed", "aggregator.camera_token", "aggregator.register_token"],
        },
        "data": {
            "num_views": 3,
            "resolutions": [[28, 28]],
            "datasets": [
                {
                    "type": "synthetic",
                    "samples": 16,
                    "options": {"num_scenes": 4, "frames_per_scene": 8, "supersample": 1},
                }
            ],
        },
        "loss": {"kind": "distill", "query_points": 8},
        "optim": {"lr": 1e-3, "min_lr": 1e-4, "warmup_epochs": 0.0, "epochs": 1.0},
        "run": {"output_dir": str(root / "full"), "threads": 1, "save_every": 4, "progress": False, "plot": False},
    }
    path = root / "distill.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    torchrun(path)  # 16 clips / 2 processes = 8 steps, checkpoints at steps 4 and 8
    return root, path


def test_two_processes_learn_and_hold_identical_weights(setup: tuple[Path, Path]) -> None:
    root, _ = setup
    output = root / "full"
    run = losses(output)
    assert sorted(run) == list(range(1, 9))
    first, last = [run[s] for s in (1, 2, 3)], [run[s] for s in (6, 7, 8)]
    assert sum(last) / 3 < 0.8 * sum(first) / 3, run

    final = list_checkpoints(output)[-1][1]
    state = torch.load(final / TRAINER_STATE, weights_only=True)
    assert state["step"] == 8 and state["world_size"] == 2
    # Each process fingerprinted its own weights: identical bytes on both, and equal to what was saved.
    saved = load_model(final, device="cpu")
    assert state["fingerprints"] == [weights_fingerprint(saved)] * 2
    exported = load_model(output / "model", device="cpu")
    assert weights_fingerprint(exported) == weights_fingerprint(saved)
    assert exported.config.causal and (root / "full" / "tensorboard").is_dir()


def test_resumed_run_continues_with_the_same_losses(setup: tuple[Path, Path]) -> None:
    root, path = setup
    full = root / "full"
    resumed = root / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    step4 = dict(list_checkpoints(full))[4]
    shutil.copytree(step4, resumed / "checkpoints" / step4.name)
    torchrun(path, f"run.output_dir={resumed}", "--resume")
    run, again = losses(full), losses(resumed)
    assert sorted(again) == [5, 6, 7, 8]  # continued from the saved step
    for step in again:
        assert again[step] == pytest.approx(run[step], rel=1e-5, abs=1e-6), (step, again[step], run[step])
    final_full = torch.load(list_checkpoints(full)[-1][1] / TRAINER_STATE, weights_only=True)
    final_resumed = torch.load(list_checkpoints(resumed)[-1][1] / TRAINER_STATE, weights_only=True)
    assert final_resumed["fingerprints"] == final_full["fingerprints"]
