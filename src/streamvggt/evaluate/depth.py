"""The depth protocols of SPEC §5.1 (mono depth) and §5.2 (video depth) on Sintel, Bonn, KITTI and NYU-v2.

Mono depth streams every image as its own one-frame sequence and aligns each frame on its own (median ratio by
default); video depth streams each sequence through one session and fits one alignment per sequence (one L1
scale by default). Predictions are resized to the ground truth's resolution (bicubic), scored where the ground
truth is valid (never where the prediction happens to be), and averaged over frames or sequences weighted by
their valid pixel counts, as the reference does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamvggt.evaluate.datasets import DepthDataset, DepthSequence, open_depth_dataset
from streamvggt.evaluate.metrics import DEPTH_ALIGNMENTS, DEPTH_FITS, depth_validity, evaluate_depth
from streamvggt.evaluate.plotting import pyplot, save_figure
from streamvggt.evaluate.report import write_results
from streamvggt.evaluate.runner import eval_preprocessor, resize_to, stream_sequence
from streamvggt.io.errors import InputError
from streamvggt.io.inputs.preprocess import DEFAULT_SIZE
from streamvggt.model.streamvggt import StreamVGGT

log = logging.getLogger(__name__)

DEPTH_PROTOCOLS = ("monodepth", "video-depth")
DEFAULT_ALIGN = {"monodepth": "median", "video-depth": "scale"}
# The reference's Adam loop by default, so that scale&shift numbers compare with the published tables.
DEFAULT_FIT = "reference"
PLOTTED_FRAMES = 3  # frames per sequence in the error-map figures
_ERROR_STYLE = {"cmap": "magma", "vmin": 0, "vmax": 0.5}  # Abs Rel maps saturate at 50 % error


def run_depth(
    protocol: str,
    dataset: str,
    root: Path,
    model: StreamVGGT,
    outdir: Path,
    cache: str = "full",
    align: str | None = None,
    max_frames: int | None = None,
    size: int = DEFAULT_SIZE,
    fit: str | None = None,
    meta: dict[str, Any] | None = None,
    progress: bool = False,
    plots: bool = True,
) -> dict[str, float]:
    """Run ``protocol`` ("monodepth" or "video-depth") on ``dataset`` at ``root``; returns the averaged metrics.

    Writes ``{protocol}-{dataset}.json`` / ``.md`` (per-sequence and averaged metrics) and
    ``plots/{protocol}-{dataset}/<sequence>.png`` (input, ground truth, aligned prediction, Abs Rel error) into
    ``outdir``. align: one of DEPTH_ALIGNMENTS (default: median for mono depth, scale for video depth). fit: the
    ``scale&shift`` solver, one of DEPTH_FITS (default: reference); giving it with another alignment is an error.
    max_frames: use only the first N frames of each sequence. meta: extra settings for the report (checkpoint).
    plots: write the error-map figures (matplotlib: about a second per sequence).
    """
    data = check_depth(protocol, dataset, root, align, max_frames, fit)
    align, fit = align or DEFAULT_ALIGN[protocol], fit or DEFAULT_FIT
    sequences = [DepthSequence(s.name, s.frames[:max_frames]) for s in data.sequences()]
    name = f"{protocol}-{dataset}"
    evaluate = _video_sequence if protocol == "video-depth" else _mono_sequence
    per_sequence: dict[str, dict[str, float]] = {}
    with _progress_bar(sum(len(s.frames) for s in sequences), progress) as bar:
        for sequence in sequences:
            row, figure = evaluate(data, sequence, model, cache, align, fit, size, bar)
            if row is None:
                log.warning("%s %s: no frame has valid ground truth, left out", dataset, sequence.name)
                continue
            per_sequence[sequence.name] = row
            if plots:
                _plot(figure, outdir / "plots" / name / f"{sequence.name}.png", f"{dataset} {sequence.name} ({align})")
            log.info("%s %s: abs_rel %.4f over %d frames", name, sequence.name, row["abs_rel"], row["frames"])
    if not per_sequence:
        raise InputError(f"{dataset} at {data.root}: no frame with valid ground-truth depth")
    summary = pixel_weighted_mean(list(per_sequence.values()))
    settings = {
        "protocol": protocol,
        "dataset": dataset,
        "root": str(data.root),
        "cache": cache,
        "image_size": size,
        "align": align,
        "fit": fit if align == "scale&shift" else None,
        "max_depth": data.max_depth,
        "post_clip_max": data.post_clip_max,
        "max_frames": max_frames,
        **(meta or {}),
    }
    write_results(outdir, name, per_sequence, summary, settings, precision=model.execution)
    return summary


def check_depth(
    protocol: str,
    dataset: str,
    root: Path,
    align: str | None = None,
    max_frames: int | None = None,
    fit: str | None = None,
) -> DepthDataset:
    """Reject bad settings before any model work (ValueError; InputError for a folder without the dataset's
    layout) and return the opened dataset."""
    if protocol not in DEPTH_PROTOCOLS:
        raise ValueError(f"unknown depth protocol '{protocol}': choose one of {', '.join(DEPTH_PROTOCOLS)}")
    if align is not None and align not in DEPTH_ALIGNMENTS:
        raise ValueError(f"unknown depth alignment '{align}': choose one of {', '.join(DEPTH_ALIGNMENTS)}")
    if fit is not None and fit not in DEPTH_FITS:
        raise ValueError(f"unknown scale&shift fit '{fit}': choose one of {', '.join(DEPTH_FITS)}")
    if fit is not None and (align or DEFAULT_ALIGN.get(protocol)) != "scale&shift":
        raise ValueError(f"--fit applies to --align scale&shift only, not {align or DEFAULT_ALIGN.get(protocol)}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be at least 1, got {max_frames}")
    data = open_depth_dataset(dataset, root)
    if protocol == "video-depth" and data.single_images:
        raise ValueError(f"{dataset} holds single images, not videos: use the monodepth protocol")
    return data


def pixel_weighted_mean(rows: list[dict[str, float]]) -> dict[str, float]:
    """Metrics averaged with each row weighted by its ``valid_pixels`` (the reference's dataset mean); counts
    (``valid_pixels``, ``frames``) are summed."""
    weights = np.array([row["valid_pixels"] for row in rows], dtype=np.float64)
    out: dict[str, float] = {}
    for key in rows[0]:
        values = np.array([row[key] for row in rows], dtype=np.float64)
        summed = key in ("valid_pixels", "frames")
        out[key] = int(values.sum()) if summed else float(np.average(values, weights=weights))
    return out


# ------------------------------------------------------------------------------------------------- per sequence

# (image, gt, the prediction as scored: aligned and post-clipped, the scored pixels) per plotted frame
_Figure = list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def _mono_sequence(
    data: DepthDataset,
    sequence: DepthSequence,
    model: StreamVGGT,
    cache: str,
    align: str,
    fit: str,
    size: int,
    bar: Any,
) -> tuple[dict[str, float] | None, _Figure]:
    """Each frame streamed alone and aligned alone; the row is the pixel-weighted mean of the frames."""
    plotted = set(_plotted_indices(len(sequence.frames)))
    rows, figure = [], []
    for index, frame in enumerate(sequence.frames):
        image, gt = data.read_image(frame.image), data.read_depth(frame.depth)
        result = stream_sequence(model, [(frame.name, image)], cache, eval_preprocessor(size))[0]
        bar.update()
        pred = resize_to(result.depth, gt.shape)[None]
        if not depth_validity(torch.from_numpy(gt), data.max_depth).any():
            log.warning("%s %s: no valid ground truth, frame left out", sequence.name, frame.name)
            continue
        scored = evaluate_depth(pred, gt[None], align, data.max_depth, data.post_clip_max, fit=fit)
        rows.append({**scored.metrics, "frames": 1})
        if index in plotted:
            figure.append((image, gt, scored.aligned[0], scored.valid[0]))
    return (pixel_weighted_mean(rows) if rows else None), figure


def _video_sequence(
    data: DepthDataset,
    sequence: DepthSequence,
    model: StreamVGGT,
    cache: str,
    align: str,
    fit: str,
    size: int,
    bar: Any,
) -> tuple[dict[str, float] | None, _Figure]:
    """The whole sequence through one session, one alignment for all its frames."""
    images: dict[int, np.ndarray] = {}
    plotted = _plotted_indices(len(sequence.frames))

    def frames() -> Iterator[tuple[str, np.ndarray]]:
        for index, frame in enumerate(sequence.frames):
            image = data.read_image(frame.image)
            if index in plotted:
                images[index] = image
            yield frame.name, image
            bar.update()

    results = stream_sequence(model, frames(), cache, eval_preprocessor(size))
    gt = _stack([data.read_depth(frame.depth) for frame in sequence.frames], sequence)
    pred = np.stack([resize_to(result.depth, gt.shape[1:]) for result in results])
    if not depth_validity(torch.from_numpy(gt), data.max_depth).any():
        return None, []
    scored = evaluate_depth(pred, gt, align, data.max_depth, data.post_clip_max, fit=fit)
    row = {**scored.metrics, "frames": len(results)}
    return row, [(images[i], gt[i], scored.aligned[i], scored.valid[i]) for i in plotted]


def _stack(depths: list[np.ndarray], sequence: DepthSequence) -> np.ndarray:
    shapes = {depth.shape for depth in depths}
    if len(shapes) > 1:
        raise InputError(f"sequence {sequence.name}: ground-truth depth maps differ in size ({sorted(shapes)})")
    return np.stack(depths)


def _plotted_indices(count: int) -> list[int]:
    return sorted(set(np.linspace(0, count - 1, min(PLOTTED_FRAMES, count)).round().astype(int).tolist()))


# ----------------------------------------------------------------------------------------------------- outputs


def _progress_bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="frame", dynamic_ncols=True, disable=not enabled)


def _plot(rows: _Figure, path: Path, title: str) -> None:
    """One row per frame: input image, ground truth, aligned prediction (same colour scale), Abs Rel error."""
    if not rows:
        return
    fig, axes = pyplot().subplots(len(rows), 4, figsize=(14, 2.6 * len(rows)), squeeze=False)
    for ax_row, (image, gt, pred, valid) in zip(axes, rows, strict=True):
        shown_gt = np.where(valid, gt, np.nan)
        vmax = float(np.nanpercentile(shown_gt, 98)) if valid.any() else 1.0
        error = np.where(valid, np.abs(pred - gt) / np.where(valid, gt, 1.0), np.nan)
        panels = (
            (image, "input", {}),
            (shown_gt, "ground truth", {"cmap": "turbo", "vmin": 0, "vmax": vmax}),
            (pred, "prediction (aligned)", {"cmap": "turbo", "vmin": 0, "vmax": vmax}),
            (error, f"Abs Rel (mean {np.nanmean(error) if valid.any() else np.nan:.3f})", _ERROR_STYLE),
        )
        for ax, (panel, label, style) in zip(ax_row, panels, strict=True):
            shown = ax.imshow(panel, **style)
            ax.set_title(label, fontsize=8)
            ax.axis("off")
            if style:
                fig.colorbar(shown, ax=ax, fraction=0.035)
    fig.suptitle(title, fontsize=10)
    # Fixed margins: tight_layout takes longer than drawing the figure.
    fig.subplots_adjust(left=0.01, right=0.97, bottom=0.02, top=0.9, wspace=0.15, hspace=0.25)
    save_figure(fig, path, tight=False)
