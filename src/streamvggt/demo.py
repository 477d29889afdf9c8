"""``streamvggt demo``: reconstruct a held-out synthetic sequence and score it against its ground truth.

The sequence is a held-out procedural scene (:func:`streamvggt.evaluate.synthetic.synthetic_sequence`, a seed
training never uses). The frames are written as PNGs and streamed through :func:`streamvggt.reconstruct` like any
folder, so the demo exercises the real main job; the outputs are then read back and compared with the exact depth
and cameras by :func:`streamvggt.evaluate.synthetic.score`, beside trivial baselines (a constant depth per frame; the
identity pose for every frame), so the model's numbers have a scale.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from streamvggt.evaluate.metrics import as_f64
from streamvggt.evaluate.report import prepare_output_dir
from streamvggt.evaluate.synthetic import DEMO_SEED, plot_sequence, score, synthetic_sequence
from streamvggt.geometry import homogeneous_pose
from streamvggt.io.atomic import atomic_output
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.pipeline.reconstructor import ReconstructionSummary, reconstruct

log = logging.getLogger(__name__)


def run_demo(
    output_dir: str | os.PathLike,
    model: StreamVGGT | str | os.PathLike | None = None,
    num_frames: int = 16,
    device: str | None = None,
    precision: str = "auto",
    progress: bool = False,
) -> tuple[ReconstructionSummary, dict]:
    """Render the demo sequence into ``output_dir/frames``, reconstruct it into ``output_dir``, and write
    ``metrics.json`` and ``demo.png``. Returns the reconstruction summary and the metrics."""
    output_dir = prepare_output_dir(output_dir)  # a file in the way fails here, before any rendering
    sequence = synthetic_sequence(num_frames, seed=DEMO_SEED)
    frames_dir = prepare_output_dir(output_dir / "frames")
    for index, image in enumerate(sequence.images):
        with atomic_output(frames_dir / f"{index:04d}.png") as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
    width = sequence.images.shape[2]
    summary = reconstruct(
        frames_dir, output_dir, model, size=width, device=device, precision=precision, progress=progress
    )
    depth, extrinsics = _read_outputs(output_dir)
    metrics = score(depth, extrinsics, sequence)
    with atomic_output(output_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    plot_sequence(sequence, depth, extrinsics, metrics, output_dir / "demo.png")
    return summary, metrics


def _read_outputs(output_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Predicted depth [N, H, W] and extrinsics [N, 4, 4] read back from the written outputs."""
    cameras = json.loads((output_dir / "cameras.json").read_text(encoding="utf-8"))["frames"]
    depth = np.stack([np.load(output_dir / cam["depth"]) for cam in cameras])
    extrinsics = homogeneous_pose(as_f64([cam["extrinsic"] for cam in cameras])).numpy()
    return depth, extrinsics
