"""Checking a dataset folder before a long run: read a sample of clips and test that their geometry agrees.

A clip is consistent when view 0's depth, moved into each other view with the clip's extrinsics and
intrinsics, lands on that view's own depth (:func:`reproject`). A wrong depth unit, pose convention or
intrinsics update breaks this; so does a scene that moves (dynamic datasets score lower, but their static
background still agrees), and so do labels that are merely weak: a model's predicted depth and cameras
(``data import --from reconstruct``) or sparse COLMAP depth agree less than converted ground truth. The check
reports counts, per-clip depth statistics and consistency scores, draws a contact sheet of one clip and lists the
problems found; a lower ``min_consistency`` accepts weaker labels knowingly (the report records it).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from streamvggt.extras import require
from streamvggt.geometry import depth_to_camera_points
from streamvggt.io.atomic import atomic_output
from streamvggt.train.data.base import MultiViewDataset
from streamvggt.train.data.mix import build_reader
from streamvggt.train.data.sampling import item_rng

logger = logging.getLogger(__name__)

REPORT_NAME = "report.json"
SHEET_NAME = "contact_sheet.png"
DEFAULT_MIN_CONSISTENCY = 0.5  # converted ground truth agrees far better; pseudo-labels may not reach it
IMPORT_RECORD = "import.json"  # written by ``streamvggt data import`` into each scene it makes


@dataclass
class Reprojection:
    """View 0's valid pixels moved into another view of a clip.

    agree: fraction of the points landing inside that view whose depth agrees with the depth there
    impossible: fraction of them lying in front of every depth around where they land (they would hide it)
    coverage: fraction of view 0's valid pixels landing inside that view
    error: [H, W] relative depth disagreement at view 0's pixels (0 where it agrees, NaN where not compared)
    """

    agree: float
    impossible: float
    coverage: float
    error: torch.Tensor


def reproject(
    clip: dict, view: int, tolerance: float = 0.03, depth_scale: float = 1.0, stride: int = 1
) -> Reprojection:
    """Move view 0's depth into view ``view`` of a clip (the dict a reader's ``clip`` returns).

    A point agrees when its depth lies within the range of view ``view``'s depths around the pixel it lands on
    (3 x 3, +- tolerance), which forgives rounding at edges and on grazing surfaces. Occluded points (behind
    that range) neither agree nor are impossible. Fractions are NaN when no point lands inside.
    ``depth_scale`` multiplies every depth first (the same as dividing the camera translations by it);
    ``stride`` > 1 moves only every stride-th valid pixel of view 0 (a quicker estimate).
    """
    depth = clip["depth"].float() * depth_scale
    intrinsics, extrinsics = clip["intrinsics"].float(), clip["extrinsics"].float()
    valid = clip["valid_mask"][0].clone()
    if stride > 1:
        kept = torch.nonzero(valid.flatten()).flatten()[::stride]
        valid = torch.zeros(valid.numel(), dtype=torch.bool).index_fill_(0, kept, True).view_as(valid)
    height, width = depth.shape[-2:]
    points = depth_to_camera_points(depth[0], intrinsics[0])[valid]  # world = camera 0
    cam = points @ extrinsics[view, :3, :3].T + extrinsics[view, :3, 3]
    z = cam[:, 2]
    safe_z = torch.where(z > 0, z, torch.ones_like(z))  # points behind the camera are dropped below
    u = (intrinsics[view, 0, 0] * cam[:, 0] / safe_z + intrinsics[view, 0, 2]).round()
    v = (intrinsics[view, 1, 1] * cam[:, 1] / safe_z + intrinsics[view, 1, 2]).round()
    inside = (z > 0) & (u >= 1) & (u < width - 1) & (v >= 1) & (v < height - 1)
    target = (v[inside] * width + u[inside]).long()
    z = z[inside]
    # The 3 x 3 range of view ``view``'s depth around every pixel (its unknown 0s included, as low ends).
    high = F.max_pool2d(depth[view][None, None], 3, stride=1, padding=1).flatten()[target]
    low = -F.max_pool2d(-depth[view][None, None], 3, stride=1, padding=1).flatten()[target]
    agree = (low <= z * (1 + tolerance)) & (high >= z * (1 - tolerance))
    impossible = low > z * (1 + tolerance)
    error = torch.full((height * width,), float("nan"))
    pixels = torch.nonzero(valid.flatten()).flatten()[inside]
    error[pixels] = torch.clamp(torch.maximum(low - z, z - high), min=0.0) / z
    return Reprojection(
        agree=float(agree.float().mean()),
        impossible=float(impossible.float().mean()),
        coverage=float(inside.float().mean()) if len(inside) else 0.0,
        error=error.reshape(height, width),
    )


def reprojection(clip: dict, view: int, tolerance: float = 0.03) -> tuple[float, float]:
    """(agreeing, impossible) fractions of view 0's points landing inside view ``view`` (see :func:`reproject`)."""
    result = reproject(clip, view, tolerance)
    return result.agree, result.impossible


