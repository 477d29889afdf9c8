"""The outputs the next tool reads as is: the COLMAP model (``colmap/``, linked as ``sparse/0``), nerfstudio's
``transforms.json`` and, on request, 16-bit depth PNGs for it and a TUM RGB-D sequence (``rgbd/``).

:class:`TrainerExports` works beside :class:`~streamvggt.io.outputs.writer.ReconstructionWriter`: per frame it
writes what needs the frame in memory (source frames, depth PNGs), at the end the models that need every camera.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamvggt.extras import require
from streamvggt.io.atomic import atomic_output
from streamvggt.io.outputs.cameras import CameraRecord
from streamvggt.io.outputs.colmap import FORMATS, link_sparse_model, write_colmap
from streamvggt.io.outputs.colmap_tracks import DEPTH_TOLERANCE, MAX_TRACK_LENGTH, multiview_tracks
from streamvggt.io.outputs.depth16 import write_depth16
from streamvggt.io.outputs.frames import image_name
from streamvggt.io.outputs.image_views import (
    IMAGE_CHOICES,
    ORIGINAL_DIR,
    ImageView,
    original_view,
    processed_view,
    write_original,
)
from streamvggt.io.outputs.points import MIN_CONFIDENCE, subsample
from streamvggt.io.outputs.rgbd import RGBD_DIR, write_rgbd_frame, write_rgbd_lists
from streamvggt.io.outputs.transforms_json import DEPTH_UNIT_SCALE, write_transforms

if TYPE_CHECKING:
    from streamvggt.results import FrameResult

COLMAP_DIR = "colmap"
TRANSFORMS_DEPTH_DIR = "depth_png16"
# Points in the COLMAP model by default (a uniform sample of points.ply): about 60 MB of text model with full tracks
# however long the run (benchmarks/README.md has the bytes per point); sparse COLMAP models of a few hundred images
# hold this order of points, and 3DGS / splatfacto start from them well. ExportOptions(colmap_points=None) keeps all.
COLMAP_POINTS = 200_000
POINT_CHUNK = 100_000  # points3D.txt rows formatted at a time (one progress step each)


@dataclass(frozen=True)
class ExportOptions:
    """What the trainer exports hold (the CLI options of the same names).

    colmap_format: "text" or "bin". colmap_images: "processed" (the frames the model saw) or "original" (the source
    frames at full resolution, written to images_original/). shared_camera: one COLMAP camera with the mean
    intrinsics. transforms_depth: depth PNGs for transforms.json. rgbd: the TUM RGB-D sequence; depth_scale: metres
    per model unit there. track_tolerance and max_track_length: see :mod:`streamvggt.io.outputs.colmap_tracks`.
    colmap_points: points in the COLMAP model, a uniform sample of points.ply (``COLMAP_POINTS``, which keeps a
    300-frame run's model near 60 MB); None: every point (``--voxel-size`` merges them first; several GB for long
    runs at full resolution).
    """

    colmap_format: str = "text"
    colmap_images: str = "processed"
    shared_camera: bool = False
    transforms_depth: bool = False
    rgbd: bool = False
    depth_scale: float = 1.0
    track_tolerance: float = DEPTH_TOLERANCE
    max_track_length: int = MAX_TRACK_LENGTH
    colmap_points: int | None = COLMAP_POINTS

    def __post_init__(self) -> None:
        if self.colmap_format not in FORMATS:
            raise ValueError(f"unknown --colmap-format '{self.colmap_format}': use {' or '.join(FORMATS)}")
        if self.colmap_format == "bin":
            require("pycolmap", "eval", purpose="--colmap-format bin")  # now, not after the whole stream
        if self.colmap_images not in IMAGE_CHOICES:
            raise ValueError(f"unknown --colmap-images '{self.colmap_images}': use {' or '.join(IMAGE_CHOICES)}")
        if not (np.isfinite(self.depth_scale) and self.depth_scale > 0):
            raise ValueError(f"--depth-scale must be positive (metres per model unit), got {self.depth_scale}")
        if not self.track_tolerance > 0:
            raise ValueError(f"the track depth tolerance must be positive, got {self.track_tolerance}")
        if self.max_track_length < 1:
            raise ValueError(f"the track length limit must be at least 1, got {self.max_track_length}")
        if self.colmap_points is not None and (isinstance(self.colmap_points, bool) or self.colmap_points < 1):
            raise ValueError(f"the COLMAP point limit must be at least 1 (None: every point), got {self.colmap_points}")


@dataclass(frozen=True)
class SourceFrame:
    """A frame as decoded, before preprocessing, and where its resized copy lies in the processed frame."""

    image: np.ndarray  # [H, W, 3] uint8
    resized_box: tuple[int, int, int, int]  # top, left, height, width (Preprocessor.resized_box)


@dataclass(frozen=True)
class _DepthTrust:
    """Which of a frame's depths the tracks may trust: its confidence floor and content box (top, left, h, w)."""

    floor: float
    box: tuple[int, int, int, int]


