"""benchmarks/compiled_step.py (eager against compiled steps, the GPU benchmark) runs on the tiny preset on CPU, so
it cannot rot while no GPU runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch._dynamo

from tests.helpers import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compiled_step.py"


@pytest.fixture(autouse=True)
def fresh_dynamo() -> None:
    torch._dynamo.reset()


def test_benchmark_reports_one_compile_at_the_fill_and_eager_equal_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--preset", "tiny", "--size", "28x42", "--frames", "7", "--policies", "window:2+int8"]
    report = load_script(SCRIPT).main([*args, "--backend", "eager", "--device", "cpu", "--out", str(tmp_path)])
    run = report["policies"]["window:2+int8"]
    assert run["compiled_at_frame"] == 3  # anchor + 2 frames fill window:2
    assert run["graphs"] == [0, 0, 0, 1, 1, 1, 1]
    assert run["recompiles_after_first"] == 0
    assert max(run["depth_gap"]) <= 1e-4 and max(run["pose_gap"]) <= 1e-4
    assert len(run["eager_s"]) == len(run["compiled_s"]) == 7
    assert json.loads((tmp_path / "compiled_step.json").read_text())["config"]["backend"] == "eager"
    assert "| window:2+int8 | 3 | 1 | 0 |" in capsys.readouterr().out
