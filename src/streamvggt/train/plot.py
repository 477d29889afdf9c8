"""The loss curve of a run as a PNG, from its ``metrics.jsonl``."""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The per-step records of ``metrics.jsonl``, by step (a step logged twice keeps its last record)."""
    records: dict[int, dict] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                records[int(record["step"])] = record
    return [records[step] for step in sorted(records)]


def moving_average(values: list[float], window: int) -> list[float]:
    """Mean of each value and up to ``window - 1`` before it."""
    sums = [0.0]
    for value in values:
        sums.append(sums[-1] + value)
    return [(sums[i + 1] - sums[max(0, i + 1 - window)]) / min(i + 1, window) for i in range(len(values))]


def plot_loss_curve(metrics_path: str | os.PathLike, png_path: str | os.PathLike, smoothing: int = 20) -> Path:
    """Plot the total loss and each weighted term against the step (log scale), raw and as a moving average."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    if not records:
        raise ValueError(f"{metrics_path} holds no steps")
    steps = [r["step"] for r in records]
    names = ["loss", *sorted(k for k in records[0] if k.startswith("loss/"))]
    figure, axis = plt.subplots(figsize=(8, 5), dpi=100)
    for name in names:
        values = [r[name] for r in records]
        smooth = moving_average(values, max(1, min(smoothing, len(values) // 5)))
        (line,) = axis.plot(steps, smooth, label=name, linewidth=2 if name == "loss" else 1.2)
        axis.plot(steps, values, color=line.get_color(), alpha=0.2, linewidth=0.8)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss (weighted terms)")
    if all(r[n] > 0 for r in records for n in names):
        axis.set_yscale("log")
    axis.grid(True, alpha=0.3)
    axis.legend()
    axis.set_title(f"training loss, steps {steps[0]}-{steps[-1]}")
    figure.tight_layout()
    png_path = Path(png_path)
    figure.savefig(png_path)
    plt.close(figure)
    return png_path