class TrainerExports:
    """Writes the trainer exports of one reconstruction into ``output_dir``.

    depth_dir: where the writer keeps each frame's depth and confidence .npy (read back for the tracks).
    conf_percentile: the writer's per-frame confidence percentile; depths below it never extend a track.
    make_folder: creates a folder of the output folder by relative name and returns it (the writer's, which removes
    the folders it made when a run fails).
    """

    def __init__(
        self,
        output_dir: Path,
        options: ExportOptions,
        depth_dir: Path,
        depth_files: Callable[[int], tuple[str, str, str]],
        conf_percentile: float,
        make_folder: Callable[[str], Path] | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.options = options
        self.depth_dir = depth_dir
        self.depth_files = depth_files
        self.conf_percentile = conf_percentile
        self._make_folder = make_folder or self._plain_folder
        self.views: list[ImageView] = []
        self._trust: list[_DepthTrust] = []
        self._depth_pngs: list[str] = []
        self._indices: list[int] = []  # frame index of each added frame, which names its files

    @property
    def needs_source(self) -> bool:
        """Whether :meth:`add` needs each frame as decoded (``--colmap-images original``)."""
        return self.options.colmap_images == "original"

    def add(self, frame: FrameResult, source: SourceFrame | None = None) -> list[Path]:
        """Write frame ``frame``'s per-frame exports; returns the files written."""
        if self.needs_source and source is None:
            raise ValueError("--colmap-images original needs each frame as decoded (source)")
        written = []
        valid = frame.valid
        rows, columns = np.nonzero(valid.any(axis=1))[0], np.nonzero(valid.any(axis=0))[0]
        box = (int(rows[0]), int(columns[0]), len(rows), len(columns)) if len(rows) else (0, 0, 0, 0)
        floor = _confidence_floor(frame.depth, frame.depth_conf, valid, self.conf_percentile)
        self._trust.append(_DepthTrust(floor, box))
        if source is None:
            view = processed_view(frame.index, frame.image_size)
        else:
            view = original_view(frame.index, source.image.shape[:2], source.resized_box)
            written.append(write_original(self._make_folder(ORIGINAL_DIR), frame.index, source.image))
        self.views.append(view)
        self._indices.append(frame.index)
        if self.options.transforms_depth:
            folder = self._make_folder(TRANSFORMS_DEPTH_DIR)
            depth, depth_valid = frame.depth, valid
            if source is not None:
                depth, depth_valid = _on_resized_frame(depth, valid, source.resized_box)
            written.append(write_depth16(folder / image_name(frame.index), depth, depth_valid, 1 / DEPTH_UNIT_SCALE))
            self._depth_pngs.append(f"{TRANSFORMS_DEPTH_DIR}/{image_name(frame.index)}")
        if self.options.rgbd:
            for sub in ("rgb", "depth"):
                self._make_folder(f"{RGBD_DIR}/{sub}")
            folder = self.output_dir / RGBD_DIR
            written += write_rgbd_frame(folder, frame.index, frame.image, frame.depth, valid, self.options.depth_scale)
        return written

    def colmap_sample(self, count: int) -> int:
        """Points the COLMAP model gets out of ``count`` collected points."""
        return count if self.options.colmap_points is None else min(count, self.options.colmap_points)

    def finish_steps(self, frames: int, points: int) -> int:
        """Progress steps :meth:`finish` reports for ``frames`` cameras and ``points`` collected points."""
        chunks = -(-self.colmap_sample(points) // POINT_CHUNK)
        return frames + chunks + 2 + (self.options.colmap_format == "bin")

    def finish(
        self,
        cameras: list[CameraRecord],
        records: np.ndarray,
        ply_file: str,
        source: str,
        advance: Callable[[int], object] | None = None,
    ) -> list[Path]:
        """Write the COLMAP model of ``cameras`` and point ``records`` (all collected points: the model gets a
        uniform sample of ``options.colmap_points``), transforms.json and the RGB-D lists.

        advance(n): called as the work goes, :meth:`finish_steps` in all (a progress bar's ``update``).
        """
        step = advance or (lambda n: None)
        limit = len(records) if self.options.colmap_points is None else self.options.colmap_points
        records = subsample(records, limit)
        observations = multiview_tracks(
            cameras,
            records,
            self._trusted_depth,
            self.options.track_tolerance,
            self.options.max_track_length,
            on_frame=lambda: step(1),
        )
        model_dir = self.output_dir / COLMAP_DIR
        written = write_colmap(
            model_dir,
            cameras,
            self.views,
            records,
            observations,
            self.options.shared_camera,
            self.options.colmap_format,
            chunk=POINT_CHUNK,
            advance=step,
        )
        link_sparse_model(self.output_dir, model_dir)
        transforms = self.output_dir / "transforms.json"
        with atomic_output(transforms) as tmp:
            depth_pngs = self._depth_pngs if self.options.transforms_depth else None
            write_transforms(tmp, cameras, self.views, ply_file, depth_pngs)
        written.append(transforms)
        if self.options.rgbd:
            written += write_rgbd_lists(self.output_dir / RGBD_DIR, cameras, self.options.depth_scale, source)
        step(1)
        return written

    def _plain_folder(self, name: str) -> Path:
        folder = self.output_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _trusted_depth(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame i's depth [H, W] and the mask of its depths a track may use, read back from the writer's files."""
        depth_name, conf_name, _ = self.depth_files(self._indices[i])
        depth = np.load(self.depth_dir / depth_name)
        conf = np.load(self.depth_dir / conf_name)
        trust = self._trust[i]
        top, left, height, width = trust.box
        mask = np.zeros(depth.shape, dtype=bool)
        mask[top : top + height, left : left + width] = True
        return depth, mask & _reliable(depth, conf) & (conf >= trust.floor)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """What was kept of the frames so far, for a saved run state: JSON-able metadata and arrays."""
        meta = {
            "views": [[v.path, list(v.size), list(v.scale), list(v.origin)] for v in self.views],
            "depth_pngs": list(self._depth_pngs),
            "indices": list(self._indices),
        }
        arrays = {
            "trust_floor": np.array([t.floor for t in self._trust], dtype=np.float64),
            "trust_box": np.array([t.box for t in self._trust], dtype=np.int64).reshape(-1, 4),
        }
        return meta, arrays

    def restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Take the frames kept in a saved state (see :meth:`state`), as if they had been added here."""
        self.views = [
            ImageView(
                path=path,
                size=(int(size[0]), int(size[1])),
                scale=(float(scale[0]), float(scale[1])),
                origin=(float(o[0]), float(o[1])),
            )
            for path, size, scale, o in meta["views"]
        ]
        self._depth_pngs = [str(name) for name in meta["depth_pngs"]]
        self._indices = [int(index) for index in meta["indices"]]
        floors, boxes = arrays["trust_floor"], arrays["trust_box"]
        self._trust = [
            _DepthTrust(float(floor), (int(b[0]), int(b[1]), int(b[2]), int(b[3])))
            for floor, b in zip(floors, boxes, strict=True)
        ]
        if not len(self.views) == len(self._indices) == len(self._trust):
            raise ValueError("the saved trainer-export state is inconsistent (frame counts differ)")


def _reliable(depth: np.ndarray, conf: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0) & np.isfinite(conf) & (conf > MIN_CONFIDENCE)


def _confidence_floor(depth: np.ndarray, conf: np.ndarray, valid: np.ndarray, percentile: float) -> float:
    """The frame's confidence at ``percentile`` over its usable pixels, as the point cloud's threshold."""
    usable = valid & _reliable(depth, conf)
    return float(np.percentile(conf[usable], percentile)) if usable.any() and percentile > 0 else -np.inf


def _on_resized_frame(
    depth: np.ndarray, valid: np.ndarray, resized_box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Depth [H, W] of the processed frame moved onto the whole resized frame [h, w] (``resized_box``), so it covers
    the source frame as a plain scale does: rows and columns cropped away have no depth, padding is dropped."""
    top, left, height, width = resized_box
    canvas = np.zeros((height, width), dtype=np.float32)
    canvas_valid = np.zeros((height, width), dtype=bool)
    rows = slice(max(top, 0), min(top + height, depth.shape[0]))  # the processed rows that hold the resized frame
    columns = slice(max(left, 0), min(left + width, depth.shape[1]))
    target = (slice(rows.start - top, rows.stop - top), slice(columns.start - left, columns.stop - left))
    canvas[target] = depth[rows, columns]
    canvas_valid[target] = valid[rows, columns]
    return canvas, canvas_valid