# Depth factors tried against the stored one: a depth map in other units than the camera translations (mm
# read as m, ...) agrees better once multiplied by one of them.
UNIT_FACTORS = (1e-3, 1e-2, 1e-1, 10.0, 100.0, 1e3)
# Another factor is reported when it agrees better by this much and removes at least half the disagreement.
UNIT_MARGIN = 0.01
UNIT_SWEEP_POINTS = 4096  # about this many of view 0's pixels per factor


def mean_agreement(clip: dict, tolerance: float, depth_scale: float = 1.0, stride: int = 1) -> float | None:
    """Mean agreeing fraction over the views that view 0's depth lands in; None if it lands in none."""
    views = [reproject(clip, v, tolerance, depth_scale, stride) for v in range(1, clip["depth"].shape[0])]
    scores = [r.agree for r in views if r.coverage > 0]
    return float(np.mean(scores)) if scores else None


def best_depth_factor(clip: dict, tolerance: float) -> tuple[float, float | None, float | None]:
    """(factor, its agreement, agreement at 1) for the power of ten that makes the clip agree best.

    Small camera motion hides a depth unit error (points far away move little), so the stored depth can
    agree fairly well while depth x 0.001 agrees perfectly; the comparison exposes it.
    """
    stride = max(1, int(clip["valid_mask"][0].sum()) // UNIT_SWEEP_POINTS)
    base = mean_agreement(clip, tolerance, 1.0, stride)
    best, best_score = 1.0, base
    for factor in UNIT_FACTORS:
        score = mean_agreement(clip, tolerance, factor, stride)
        if score is not None and (best_score is None or score > best_score):
            best, best_score = factor, score
    return best, best_score, base


@dataclass
class ClipReport:
    """What one sampled clip holds: depth statistics over its valid pixels (the dataset's units) and, per view
    after the first, the agreeing fraction and coverage of view 0's reprojected depth."""

    index: int
    depth_min: float | None
    depth_median: float | None
    depth_max: float | None
    invalid_fraction: float  # pixels without depth (0 or non-finite)
    sky_fraction: float  # pixels marked sky (negative depth)
    consistency: list[float | None]
    coverage: list[float]
    score: float | None  # mean consistency over the views that overlap view 0
    best_depth_factor: float  # the power of ten of depth that agrees best (1: the stored units)
    best_factor_score: float | None  # its mean consistency (on a subsample of view 0's pixels)


@dataclass
class DatasetReport:
    """The outcome of checking one dataset; ``problems`` empty means it passed."""

    type: str
    root: str | None
    options: dict[str, Any]
    min_consistency: float = DEFAULT_MIN_CONSISTENCY  # the threshold the clips were held to
    tolerance: float = 0.03  # relative depth difference that still counts as agreeing
    label_sources: list[str] = field(default_factory=list)  # "reconstruct", "colmap": what import.json files say
    scenes: int | None = None
    frames: int | None = None
    clips: int | None = None
    sampled: list[ClipReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    contact_sheet: str | None = None

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def weaker_labels_accepted(self) -> bool:
        """Whether the clips were held to a lower consistency than the default (a knowing choice)."""
        return self.min_consistency < DEFAULT_MIN_CONSISTENCY

    def to_dict(self) -> dict:
        return {**asdict(self), "weaker_labels_accepted": self.weaker_labels_accepted, "passed": self.passed}


def count_scenes_and_frames(dataset: MultiViewDataset) -> tuple[int | None, int | None]:
    """Scenes and stored frames of readers that list sequences; (None, None) for those that do not."""
    sequences = getattr(dataset, "sequences", None)
    if not sequences:
        return None, None
    return len(sequences), sum(len(frames) for _, frames in sequences)


def summarise_clip(index: int, clip: dict, tolerance: float) -> tuple[ClipReport, list[Reprojection]]:
    depth = clip["depth"]
    valid = depth[clip["valid_mask"]]
    views = [reproject(clip, view, tolerance) for view in range(1, depth.shape[0])]
    overlapping = [r.agree for r in views if r.coverage > 0]
    factor, factor_score, base_score = best_depth_factor(clip, tolerance)
    if base_score is not None and (
        factor_score < base_score + UNIT_MARGIN or 1.0 - factor_score > 0.5 * (1.0 - base_score)
    ):
        factor, factor_score = 1.0, base_score  # not clearly better: keep the stored units
    report = ClipReport(
        index=index,
        depth_min=float(valid.min()) if valid.numel() else None,
        depth_median=float(valid.median()) if valid.numel() else None,
        depth_max=float(valid.max()) if valid.numel() else None,
        invalid_fraction=float((depth == 0).float().mean()),
        sky_fraction=float((depth < 0).float().mean()),
        consistency=[r.agree if r.coverage > 0 else None for r in views],
        coverage=[r.coverage for r in views],
        score=float(np.mean(overlapping)) if overlapping else None,
        best_depth_factor=factor,
        best_factor_score=factor_score,
    )
    return report, views


def clip_problems(
    report: ClipReport,
    clip: dict,
    min_consistency: float,
    tolerance: float = 0.03,
    label_sources: list[str] | tuple[str, ...] = (),
    lower_threshold: str = "--min-consistency {value}",
) -> list[str]:
    """The problems of one sampled clip, each one line. ``label_sources``: where the labels came from (see
    :func:`label_sources`); ``lower_threshold``: how the caller's user lowers the threshold (``{value}``: a value
    that this clip would pass)."""
    problems = []
    has_depth = clip["valid_mask"].flatten(1).any(1)
    for view in torch.nonzero(~has_depth).flatten().tolist():
        problems.append(f"clip {report.index}: view {view} has no valid depth")
    if not has_depth[0] or len(has_depth) == 1:
        return problems
    if report.best_depth_factor != 1.0:
        stored = "no overlap" if report.score is None else f"{report.score:.2f}"
        problems.append(
            f"clip {report.index}: depth agrees better multiplied by {report.best_depth_factor:g} "
            f"(consistency {report.best_factor_score:.2f} against {stored}): "
            "depth and camera translations in different units?"
        )
    if report.score is None:
        problems.append(f"clip {report.index}: view 0's depth lands in none of the other views (pose units?)")
    elif report.score < min_consistency:
        problems.append(
            f"clip {report.index}: reprojection consistency {report.score:.2f} < {min_consistency:g}: "
            + consistency_hint(report.score, tolerance, label_sources, lower_threshold)
        )
    return problems


def consistency_hint(
    score: float, tolerance: float, label_sources: list[str] | tuple[str, ...], lower_threshold: str
) -> str:
    """What a low consistency means and what to do, honest about labels that are merely weak."""
    meaning = (
        f"only {100 * score:.0f} % of view 0's depth, moved into the other views, lands within {100 * tolerance:g} % "
        "of their own depth"
    )
    accept = lower_threshold.format(value=f"{max(0.0, np.floor(score * 20) / 20):g}")
    if "reconstruct" in label_sources:
        return (
            f"{meaning}; these labels are a model's predictions (imported from reconstruct), whose depth and cameras "
            f"need not agree: not a conversion bug. Look at the contact sheet; to train on them anyway, accept weaker "
            f"labels knowingly with {accept}, or import a COLMAP dense reconstruction instead"
        )
    return (
        f"{meaning}. Converted ground truth agrees far better: check the depth units, the pose convention "
        "(camera-to-world, OpenCV axes) and the intrinsics (the contact sheet shows where views disagree); labels "
        f"known to be weaker (a model's predictions, sparse COLMAP depth) can be accepted knowingly with {accept}"
    )


def label_sources(root: str | Path | None) -> list[str]:
    """Where the labels under ``root`` came from, as ``import.json`` files of ``streamvggt data import`` say
    (``root`` itself or its scene folders): e.g. ["reconstruct"]; empty for datasets that were not imported."""
    if root is None or not Path(root).is_dir():
        return []
    found = set()
    for record in [Path(root) / IMPORT_RECORD, *sorted(Path(root).glob(f"*/{IMPORT_RECORD}"))]:
        try:
            source = json.loads(record.read_text(encoding="utf-8")).get("source")
        except (OSError, ValueError, AttributeError):
            continue  # absent or not ours: nothing to say about the labels
        if isinstance(source, str):
            found.add(source)
    return sorted(found)


def check_dataset(
    kind: str,
    arguments: dict[str, Any],
    clips: int = 8,
    size: tuple[int, int] = (518, 392),
    seed: int = 0,
    min_consistency: float = DEFAULT_MIN_CONSISTENCY,
    tolerance: float = 0.03,
    output: Path | None = None,
    lower_threshold: str = "--min-consistency {value}",
) -> DatasetReport:
    """Open dataset ``kind`` with reader ``arguments``, read ``clips`` clips (chosen by ``seed``) at ``size``
    (W, H) and report them. With ``output``, write ``report.json`` and a contact sheet of the first clip read (not
    when the dataset cannot be opened: nothing was read, and an earlier report stays).

    min_consistency: the lowest accepted mean reprojection consistency of a clip; below the default it accepts
    weaker labels knowingly (recorded in the report). lower_threshold: how the caller lowers it, for the hint.
    """
    root = arguments.get("root")
    report = DatasetReport(
        type=kind,
        root=None if root is None else str(root),
        options=_plain(arguments),
        min_consistency=min_consistency,
        tolerance=tolerance,
        label_sources=label_sources(root),
    )
    if report.weaker_labels_accepted:
        logger.info(
            "%s: accepting clips down to consistency %g (default %g)", kind, min_consistency, DEFAULT_MIN_CONSISTENCY
        )
    try:
        dataset = build_reader(kind, **arguments)
    except Exception as error:  # whatever a reader raises on a bad folder is the finding to report
        report.problems.append(f"cannot open the dataset: {error}")
        return report
    report.scenes, report.frames = count_scenes_and_frames(dataset)
    report.clips = len(dataset)
    order = item_rng(seed, 0xC4EC).permutation(len(dataset))[:clips]
    sheet = None
    for index in order.tolist():
        try:
            clip = dataset.clip(index, size, item_rng(seed, index))
        except Exception as error:  # an unreadable clip is a finding, whichever decoder failed
            report.problems.append(f"clip {index}: unreadable: {error}")
            continue
        summary, views = summarise_clip(index, clip, tolerance)
        report.sampled.append(summary)
        report.problems.extend(
            clip_problems(summary, clip, min_consistency, tolerance, report.label_sources, lower_threshold)
        )
        if sheet is None:
            sheet = (clip, summary, views)
    _write_outputs(report, sheet, output)
    return report


def _plain(arguments: dict[str, Any]) -> dict[str, Any]:
    """The reader arguments as JSON values (paths and tuples as text)."""
    return json.loads(json.dumps(arguments, default=str))


def _write_outputs(report: DatasetReport, sheet: tuple | None, output: Path | None) -> None:
    if output is None:
        return
    output.mkdir(parents=True, exist_ok=True)
    if sheet is not None:
        write_contact_sheet(output / SHEET_NAME, *sheet)
        report.contact_sheet = str(output / SHEET_NAME)
    with atomic_output(output / REPORT_NAME) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")


def write_contact_sheet(path: Path, clip: dict, summary: ClipReport, views: list[Reprojection]) -> None:
    """A PNG of one clip: images, depth (invalid pixels grey) and, per later view, where view 0's reprojected
    depth disagrees (relative error, 0-20 %, on view 0's pixels)."""
    require("matplotlib", "train", "the data check's contact sheet")
    from streamvggt.evaluate.plotting import pyplot, save_figure

    plt = pyplot()
    count = clip["images"].shape[0]
    fig, axes = plt.subplots(3, count, figsize=(2.2 * count, 5.6), squeeze=False)
    depth = clip["depth"].numpy()
    valid = depth[depth > 0]
    limits = (float(np.percentile(valid, 2)), float(np.percentile(valid, 98))) if valid.size else (0.0, 1.0)
    depth_map = plt.get_cmap("viridis").with_extremes(bad="0.6")
    error_map = plt.get_cmap("magma").with_extremes(bad="0.6")
    for s in range(count):
        axes[0, s].imshow(clip["images"][s].permute(1, 2, 0).numpy())
        axes[0, s].set_title(f"view {s}", fontsize=8)
        axes[1, s].imshow(np.ma.masked_where(depth[s] <= 0, depth[s]), cmap=depth_map, vmin=limits[0], vmax=limits[1])
        if s == 0:
            axes[2, s].text(0.5, 0.5, "reference", ha="center", va="center", fontsize=8)
        else:
            error = views[s - 1].error.numpy()
            axes[2, s].imshow(np.ma.masked_invalid(error), cmap=error_map, vmin=0.0, vmax=0.2)
            agree = summary.consistency[s - 1]
            axes[2, s].set_title("no overlap" if agree is None else f"agree {agree:.2f}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 0].set_ylabel(f"depth {limits[0]:.3g}-{limits[1]:.3g}", fontsize=8)
    axes[2, 0].set_ylabel("view 0 reprojected\nerror 0-20 %", fontsize=8)
    fig.suptitle(f"clip {summary.index}", fontsize=9)
    save_figure(fig, path)
