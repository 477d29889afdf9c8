"""Quality of a model on held-out synthetic sequences, beside trivial baselines (the numbers of the model card).

For each of ``--sequences`` procedural scenes drawn from seeds that training never uses, the frames are streamed
through a session and scored with :func:`streamvggt.evaluate.synthetic.score`: video-depth Abs Rel with one scale per
sequence (against predicting a constant depth per frame) and relative rotation / translation-direction errors
with AUC@30 (against predicting the identity pose for every frame). It also reports how far the streamed
outputs are from the offline causal forward on the same frames.

    python benchmarks/default_model_quality.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from streamvggt import load_model
from streamvggt.evaluate.synthetic import HELD_OUT_SEED, score, synthetic_sequence
from streamvggt.geometry import homogeneous_pose, pose_encoding_to_extri_intri

METRICS = (
    ("model", "depth_abs_rel"),
    ("baseline_constant_depth", "depth_abs_rel"),
    ("model", "rra_deg"),
    ("baseline_identity_pose", "rra_deg"),
    ("model", "rta_deg"),
    ("baseline_identity_pose", "rta_deg"),
    ("model", "auc_30"),
    ("baseline_identity_pose", "auc_30"),
)


@torch.no_grad()
def evaluate_sequence(model, seed: int, frames: int) -> tuple[dict, float]:
    """Scores of one held-out sequence, and the max |stream - offline| over depth and pose encodings."""
    seq = synthetic_sequence(frames, seed=seed)
    images = torch.from_numpy(seq.images).permute(0, 3, 1, 2).float().div(255)[None]  # [1, S, 3, H, W]
    session = model.stream()
    steps = [session.step(images[:, t]) for t in range(frames)]
    offline = model(images)
    streamed_pose = torch.stack([s["pose_enc"] for s in steps], dim=1)
    streamed_depth = torch.stack([s["depth"] for s in steps], dim=1)
    gap = max(
        float((streamed_pose - offline["pose_enc"]).abs().max()),
        float((streamed_depth - offline["depth"]).abs().max()),
    )
    extrinsic, _ = pose_encoding_to_extri_intri(streamed_pose[0].double(), seq.depth.shape[1:])
    extrinsics = homogeneous_pose(extrinsic).numpy()
    return score(streamed_depth[0, ..., 0].numpy(), extrinsics, seq), gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="model source (default: the bundled model)")
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    model = load_model(args.checkpoint, device="cpu")
    started = time.perf_counter()
    results, gaps = [], []
    for index in range(args.sequences):
        result, gap = evaluate_sequence(model, HELD_OUT_SEED + 1 + index, args.frames)
        results.append(result)
        gaps.append(gap)
    means = {f"{who}/{key}": float(np.mean([r[who][key] for r in results])) for who, key in METRICS}
    report = {
        "checkpoint": args.checkpoint or "bundled default model",
        "sequences": args.sequences,
        "frames": args.frames,
        "image_size": results[0]["image_size"],
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "seconds": time.perf_counter() - started,
        "mean": means,
        "stream_vs_offline_max_abs": max(gaps),
        "per_sequence": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "default_model_quality.json").write_text(json.dumps(report, indent=1))
    print(f"# {report['checkpoint']}: {args.sequences} held-out sequences x {args.frames} frames")
    print("| metric | model | baseline |")
    print("|---|---|---|")
    for key, baseline in (
        ("depth_abs_rel", "baseline_constant_depth"),
        ("rra_deg", "baseline_identity_pose"),
        ("rta_deg", "baseline_identity_pose"),
        ("auc_30", "baseline_identity_pose"),
    ):
        print(f"| {key} | {means[f'model/{key}']:.4f} | {means[f'{baseline}/{key}']:.4f} |")
    print(f"stream vs offline causal forward, max |diff| (depth, pose_enc): {max(gaps):.2e}")


if __name__ == "__main__":
    main()
