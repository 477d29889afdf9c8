"""The camera-pose protocols: relative-pose AUC on CO3Dv2 (SPEC §5.4) and ATE / RPE on TUM-dynamics, ScanNet and
Sintel (the MonST3R / CUT3R trajectory protocol, which the reference names but never computes).

CO3D: per sequence, 10 frames drawn at random are streamed in draw order (518 wide, VGGT's crop preprocessing;
the reference used the 224 variant by mistake); RRA and RTA over all frame pairs are pooled per category, giving
AUC@30/15/5/3 and the accuracies at 5 degrees; the summary is the mean over categories. Trajectories: each
sequence is streamed whole (the evaluation input path of SPEC §5) and the predicted camera-to-world poses are
scored against the ground truth after a Sim(3) alignment.

``use_ba`` refines the predicted cameras by bundle adjustment over the model's own point tracks
(:mod:`streamvggt.evaluate.bundle_adjust`) and reports those numbers beside the plain ones, with a ``_ba`` suffix.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamvggt.evaluate.bundle_adjust import bundle_adjust, require_pycolmap, select_observations
from streamvggt.evaluate.datasets.co3d import MIN_FRAMES, NUM_FRAMES, Co3dDataset
from streamvggt.evaluate.datasets.posed import PoseDataset, PoseSequence
from streamvggt.evaluate.datasets.scannet import ScanNetDataset
from streamvggt.evaluate.datasets.sintel import SintelDataset
from streamvggt.evaluate.datasets.tum import TumDataset
from streamvggt.evaluate.metrics import aligned_camera_centres, pose_auc, relative_pose_errors, trajectory_errors
from streamvggt.evaluate.plotting import pyplot, save_figure
from streamvggt.evaluate.report import write_results
from streamvggt.evaluate.runner import eval_preprocessor, stream_sequence
from streamvggt.evaluate.tracks import track_sequence
from streamvggt.geometry import homogeneous_pose, invert_pose
from streamvggt.io.errors import InputError
from streamvggt.io.inputs.preprocess import DEFAULT_SIZE, Preprocessor
from streamvggt.model.streamvggt import StreamVGGT

log = logging.getLogger(__name__)

POSE_DATASETS = ("co3d", "tum", "scannet", "sintel")
AUC_THRESHOLDS = (30, 15, 5, 3)  # degrees
ACCURACY_THRESHOLD = 5.0  # degrees, for R_ACC@5 and T_ACC@5
# The Sintel sequences of the MonST3R / CUT3R pose protocol (the others have too little camera motion or none).
SINTEL_POSE_SEQUENCES = (
    "alley_2", "ambush_4", "ambush_5", "ambush_6", "cave_2", "cave_4", "market_2", "market_5", "market_6",
    "shaman_3", "sleeping_1", "sleeping_2", "temple_2", "temple_3",
)  # fmt: skip


def run_pose(
    dataset: str,
    root: Path,
    model: StreamVGGT,
    outdir: Path,
    cache: str = "full",
    use_ba: bool = False,
    num_frames: int = NUM_FRAMES,
    seed: int = 0,
    max_frames: int | None = None,
    meta: dict[str, Any] | None = None,
    size: int = DEFAULT_SIZE,
    plots: bool = True,
) -> dict[str, float]:
    """Run the pose protocol of ``dataset`` (one of POSE_DATASETS) at ``root``; returns the summary metrics.

    Writes ``pose-{dataset}.json`` / ``.md`` (per category for CO3D, per sequence otherwise, and the mean) and
    ``plots/pose-{dataset}/<sequence>.png`` (trajectories for TUM, ScanNet and Sintel; CO3D camera centres) into
    ``outdir``. num_frames and seed: CO3D's frames per sequence and their random draw. max_frames: at most N
    frames per sequence. use_ba: also report the bundle-adjusted cameras' metrics (needs pycolmap).
    size: the model's input width (CO3D) or longest side (trajectories). meta: extra settings for the report
    (checkpoint). plots: write the figures.
    """
    check_pose(dataset, root, num_frames, max_frames, use_ba)
    name = f"pose-{dataset}"
    plot_dir = outdir / "plots" / name if plots else None
    settings: dict[str, Any] = {"protocol": "pose", "dataset": dataset, "cache": cache, "use_ba": use_ba}
    if dataset == "co3d":
        per_row, summary, root_used = _co3d(root, model, plot_dir, cache, use_ba, num_frames, seed, max_frames, size)
        settings |= {"num_frames": num_frames, "seed": seed, "image_size": f"crop {size}"}
    else:
        per_row, summary, root_used = _trajectories(dataset, root, model, plot_dir, cache, use_ba, max_frames, size)
        settings |= {"image_size": f"resize {size}", "alignment": "sim3"}
    settings |= {"root": str(root_used), "max_frames": max_frames, **(meta or {})}
    write_results(outdir, name, per_row, summary, settings, precision=model.execution)
    return summary


def check_pose(dataset: str, root: Path, num_frames: int, max_frames: int | None, use_ba: bool) -> None:
    """Reject bad settings before any model work: an unknown dataset, a folder without its layout (InputError),
    CO3D frame counts outside [2, 50], fewer than 2 frames per sequence, BA without pycolmap."""
    if dataset not in POSE_DATASETS:
        raise ValueError(f"unknown pose dataset '{dataset}': choose one of {', '.join(POSE_DATASETS)}")
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"--max-frames must be at least 2 for camera poses, got {max_frames}")
    if dataset == "co3d" and not 2 <= num_frames <= MIN_FRAMES:
        raise ValueError(f"--num-frames must be in [2, {MIN_FRAMES}] for co3d, got {num_frames}")
    {"co3d": Co3dDataset, "tum": TumDataset, "scannet": ScanNetDataset, "sintel": SintelDataset}[dataset](root)
    if use_ba:
        require_pycolmap()


# ------------------------------------------------------------------------------------------------------- CO3D


def _co3d(
    root: Path,
    model: StreamVGGT,
    plots: Path | None,
    cache: str,
    use_ba: bool,
    num_frames: int,
    seed: int,
    max_frames: int | None,
    size: int,
) -> tuple[dict[str, dict[str, float]], dict[str, float], Path]:
    data = Co3dDataset(root)
    rng = np.random.RandomState(seed)  # one stream of draws over all categories, as the reference's global seed
    preprocessor = Preprocessor("crop", size)  # VGGT's load_and_preprocess_images at 518
    per_category: dict[str, dict[str, float]] = {}
    for category in data.categories():
        errors: dict[str, list[np.ndarray]] = {"": [], "_ba": []}
        sequences = data.sequences(category, rng, num_frames)
        for sequence in sequences:
            sequence = sequence.head(max_frames)
            gt = sequence.cam_from_world
            cameras = _predict(data, sequence, model, cache, preprocessor, use_ba)
            for suffix, extrinsics in cameras.items():
                errors[suffix].append(np.stack(relative_pose_errors(extrinsics, gt), axis=-1))
            if plots is not None:
                _plot_centres(cameras, gt, plots / f"{sequence.name.replace('/', '_')}.png", sequence.name)
        if not sequences:
            log.warning("co3d %s: no usable sequence, left out", category)
            continue
        row: dict[str, float] = {"sequences": len(sequences)}
        for suffix, pairs in errors.items():
            if pairs:
                row |= _auc_row(np.concatenate(pairs), suffix)
        per_category[category] = row
        log.info("co3d %s: AUC@30 %.4f over %d sequences", category, row["auc_30"], len(sequences))
    if not per_category:
        raise InputError(f"co3d at {root}: no category has a usable sequence on disk")
    rows = list(per_category.values())
    summary = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key != "sequences"}
    summary["sequences"] = int(sum(r["sequences"] for r in rows))
    return per_category, summary, data.root


def _auc_row(errors: np.ndarray, suffix: str) -> dict[str, float]:
    """AUCs and accuracies of pooled pair errors [P, 2] (RRA, RTA in degrees)."""
    rra, rta = errors[:, 0], errors[:, 1]
    row = {f"auc_{t}{suffix}": pose_auc(rra, rta, t) for t in AUC_THRESHOLDS}
    row[f"r_acc_5{suffix}"] = float((rra < ACCURACY_THRESHOLD).mean())
    row[f"t_acc_5{suffix}"] = float((rta < ACCURACY_THRESHOLD).mean())
    return row


# ------------------------------------------------------------------------------------------------ trajectories


def _open_trajectories(dataset: str, root: Path) -> tuple[list[PoseSequence], PoseDataset | SintelDataset]:
    if dataset == "tum":
        data: PoseDataset | SintelDataset = TumDataset(root)
        return data.sequences(), data
    if dataset == "scannet":
        data = ScanNetDataset(root)
        return data.sequences(), data
    sintel = SintelDataset(root)
    chosen = [s for s in sintel.sequences() if s.name in SINTEL_POSE_SEQUENCES]
    if not chosen:
        raise InputError(f"sintel at {sintel.root}: none of the pose sequences ({', '.join(SINTEL_POSE_SEQUENCES)})")
    return [PoseSequence(s.name, [f.image for f in s.frames], sintel.cameras(s)[1]) for s in chosen], sintel


def _trajectories(
    dataset: str,
    root: Path,
    model: StreamVGGT,
    plots: Path | None,
    cache: str,
    use_ba: bool,
    max_frames: int | None,
    size: int,
) -> tuple[dict[str, dict[str, float]], dict[str, float], Path]:
    sequences, data = _open_trajectories(dataset, root)
    per_sequence: dict[str, dict[str, float]] = {}
    for sequence in sequences:
        sequence = sequence.head(max_frames)
        known = np.isfinite(sequence.cam_from_world).all(axis=(1, 2))
        if known.sum() < 3:
            log.warning("%s %s: fewer than 3 frames with a ground-truth pose, left out", dataset, sequence.name)
            continue
        cameras = _predict(data, sequence, model, cache, eval_preprocessor(size), use_ba)
        gt_c2w = _c2w(sequence.cam_from_world[known])
        row: dict[str, float] = {"frames": int(known.sum())}
        for suffix, extrinsics in cameras.items():
            scores = trajectory_errors(_c2w(extrinsics[known]), gt_c2w)
            row |= {f"{key}{suffix}": value for key, value in scores.items()}
        per_sequence[sequence.name] = row
        if plots is not None:
            known_cameras = {s: e[known] for s, e in cameras.items()}
            title = f"{dataset} {sequence.name}"
            _plot_trajectories(
                known_cameras, sequence.cam_from_world[known], plots / f"{sequence.name}.png", title, row
            )
        log.info(
            "%s %s: ATE %.4f, RPE %.4f / %.3f deg",
            dataset,
            sequence.name,
            row["ate"],
            row["rpe_trans"],
            row["rpe_rot_deg"],
        )
    if not per_sequence:
        raise InputError(f"{dataset} at {data.root}: no sequence with at least 3 ground-truth poses")
    rows = list(per_sequence.values())
    summary = {key: float(np.mean([r[key] for r in rows])) for key in rows[0] if key != "frames"}
    summary["frames"] = int(sum(r["frames"] for r in rows))
    return per_sequence, summary, data.root


# ------------------------------------------------------------------------------------------------------ common


def _predict(
    data: Any, sequence: PoseSequence, model: StreamVGGT, cache: str, preprocessor: Preprocessor, use_ba: bool
) -> dict[str, np.ndarray]:
    """Predicted camera-from-world [S, 4, 4] of the sequence's frames: {"": plain} and with BA {"_ba": refined}."""
    frames = ((path.stem, data.read_image(path)) for path in sequence.images)
    if not use_ba:
        results = stream_sequence(model, frames, cache, preprocessor)
        return {"": _homogeneous(np.stack([r.extrinsic for r in results]))}
    tracked = track_sequence(model, frames, cache, preprocessor)
    observed = select_observations(tracked.visibility, tracked.confidence)
    adjusted = bundle_adjust(tracked.extrinsics, tracked.intrinsics, tracked.image_size, tracked.tracks, observed)
    return {"": _homogeneous(tracked.extrinsics), "_ba": _homogeneous(adjusted.extrinsics)}


