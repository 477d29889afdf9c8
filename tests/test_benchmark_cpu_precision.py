"""benchmarks/cpu_precision.py runs end to end on the tiny preset (so it cannot rot): a row per mode with what it
ran as, its speed, memory and accuracy against fp32, compiled blocks included."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from tests.helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_precision.py"


def test_tiny_run_reports_every_mode(tmp_path, monkeypatch, capsys):
    module = load_script(SCRIPT)
    args = ["--preset", "tiny", "--size", "28x42", "--frames", "2", "--modes", "fp32,bf16+regions", "--threads", "1"]
    args += ["--sequences", "0", "--accuracy-frames", "2", "--tmp", str(tmp_path), "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", ["cpu_precision.py", *args])
    module.main()

    report = json.loads((tmp_path / "out" / "cpu_precision.json").read_text())
    assert [(run["mode"], run["resolved"]) for run in report["speed"]] == [
        ("fp32", "fp32"),
        ("bf16+regions", "bf16+regions"),
    ]
    for run in report["speed"]:
        assert len(run["step_s"]) == 2 and all(s > 0 for s in run["step_s"])
        assert run["peak_rss_bytes"] > 0
    accuracy = report["accuracy"]["bf16+regions"]
    # bf16 against fp32 on the bundled model: different (bf16 rounds), and far inside the targets.
    assert 0 < accuracy["worst_depth_rel_err"] < 0.01 and 0 < accuracy["worst_pose_enc_err"] < 1e-3
    assert accuracy["passes"]
    assert math.isfinite(report["block_ms"]["bf16"])
    table = capsys.readouterr().out
    assert "| bf16+regions | bf16+regions |" in table and "| fp32 | fp32 |" in table
