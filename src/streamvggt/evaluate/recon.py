"""The multi-view reconstruction protocol of SPEC §5.3 on 7-Scenes and NRGBD: accuracy, completeness, normals.

Per scene: the kept frames are cropped and resized to 518 x 392 as the reference's loader does, streamed through
one session, and the point head's output (in the first camera's frame) is compared with the ground-truth points
moved into the first camera's frame. Both clouds are shifted by their median depth and the prediction is scaled to
the ground truth's median spread (computed on the ground truth's valid pixels); the central 224 x 224 pixels of
every view, where the ground truth is valid, are then registered by point-to-point ICP (0.1 m) and scored.
Unlike the reference, the ground-truth cloud is masked by its own validity, not by the prediction's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from streamvggt.evaluate.datasets.base import DepthDataset, DepthSequence
from streamvggt.evaluate.datasets.nrgbd import NrgbdDataset
from streamvggt.evaluate.datasets.sevenscenes import SevenScenesDataset
from streamvggt.evaluate.icp import estimate_normals, icp_point_to_point
from streamvggt.evaluate.metrics import recon_metrics
from streamvggt.evaluate.plotting import pyplot, save_figure
from streamvggt.evaluate.report import write_results
from streamvggt.evaluate.runner import eval_preprocessor, stream_sequence
from streamvggt.geometry import depth_to_camera_points
from streamvggt.io.errors import InputError
from streamvggt.model.streamvggt import StreamVGGT

log = logging.getLogger(__name__)

RECON_DATASETS: dict[str, type[DepthDataset]] = {"7scenes": SevenScenesDataset, "nrgbd": NrgbdDataset}
RESOLUTION = (518, 392)  # (width, height) the reference feeds the model
CROP = 224  # side of the evaluated centre crop, pixels
ICP_THRESHOLD = 0.1  # metres
SCALE_CLIP = (1e-3, 1e3)  # the reference keeps the prediction's scale in this range
PLOTTED_POINTS = 20000  # per cloud in the top-view figure


def run_recon(
    dataset: str,
    root: Path,
    model: StreamVGGT,
    outdir: Path,
    cache: str = "full",
    max_frames: int | None = None,
    meta: dict[str, Any] | None = None,
    kf_every: int | None = None,
    resolution: tuple[int, int] = RESOLUTION,
    crop: int = CROP,
    plots: bool = True,
) -> dict[str, float]:
    """Run the reconstruction protocol on ``dataset`` ("7scenes" or "nrgbd") at ``root``; returns the metrics
    averaged over scenes.

    Writes ``recon-{dataset}.json`` / ``.md`` (per-scene and mean acc, comp, nc with medians) and
    ``plots/recon-{dataset}/<scene>.png`` (aligned prediction over the ground truth, seen from above) into
    ``outdir``. max_frames: use only the first N kept frames of each scene. kf_every (default: the dataset's),
    resolution (width, height) and crop change the protocol (for quick checks; the reference's numbers need the
    defaults). meta: extra settings for the report (checkpoint). plots: write the figures.
    """
    data = check_recon(dataset, root, max_frames, kf_every)
    name = f"recon-{dataset}"
    per_scene: dict[str, dict[str, float]] = {}
    for sequence in data.sequences():
        sequence = DepthSequence(sequence.name, sequence.frames[:max_frames])
        plot = outdir / "plots" / name / f"{sequence.name.replace('/', '_')}.png" if plots else None
        row = _scene(data, sequence, model, cache, resolution, crop, plot)
        if row is None:
            continue
        per_scene[sequence.name] = row
        log.info("%s %s: acc %.4f comp %.4f nc %.4f", name, sequence.name, row["acc"], row["comp"], row["nc"])
    if not per_scene:
        raise InputError(f"{dataset} at {data.root}: no scene with valid ground-truth depth")
    summary = scene_mean(list(per_scene.values()))
    settings = {
        "protocol": "recon",
        "dataset": dataset,
        "root": str(data.root),
        "cache": cache,
        "image_size": f"{resolution[0]}x{resolution[1]}",
        "crop": crop,
        "icp_threshold_m": ICP_THRESHOLD,
        "kf_every": data.kf_every,
        "max_frames": max_frames,
        **(meta or {}),
    }
    write_results(outdir, name, per_scene, summary, settings, precision=model.execution)
    return summary


def check_recon(dataset: str, root: Path, max_frames: int | None = None, kf_every: int | None = None) -> DepthDataset:
    """Reject bad settings before any model work (ValueError; InputError for a folder without the dataset's
    layout) and return the opened dataset."""
    if dataset not in RECON_DATASETS:
        raise ValueError(f"unknown reconstruction dataset '{dataset}': choose one of {', '.join(RECON_DATASETS)}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be at least 1, got {max_frames}")
    return RECON_DATASETS[dataset](root) if kf_every is None else RECON_DATASETS[dataset](root, kf_every)


def scene_mean(rows: list[dict[str, float]]) -> dict[str, float]:
    """Metrics averaged over scenes (the reference's mean); counts (frames, points) summed."""
    return {
        key: int(sum(row[key] for row in rows))
        if key in ("frames", "points")
        else float(np.mean([r[key] for r in rows]))
        for key in rows[0]
    }


def _scene(
    data: DepthDataset,
    sequence: DepthSequence,
    model: StreamVGGT,
    cache: str,
    resolution: tuple[int, int],
    crop: int,
    plot: Path | None,
) -> dict[str, float] | None:
    """One scene's metrics (acc, comp, nc and their medians in metres, icp_fitness, frames, points), or None when
    its ground truth has too few valid points; draws the top-view figure into ``plot`` when given.

    The frames are cropped and resized to ``resolution`` (width, height), streamed through one session, and the
    point head's cloud is aligned to the ground truth (median shift and scale, then ICP) on the central ``crop``
    x ``crop`` pixels of each view.
    """
    intrinsics, extrinsics = data.cameras(sequence)
    images, gt_points, valid = [], [], []
    for frame, intrinsic, extrinsic in zip(sequence.frames, intrinsics, extrinsics, strict=True):
        image, depth, k = crop_resize(data.read_image(frame.image), data.read_depth(frame.depth), intrinsic, resolution)
        # Ground truth in the first camera's frame: first camera-from-world times this camera's camera-to-world.
        relative = extrinsics[0] @ np.linalg.inv(extrinsic)
        cam = depth_to_camera_points(torch.from_numpy(depth).double(), torch.from_numpy(k)).numpy()
        images.append(image)
        gt_points.append(cam @ relative[:3, :3].T + relative[:3, 3])
        valid.append(depth > 0)
    valid_all = np.stack(valid)
    if not valid_all.any():
        log.warning("%s %s: no valid ground-truth depth, left out", data.name, sequence.name)
        return None
    preprocessor = eval_preprocessor(max(resolution))  # the identity on views already at the resolution
    results = stream_sequence(model, zip([f.name for f in sequence.frames], images, strict=True), cache, preprocessor)
    pred = np.stack([r.world_points for r in results]).astype(np.float64)
    if pred.shape[1:3] != valid_all.shape[1:]:
        raise InputError(f"{sequence.name}: the model returned {pred.shape[1:3]} point maps for {resolution} inputs")
    gt, pred = align_scale_shift(np.stack(gt_points), pred, valid_all)

    window = centre_crop(*valid_all.shape[1:], crop)
    crop_valid = valid_all[:, window[0], window[1]]
    gt_cloud = gt[:, window[0], window[1]][crop_valid]
    pred_crop = pred[:, window[0], window[1]][crop_valid]
    pred_cloud = pred_crop[np.isfinite(pred_crop).all(axis=-1)]
    if len(gt_cloud) < 3 or len(pred_cloud) < 3:
        log.warning("%s %s: fewer than 3 valid points in the evaluated crop, left out", data.name, sequence.name)
        return None
    icp = icp_point_to_point(pred_cloud, gt_cloud, ICP_THRESHOLD)
    pred_cloud = pred_cloud @ icp.transformation[:3, :3].T + icp.transformation[:3, 3]
    row = recon_metrics(pred_cloud, gt_cloud, estimate_normals(pred_cloud), estimate_normals(gt_cloud))
    if plot is not None:
        _plot(pred_cloud, gt_cloud, row, plot, f"{data.name} {sequence.name}")
    return {**row, "icp_fitness": icp.fitness, "frames": len(results), "points": len(pred_cloud)}


def crop_resize(
    image: np.ndarray, depth: np.ndarray, intrinsic: np.ndarray, resolution: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference loader's crop and resize of a view to ``resolution`` (width, height).

    1. Crop symmetrically around the principal point. 2. Scale so the image covers the resolution (Lanczos when
    shrinking, bicubic when enlarging; depth by nearest neighbour, sampling as OpenCV's INTER_NEAREST does);
    landscape targets turn portrait for portrait images. 3. Centre-crop to the resolution. Intrinsics follow
    (COLMAP's half-pixel convention while scaling). Returns image [h, w, 3] uint8, depth [h, w], intrinsic [3, 3].
    """
    height, width = depth.shape
    if image.shape[:2] != depth.shape:
        # The reference resizes the colour image to the depth map's size first (7-Scenes and NRGBD: both 640x480).
        image = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    k = np.asarray(intrinsic, dtype=np.float64).copy()
    cx, cy = np.round(k[:2, 2]).astype(int)
    margin_x, margin_y = min(cx, width - cx), min(cy, height - cy)
    if margin_x <= width / 5 or margin_y <= height / 5:
        raise InputError(
            f"principal point ({k[0, 2]:.1f}, {k[1, 2]:.1f}) too far off the centre of a {width}x{height} view"
        )
    left, top = cx - margin_x, cy - margin_y
    image, depth = image[top : cy + margin_y, left : cx + margin_x], depth[top : cy + margin_y, left : cx + margin_x]
    k[0, 2] -= left
    k[1, 2] -= top

    height, width = depth.shape
    target_w, target_h = resolution if height <= 1.1 * width else resolution[::-1]
    scale = max(target_w / width, target_h / height) + 1e-8
    out_w, out_h = int(np.floor(width * scale)), int(np.floor(height * scale))
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC
    image = np.asarray(Image.fromarray(image).resize((out_w, out_h), resample))
    rows = np.minimum((np.arange(out_h) * (height / out_h)).astype(int), height - 1)
    cols = np.minimum((np.arange(out_w) * (width / out_w)).astype(int), width - 1)
    depth = depth[rows[:, None], cols[None, :]]
    # Scale about the pixel corner (COLMAP convention), centred on the fractional size lost to flooring.
    k[:2, 2] += 0.5
    k[:2, :] *= scale
    k[0, 2] -= 0.5 * (width * scale - out_w)
    k[1, 2] -= 0.5 * (height * scale - out_h)
    k[:2, 2] -= 0.5

    left, top = round(0.5 * (out_w - target_w)), round(0.5 * (out_h - target_h))
    k[0, 2] -= left
    k[1, 2] -= top
    return (
        np.ascontiguousarray(image[top : top + target_h, left : left + target_w]),
        np.ascontiguousarray(depth[top : top + target_h, left : left + target_w]),
        k,
    )


def align_scale_shift(gt: np.ndarray, pred: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference criterion's normalisation of point maps [S, H, W, 3] on the ``valid`` [S, H, W] pixels.

    Each cloud's z is shifted by its median z; the prediction is then scaled by gt_scale / pred_scale, where a
    cloud's scale is the median distance of its points to their per-axis median. The ground truth's valid pixels
    select the statistics of both (non-finite predictions are ignored).
    """
    gt, pred = gt.copy(), pred.copy()
    pred_valid = valid & np.isfinite(pred).all(axis=-1)
    if not pred_valid.any():
        raise InputError("the prediction has no finite point where the ground truth is valid")
    gt[..., 2] -= np.median(gt[valid][:, 2])
    pred[..., 2] -= np.median(pred[pred_valid][:, 2])
    gt_scale = _median_spread(gt[valid])
    pred_scale = np.clip(_median_spread(pred[pred_valid]), *SCALE_CLIP)
    return gt, pred * (gt_scale / pred_scale)


def _median_spread(points: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(points - np.median(points, axis=0), axis=-1)))


def centre_crop(height: int, width: int, size: int = CROP) -> tuple[slice, slice]:
    """Row and column slices of the ``size`` x ``size`` window around pixel (W // 2, H // 2)."""
    if height < size or width < size:
        raise InputError(f"views of {width}x{height} pixels are smaller than the {size}x{size} evaluation crop")
    top, left = height // 2 - size // 2, width // 2 - size // 2
    return slice(top, top + size), slice(left, left + size)


def _plot(pred: np.ndarray, gt: np.ndarray, row: dict[str, float], path: Path, title: str) -> None:
    """Both clouds seen from above (x against z of the first camera), subsampled."""
    rng = np.random.default_rng(0)
    fig, ax = pyplot().subplots(figsize=(6, 6))
    for cloud, colour, label in ((gt, "0.5", "ground truth"), (pred, "tab:red", "prediction (aligned)")):
        shown = cloud[rng.choice(len(cloud), min(len(cloud), PLOTTED_POINTS), replace=False)]
        ax.scatter(shown[:, 0], shown[:, 2], s=0.3, c=colour, label=label, alpha=0.5, linewidths=0)
    ax.set(xlabel="x (m)", ylabel="z (m)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"{title}\nacc {row['acc']:.3f} m, comp {row['comp']:.3f} m, nc {row['nc']:.3f}", fontsize=9)
    ax.legend(fontsize=8, markerscale=20)
    save_figure(fig, path)
