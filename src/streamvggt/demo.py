"""``streamvggt demo``: reconstruct a held-out synthetic sequence and score it against its ground truth.

The sequence is a procedural scene (:mod:`streamvggt.train.data.synthetic`) drawn from seeds the training split
never uses. The frames are written as PNGs and streamed through :func:`streamvggt.reconstruct` like any folder, so
the demo exercises the real main job; the outputs are then read back and compared with the exact depth and
cameras. Trivial baselines (a constant depth per frame; the identity pose for every frame) are scored by the same
code, so the model's numbers have a scale.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from streamvggt.evaluate.metrics import depth_metrics, pose_auc, relative_pose_errors, trajectory_errors
from streamvggt.geometry import invert_pose
from streamvggt.io.atomic import atomic_output
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.reconstruction import ReconstructionSummary, reconstruct

log = logging.getLogger(__name__)

# Far from the training seeds (0 and up): the demo scene is never seen in training.
DEMO_SEED = 7_000_001
DEMO_SIZE = (112, 84)  # (W, H): the bundled model's training resolution


@dataclass(frozen=True)
class SyntheticSequence:
    """Rendered frames with their exact geometry, cameras relative to the first frame (the model's world)."""

    images: np.ndarray  # [N, H, W, 3] uint8
    depth: np.ndarray  # [N, H, W] float32, z-depth
    extrinsics: np.ndarray  # [N, 4, 4] camera-from-world, world = first camera, OpenCV axes
    intrinsic: np.ndarray  # [3, 3]


def synthetic_sequence(num_frames: int, seed: int = DEMO_SEED, size: tuple[int, int] = DEMO_SIZE) -> SyntheticSequence:
    """Render ``num_frames`` consecutive frames of the procedural scene drawn from ``seed``."""
    from streamvggt.train.data.sampling import item_rng
    from streamvggt.train.data.synthetic import SyntheticScene

    width, height = size
    scene = SyntheticScene(item_rng(seed, 0), num_frames)
    rendered = [scene.render(i, width, height, supersample=2) for i in range(num_frames)]
    first_c2w = scene.cam_to_world[0]
    # camera_i-from-first-camera = inv(c2w_i) @ c2w_0
    extrinsics = np.stack([np.linalg.inv(c2w) @ first_c2w for c2w in scene.cam_to_world[:num_frames]])
    return SyntheticSequence(
        images=np.stack([image for image, _ in rendered]),
        depth=np.stack([depth for _, depth in rendered]),
        extrinsics=extrinsics,
        intrinsic=scene.intrinsics(width, height),
    )


def run_demo(
    output_dir: str | os.PathLike,
    model: StreamVGGT | str | os.PathLike | None = None,
    num_frames: int = 16,
    device: str | None = None,
    progress: bool = False,
) -> tuple[ReconstructionSummary, dict]:
    """Render the demo sequence into ``output_dir/frames``, reconstruct it into ``output_dir``, and write
    ``metrics.json`` and ``demo.png``. Returns the reconstruction summary and the metrics."""
    output_dir = Path(output_dir)
    sequence = synthetic_sequence(num_frames)
    frames_dir = output_dir / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(sequence.images):
        with atomic_output(frames_dir / f"{index:04d}.png") as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
    width = sequence.images.shape[2]
    summary = reconstruct(frames_dir, output_dir, model, size=width, device=device, progress=progress)
    depth, extrinsics = _read_outputs(output_dir)
    metrics = score(depth, extrinsics, sequence)
    with atomic_output(output_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    with atomic_output(output_dir / "demo.png") as tmp:
        _figure(sequence, depth, extrinsics, metrics, tmp)
    return summary, metrics


def _read_outputs(output_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Predicted depth [N, H, W] and extrinsics [N, 4, 4] read back from the written outputs."""
    cameras = json.loads((output_dir / "cameras.json").read_text(encoding="utf-8"))["frames"]
    depth = np.stack([np.load(output_dir / cam["depth"]) for cam in cameras])
    bottom = np.array([[0.0, 0.0, 0.0, 1.0]])
    extrinsics = np.stack([np.concatenate((np.asarray(cam["extrinsic"]), bottom)) for cam in cameras])
    return depth, extrinsics


def score(pred_depth: np.ndarray, pred_extrinsics: np.ndarray, gt: SyntheticSequence) -> dict:
    """The model's errors beside those of trivial baselines, all with the same metric code.

    Depth: video-depth Abs Rel and delta<1.25 with one scale per sequence. Cameras: mean relative rotation (RRA)
    and translation-direction (RTA) errors over all frame pairs, AUC@30, and ATE after Sim(3) alignment.
    """
    constant = np.ones_like(gt.depth)  # one constant per frame; the sequence scale is fitted
    identity = np.broadcast_to(np.eye(4), pred_extrinsics.shape).copy()
    results = {}
    for name, depth, extrinsics in (
        ("model", pred_depth, pred_extrinsics),
        ("baseline_constant_depth", constant, None),
        ("baseline_identity_pose", None, identity),
    ):
        entry = {}
        if depth is not None:
            d = depth_metrics(depth, gt.depth, align="scale")
            entry |= {"depth_abs_rel": d["abs_rel"], "depth_delta_1.25": d["delta_1.25"]}
        if extrinsics is not None:
            rra, rta = relative_pose_errors(extrinsics, gt.extrinsics)
            entry |= {"rra_deg": float(rra.mean()), "rta_deg": float(rta.mean()), "auc_30": pose_auc(rra, rta)}
            if name == "model":
                c2w_pred = invert_pose(_torch(extrinsics)).numpy()
                entry["ate"] = trajectory_errors(c2w_pred, invert_pose(_torch(gt.extrinsics)).numpy())["ate"]
        results[name] = entry
    results["frames"] = int(gt.depth.shape[0])
    results["image_size"] = [int(gt.depth.shape[1]), int(gt.depth.shape[2])]
    return results


def _torch(array: np.ndarray):
    import torch

    return torch.from_numpy(np.asarray(array, dtype=np.float64))


def _figure(sequence: SyntheticSequence, depth: np.ndarray, extrinsics: np.ndarray, metrics: dict, path: Path) -> None:
    """Input frames, predicted vs true depth, and the trajectory seen from above (x-z of the first camera)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from streamvggt.evaluate.metrics import l1_scale

    shown = np.linspace(0, len(depth) - 1, min(4, len(depth))).round().astype(int)
    scale = float(l1_scale(_torch(depth).flatten(), _torch(sequence.depth).flatten()))
    fig = plt.figure(figsize=(3 * len(shown) + 4, 7.5))
    grid = fig.add_gridspec(3, len(shown) + 1, width_ratios=[1] * len(shown) + [1.4])
    vmax = float(np.percentile(sequence.depth, 98))
    for column, index in enumerate(shown):
        for row, (image, title) in enumerate(
            (
                (sequence.images[index], f"frame {index}"),
                (depth[index] * scale, "predicted depth (scaled)"),
                (sequence.depth[index], "true depth"),
            )
        ):
            ax = fig.add_subplot(grid[row, column])
            ax.imshow(image, cmap=None if row == 0 else "turbo", vmin=0, vmax=None if row == 0 else vmax)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    ax = fig.add_subplot(grid[:, -1])
    gt_centres = invert_pose(_torch(sequence.extrinsics))[:, :3, 3].numpy()
    pred_centres = _aligned_centres(extrinsics, sequence.extrinsics)
    ax.plot(gt_centres[:, 0], gt_centres[:, 2], "k.-", label="true")
    ax.plot(pred_centres[:, 0], pred_centres[:, 2], "r.-", label="predicted (Sim(3)-aligned)")
    ax.set(xlabel="x", ylabel="z", title="trajectory from above", aspect="equal")
    ax.legend(fontsize=8)
    model, flat, still = metrics["model"], metrics["baseline_constant_depth"], metrics["baseline_identity_pose"]
    fig.suptitle(
        f"depth AbsRel {model['depth_abs_rel']:.3f} (constant: {flat['depth_abs_rel']:.3f})"
        f"   RRA {model['rra_deg']:.2f}° (identity: {still['rra_deg']:.2f}°)"
        f"   RTA {model['rta_deg']:.1f}° (identity: {still['rta_deg']:.1f}°)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _aligned_centres(pred_extrinsics: np.ndarray, gt_extrinsics: np.ndarray) -> np.ndarray:
    from streamvggt.geometry import umeyama

    pred = invert_pose(_torch(pred_extrinsics))[:, :3, 3]
    gt = invert_pose(_torch(gt_extrinsics))[:, :3, 3]
    if len(pred) < 3:
        return pred.numpy()
    scale, rot, trans = umeyama(pred, gt)
    return (scale * pred @ rot.T + trans).numpy()
