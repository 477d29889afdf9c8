"""benchmarks/streaming.py labels its results with the precision the trunk really runs in."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "streaming.py"


def run_benchmark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *options: str) -> dict:
    """The tiny preset over 3 frames on CPU; returns streaming.json's config."""
    args = ["--preset", "tiny", "--size", "28x42", "--frames", "3", "--policies", "window:1", "--offline-max", "1"]
    monkeypatch.setattr(sys, "argv", ["streaming.py", *args, "--device", "cpu", "--out", str(tmp_path), *options])
    load_script(SCRIPT).main()
    return json.loads((tmp_path / "streaming.json").read_text())["config"]


def test_cpu_auto_is_labelled_with_the_mode_it_chose(tmp_path, monkeypatch, capsys):
    # A wide model on a bf16 CPU: auto measures and picks bf16 (stood in for here, the tiny preset is too narrow).
    monkeypatch.setattr("streamvggt.runtime.precision.choose_cpu_precision", lambda dim, tokens: "bf16")
    config = run_benchmark(tmp_path, monkeypatch)
    assert config["precision"] == "bf16"
    assert capsys.readouterr().out.startswith("# tiny 28x42 bf16 on cpu")


def test_explicit_int8_is_labelled_int8(tmp_path, monkeypatch, capsys):
    config = run_benchmark(tmp_path, monkeypatch, "--precision", "int8")
    assert config["precision"] == "int8"
    assert capsys.readouterr().out.startswith("# tiny 28x42 int8 on cpu")


def test_tiny_auto_is_labelled_fp32(tmp_path, monkeypatch, capsys):
    config = run_benchmark(tmp_path, monkeypatch)
    assert config["precision"] == "fp32"
    assert capsys.readouterr().out.startswith("# tiny 28x42 fp32 on cpu")