def _homogeneous(extrinsics: np.ndarray) -> np.ndarray:
    return homogeneous_pose(torch.from_numpy(np.asarray(extrinsics, dtype=np.float64))).numpy()


def _c2w(cam_from_world: np.ndarray) -> np.ndarray:
    return invert_pose(torch.from_numpy(np.asarray(cam_from_world, dtype=np.float64))).numpy()


def _top_view(gt_centres: np.ndarray) -> np.ndarray:
    """Projection [3, 2] onto the ground truth's two main directions of motion (datasets differ in which world
    axis is up, so "from above" is the plane the camera moved in most)."""
    centred = gt_centres - gt_centres.mean(axis=0)
    _, _, vh = np.linalg.svd(centred, full_matrices=False)
    return vh[:2].T if len(vh) >= 2 else np.eye(3)[:, :2]


def _plot_trajectories(
    cameras: dict[str, np.ndarray], gt_w2c: np.ndarray, path: Path, title: str, row: dict[str, float]
) -> None:
    """Ground-truth and Sim(3)-aligned predicted camera paths, projected on the plane of motion."""
    fig, ax = pyplot().subplots(figsize=(6, 5))
    gt = _c2w(gt_w2c)[:, :3, 3]
    projection = _top_view(gt)
    ax.plot(*(gt @ projection).T, "k.-", label="ground truth", markersize=3)
    styles = {"": ("tab:red", "prediction"), "_ba": ("tab:blue", "prediction + BA")}
    for suffix, extrinsics in cameras.items():
        pred, _ = aligned_camera_centres(extrinsics, gt_w2c)
        colour, label = styles[suffix]
        ax.plot(
            *(pred @ projection).T, ".-", color=colour, markersize=3, label=f"{label} (ATE {row['ate' + suffix]:.3f})"
        )
    ax.set_aspect("equal", adjustable="datalim")
    ax.set(xlabel="main direction of motion", ylabel="second direction")
    ax.set_title(f"{title} (Sim(3)-aligned)", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _plot_centres(cameras: dict[str, np.ndarray], gt_w2c: np.ndarray, path: Path, title: str) -> None:
    """CO3D: camera centres (in draw order) of the ground truth and the aligned predictions."""
    _plot_trajectories(cameras, gt_w2c, path, title, {f"ate{s}": _centre_rmse(e, gt_w2c) for s, e in cameras.items()})


def _centre_rmse(pred_w2c: np.ndarray, gt_w2c: np.ndarray) -> float:
    pred, gt = aligned_camera_centres(pred_w2c, gt_w2c)
    return float(np.sqrt(((pred - gt) ** 2).sum(-1).mean()))
