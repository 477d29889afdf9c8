"""benchmarks/resume_state.py runs on the tiny preset and reports every policy's saves and the runs' costs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "resume_state.py"


def test_the_benchmark_reports_saves_per_policy_and_the_cost_of_saving(tmp_path, monkeypatch, capsys):
    args = ["--preset", "tiny", "--size", "56", "--frames", "3", "--policies", "full,window:1,budget:{2}+int8"]
    monkeypatch.setattr(sys, "argv", ["resume_state.py", *args, "--every", "1", "--out", str(tmp_path)])
    load_script(SCRIPT).main()
    result = json.loads((tmp_path / "resume_state.json").read_text())
    saves = {row["policy"]: row for row in result["saves"]}
    tokens = result["config"]["frame_tokens"]
    assert list(saves) == ["full", "window:1", f"budget:{2 * tokens}+int8"]
    full, window = saves["full"]["state_bytes"], saves["window:1"]["state_bytes"]
    assert full[0] < full[1] < full[2], "the full cache's state grows with the stream"
    assert window[1] == window[2], "a window's state stops growing once the ring is full"
    for row in saves.values():
        assert len(row["save_seconds"]) == 3 and all(s > 0 for s in row["save_seconds"])
        # the saved tensors are what the estimate counts, plus the files' headers and the small metadata
        assert 0 < row["state_bytes"][-1] - row["estimated_bytes"][-1] < 64 * 1024
    assert [(run["state_every"], run["saves"]) for run in result["runs"]] == [(0, 0), (1, 3)]
    assert result["config"]["cpu_capability"] and result["config"]["cpu"]
    out = capsys.readouterr().out
    assert out.startswith("# tiny 56x42, 3 frames, fp32 on ")
    assert "| --state-every 1 |" in out
