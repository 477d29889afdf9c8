"""Writing a reconstruction into an output folder as frames arrive.

Per frame: depth and confidence files and the processed image, optionally the point map (complete files only:
each is written under a temporary name, then renamed). At the end (:meth:`ReconstructionWriter.finish`):
``points.ply``, ``scene.glb``, ``cameras.json``, ``trajectory.tum`` and the trainer exports (``colmap/``,
``transforms.json``, see :mod:`streamvggt.io.outputs.interchange`). If anything fails, temporary files are removed and
folders this writer created are removed again when empty.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamvggt.io.atomic import atomic_output, temporary_name
from streamvggt.io.errors import OutputError
from streamvggt.io.outputs.cameras import CameraRecord, write_cameras_json, write_tum
from streamvggt.io.outputs.depth import DEPTH_DIR, depth_names, write_depth
from streamvggt.io.outputs.depth16 import MAX_VALUE
from streamvggt.io.outputs.frames import (
    IMAGE_DIR,
    POINTMAP_DIR,
    image_name,
    pointmap_names,
    write_image,
    write_pointmap,
)
from streamvggt.io.outputs.glb import write_glb
from streamvggt.io.outputs.interchange import (
    COLMAP_DIR,
    TRANSFORMS_DEPTH_DIR,
    ExportOptions,
    SourceFrame,
    TrainerExports,
)
from streamvggt.io.outputs.ply import write_ply
from streamvggt.io.outputs.points import (
    REPLACE_CHUNK,
    PointSpool,
    VoxelGrid,
    confident_points,
    replaced_chunks,
    subsample,
)
from streamvggt.io.outputs.previous_outputs import FRAME_DIRS, remove_previous_outputs
from streamvggt.io.outputs.rgbd import RGBD_DIR
from streamvggt.io.run_state import StateError, fsync_files

if TYPE_CHECKING:
    from streamvggt.results import FrameResult

log = logging.getLogger(__name__)

POINT_SOURCES = ("depth", "pointmap")
# Points in scene.glb (a uniform sample when points.ply has more): the format holds everything in memory, and
# viewers slow down well before this. The COLMAP model has its own limit (ExportOptions.colmap_points).
SCENE_POINTS = 1_000_000


@dataclass(frozen=True)
class WriterState:
    """A writer's state after some frames (:meth:`ReconstructionWriter.export_state`): JSON-able ``meta`` and
    numpy ``arrays`` (plain dtypes), to save with :class:`streamvggt.io.run_state.RunStateStore`."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class FrameCorrections:
    """New cameras for a run's frames (a long-video map's read-back, :mod:`streamvggt.mapping`), applied by
    :meth:`ReconstructionWriter.finish` to every output.

    indices [N] int: the frames' stream indices (``FrameResult.index``); extrinsics [N, 3, 4]: corrected
    camera-from-world; scales [N]: the factor each frame's depth is multiplied by; transforms [N, 3, 4]: the
    world-to-world similarity [sR | t] that moves each frame's world points, as the stream gave them, to their
    corrected place. loops: JSON-ready contents of ``loops.json`` (None: no such file).
    """

    indices: np.ndarray
    extrinsics: np.ndarray
    scales: np.ndarray
    transforms: np.ndarray
    loops: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        n = len(self.indices)
        shapes = (self.extrinsics.shape, self.scales.shape, self.transforms.shape)
        if shapes != ((n, 3, 4), (n,), (n, 3, 4)):
            raise ValueError(f"corrections of {n} frames need [N, 3, 4], [N], [N, 3, 4] arrays, got {shapes}")

    def rows(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """The row [len] of each frame index (ValueError naming the first frame without a correction)."""
        lookup = {int(index): row for row, index in enumerate(self.indices)}
        missing = next((int(i) for i in indices if int(i) not in lookup), None)
        if missing is not None:
            raise ValueError(f"frame {missing} has no correction")
        return np.array([lookup[int(i)] for i in indices], dtype=np.int64)


@dataclass(frozen=True)
class WrittenOutputs:
    files: list[Path]  # every file written, per-frame files (depth, images, point maps) included
    points: int  # points in points.ply
    scene_points: int  # points in scene.glb
    colmap_points: int = 0  # points in the COLMAP model (ExportOptions.colmap_points of points.ply)


def check_writer_options(points: str, conf_threshold: float, voxel_size: float | None) -> None:
    """ValueError with one line for a point source, confidence percentile or voxel size the writer cannot use."""
    if points not in POINT_SOURCES:
        raise ValueError(f"unknown point source '{points}': use {' or '.join(POINT_SOURCES)}")
    if not 0 <= conf_threshold < 100:
        raise ValueError(f"the confidence threshold is a percentile in [0, 100), got {conf_threshold}")
    if voxel_size is not None and not voxel_size > 0:
        raise ValueError(f"voxel size must be positive, got {voxel_size}")


class ReconstructionWriter:
    """Writes frames' outputs into ``output_dir`` (created; must be writable, else OutputError at once).

    points: "depth" (depth unprojected with the predicted camera) or "pointmap" (the point head).
    conf_threshold: percentile in [0, 100) of each frame's confidence below which its pixels are dropped.
    voxel_size: merge points into voxels of this size (world units); None keeps every point.
    depth_png: also write a colour image of each depth map.
    pointmaps: also write each frame's point-head output (``pointmap/``), for viewing that source again later.
    exports: the trainer exports (COLMAP format and images, transforms.json depth, RGB-D), see
    :class:`streamvggt.io.outputs.interchange.ExportOptions`.
    spool_path: a stable file for the point spool (resumable runs: :meth:`export_state` / :meth:`restore_state`);
    default a hidden temporary file in the output folder, deleted when the writer closes.
    correctable: the run's cameras will be corrected at :meth:`finish` (loop closure): points are spooled even with
    ``voxel_size`` and merged into voxels only at the end, from their corrected places (a voxel mixes frames, so
    its points could not be moved afterwards); memory stays bounded by the voxels, the spool takes disk space.
    """

    def __init__(
        self,
        output_dir: str | Path,
        points: str = "depth",
        conf_threshold: float = 50.0,
        voxel_size: float | None = None,
        depth_png: bool = False,
        scene_points: int = SCENE_POINTS,
        pointmaps: bool = False,
        exports: ExportOptions | None = None,
        spool_path: Path | None = None,
        correctable: bool = False,
    ) -> None:
        check_writer_options(points, conf_threshold, voxel_size)
        self.output_dir = Path(output_dir)
        self.points = points
        self.conf_threshold = conf_threshold
        self.depth_png = depth_png
        self.scene_points = scene_points
        self.pointmaps = pointmaps
        self._created = _prepare_folder(self.output_dir)
        self.voxel_size = voxel_size
        self.correctable = correctable
        self._accumulator: VoxelGrid | PointSpool = (
            VoxelGrid(voxel_size)
            if voxel_size is not None and not correctable
            else PointSpool(self.output_dir, path=spool_path)
        )
        self._replaced: PointSpool | None = None  # the corrected copy of the spool, made by finish
        self._synced = 0  # per-frame files already made durable by export_state
        self.cameras: list[CameraRecord] = []
        self._frame_files: dict[int, dict[str, str]] = {}
        self._frame_outputs: list[Path] = []
        self.exports = TrainerExports(
            output_dir=self.output_dir,
            options=exports or ExportOptions(),
            depth_dir=self.output_dir / DEPTH_DIR,
            depth_files=depth_names,
            conf_percentile=conf_threshold,
            make_folder=self._folder,
        )

    def __enter__(self) -> ReconstructionWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort()
        self._close_accumulator()

    def add(self, frame: FrameResult, source: SourceFrame | None = None) -> None:
        """Write ``frame``'s depth files and image (and point map), and keep its camera and confident points.

        source: the frame as decoded, needed when the exports use the original frames (``exports.needs_source``).
        """
        if not self.cameras:
            # An earlier run's outputs go at the first frame, once the input and model have loaded: a run that
            # fails later leaves this run's files alone, never a mix with the earlier run's frames.
            with _as_output_error(self.output_dir):
                remove_previous_outputs(self.output_dir)
        with _as_output_error(self.output_dir / DEPTH_DIR):
            written = write_depth(
                self._folder(DEPTH_DIR), frame.index, frame.depth, frame.depth_conf, frame.valid, self.depth_png
            )
        with _as_output_error(self.output_dir / IMAGE_DIR):
            written.append(write_image(self._folder(IMAGE_DIR), frame.index, frame.image))
        files = {
            key: f"{DEPTH_DIR}/{name}"
            for key, name in zip(("depth", "depth_conf", "depth_png"), depth_names(frame.index), strict=True)
            if self.depth_png or key != "depth_png"
        }
        files["image"] = f"{IMAGE_DIR}/{image_name(frame.index)}"
        if self.pointmaps:
            with _as_output_error(self.output_dir / POINTMAP_DIR):
                folder = self._folder(POINTMAP_DIR)
                written += write_pointmap(folder, frame.index, frame.world_points, frame.world_points_conf)
            names = pointmap_names(frame.index)
            files.update(pointmap=f"{POINTMAP_DIR}/{names[0]}", pointmap_conf=f"{POINTMAP_DIR}/{names[1]}")
        with _as_output_error(self.output_dir):
            written += self.exports.add(frame, source)
        self._frame_outputs += written
        self._frame_files[frame.index] = files
        self.cameras.append(
            CameraRecord(
                index=frame.index,
                name=frame.name,
                source_index=frame.source_index,
                timestamp=frame.timestamp,
                extrinsic=frame.extrinsic,
                intrinsic=frame.intrinsic,
                image_size=frame.image_size,
            )
        )
        xyz, conf = frame.points(self.points)
        records = confident_points(xyz, conf, frame.image, frame.valid, frame.index, self.conf_threshold)
        with _as_output_error(self.output_dir):
            self._accumulator.add(records)

    def read_image(self, index: int) -> np.ndarray:
        """The processed image [H, W, 3] uint8 of frame ``index``, read back from images/ (a long-video map's image
        source: it keeps no copy of its keyframes)."""
        from PIL import Image

        with Image.open(self.output_dir / IMAGE_DIR / image_name(index)) as image:
            return np.asarray(image.convert("RGB"))

    def export_state(self) -> WriterState:
        """Everything needed to go on after the frames added so far, with their files made durable (fsynced): a
        run state saved with it never names a file that a power cut could lose. Cheap with a bounded accumulator:
        the spool stays where it is (only its record count and checksum are saved)."""
        out = self.output_dir
        with _as_output_error(out):
            fsync_files(self._frame_outputs[self._synced :], (out,))  # out: the frame folders' entries
        self._synced = len(self._frame_outputs)
        exports_meta, exports_arrays = self.exports.state()
        arrays: dict[str, np.ndarray] = {f"exports.{k}": v for k, v in exports_arrays.items()}
        if self.cameras:
            arrays["cameras.extrinsic"] = np.stack([c.extrinsic for c in self.cameras])
            arrays["cameras.intrinsic"] = np.stack([c.intrinsic for c in self.cameras])
        meta: dict[str, Any] = {
            "options": self._options(),
            "cameras": [
                {
                    "index": c.index,
                    "name": c.name,
                    "source_index": c.source_index,
                    "timestamp": c.timestamp,
                    "image_size": list(c.image_size),
                }
                for c in self.cameras
            ],
            "frame_files": {str(index): files for index, files in self._frame_files.items()},
            "frame_outputs": [p.relative_to(out).as_posix() for p in self._frame_outputs],
            "exports": exports_meta,
        }
        if isinstance(self._accumulator, PointSpool):
            with _as_output_error(self._accumulator.path):
                meta["spool"] = self._accumulator.state()
        else:
            arrays.update({f"voxels.{k}": v for k, v in self._accumulator.state_arrays().items()})
        return WriterState(meta, arrays)

    def restore_state(self, state: WriterState) -> None:
        """Continue from ``state`` (of a writer with the same options and output folder), before any :meth:`add`:
        frames added next give the outputs of a run never interrupted. Raises StateError (one line) when the state
        does not fit this writer or its files are gone."""
        meta, arrays = state.meta, state.arrays
        if self.cameras:
            raise ValueError("restore_state must come before the first frame is added")
        saved = meta.get("options")
        if saved != self._options():
            raise StateError(f"the saved writer state has other output options ({saved}, now {self._options()})")
        out = self.output_dir
        outputs = [out / name for name in meta["frame_outputs"]]
        missing = next((p for p in outputs if not p.is_file()), None)
        if missing is not None:
            raise StateError(f"{missing} of a saved frame is missing: run again without --resume to start over")
        extrinsics = arrays.get("cameras.extrinsic", np.empty((0, 3, 4)))
        intrinsics = arrays.get("cameras.intrinsic", np.empty((0, 3, 3)))
        if not len(extrinsics) == len(intrinsics) == len(meta["cameras"]):
            raise StateError("the saved writer state is inconsistent: camera counts differ")
        self.cameras = [
            CameraRecord(
                index=int(c["index"]),
                name=str(c["name"]),
                source_index=int(c["source_index"]),
                timestamp=None if c["timestamp"] is None else float(c["timestamp"]),
                extrinsic=np.array(extrinsic),
                intrinsic=np.array(intrinsic),
                image_size=(int(c["image_size"][0]), int(c["image_size"][1])),
            )
            for c, extrinsic, intrinsic in zip(meta["cameras"], extrinsics, intrinsics, strict=True)
        ]
        _remove_stale_temporaries(out)
        self._frame_files = {int(index): dict(files) for index, files in meta["frame_files"].items()}
        self._frame_outputs = outputs
        self._synced = len(outputs)
        prefix = "exports."
        self.exports.restore(meta["exports"], {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
        if isinstance(self._accumulator, PointSpool):
            try:
                self._accumulator.restore(meta["spool"])
            except ValueError as error:
                raise StateError(f"{error}: run again without --resume to start over") from None
        else:
            prefix = "voxels."
            self._accumulator.load_state_arrays(
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            )

    def _options(self) -> dict[str, Any]:
        """The options that shape what a saved state holds (a restore checks them)."""
        options = {
            "points": self.points,
            "conf_threshold": self.conf_threshold,
            "voxel_size": self.voxel_size,
            "depth_png": self.depth_png,
            "scene_points": self.scene_points,
            "pointmaps": self.pointmaps,
            "exports": json.loads(json.dumps(dataclasses.asdict(self.exports.options))),
        }
        if self.correctable:  # only then: states saved before this option existed still match
            options["correctable"] = True
        return options

    def finish(
        self,
        metadata: dict[str, Any] | None = None,
        corrections: FrameCorrections | None = None,
        progress: bool = False,
    ) -> WrittenOutputs:
        """Write the whole-sequence outputs; ``metadata`` goes into cameras.json. Needs at least one frame.

        corrections: new cameras for every frame (loop closure): the per-frame files already written are rewritten
        first (depth scaled, point maps moved; one frame at a time, each atomically), the spooled points re-placed
        (chunked over the spool's memory map), then every whole-sequence output is written with the corrected
        cameras, and ``loops.json`` when the corrections carry loops.
        progress: a progress bar (tqdm, on stderr) over the writing, shown once it takes more than a second.
        """
        from tqdm.auto import tqdm

        if not self.cameras:
            raise ValueError("no frame was added: nothing to write")
        out = self.output_dir
        files = []
        if corrections is not None:
            files += self._apply_corrections(corrections)
        records = self._point_records(corrections)
        scene = subsample(records, self.scene_points)
        extrinsics = np.stack([c.extrinsic for c in self.cameras])
        intrinsics = np.stack([c.intrinsic for c in self.cameras])
        image_size = self.cameras[0].image_size
        extra = {"points": {"source": self.points, "conf_threshold_percentile": self.conf_threshold}}
        extra.update(metadata or {})
        steps = 4 + self.exports.finish_steps(len(self.cameras), len(records))
        with tqdm(
            total=steps, desc="writing outputs", unit="step", disable=not progress, delay=1.0, dynamic_ncols=True
        ) as bar:
            with _as_output_error(out / "points.ply"), atomic_output(out / "points.ply") as tmp:
                write_ply(tmp, records["xyz"], records["rgb"])
            files.append(out / "points.ply")
            bar.update()
            with _as_output_error(out / "scene.glb"), atomic_output(out / "scene.glb") as tmp:
                write_glb(tmp, scene["xyz"], scene["rgb"], extrinsics, intrinsics, image_size)
            files.append(out / "scene.glb")
            bar.update()
            with _as_output_error(out):
                source = str(extra.get("source", ""))
                files += self.exports.finish(self.cameras, records, "points.ply", source, advance=bar.update)
            with _as_output_error(out / "cameras.json"), atomic_output(out / "cameras.json") as tmp:
                write_cameras_json(tmp, self.cameras, extra, self._frame_files)
            files.append(out / "cameras.json")
            bar.update()
            with _as_output_error(out / "trajectory.tum"), atomic_output(out / "trajectory.tum") as tmp:
                write_tum(tmp, self.cameras)
            files.append(out / "trajectory.tum")
            bar.update()
        count = len(records)
        colmap = self.exports.colmap_sample(count)
        del records  # drop the memory map before the spool file is deleted
        self._close_accumulator()
        return WrittenOutputs(files + self._frame_outputs, count, len(scene), colmap)

    def _apply_corrections(self, corrections: FrameCorrections) -> list[Path]:
        """Rewrite the per-frame files with the corrections and take the corrected cameras; returns loops.json
        when written. One frame at a time: memory stays that of one frame."""
        rows = corrections.rows([c.index for c in self.cameras])
        out = self.output_dir
        for camera, row in zip(self.cameras, rows, strict=True):
            scale, transform = float(corrections.scales[row]), corrections.transforms[row].astype(np.float64)
            files = self._frame_files[camera.index]
            with _as_output_error(out / DEPTH_DIR):
                if scale != 1.0:
                    _rescale_npy(out / files["depth"], scale)
                    for folder in (TRANSFORMS_DEPTH_DIR, f"{RGBD_DIR}/depth"):
                        path = out / folder / image_name(camera.index)
                        if path.is_file():
                            _rescale_depth16(path, scale)
                # The colour depth PNG stays: it maps inverse depth between its own percentiles, so a scale
                # leaves it unchanged.
            if "pointmap" in files and not np.array_equal(transform, _IDENTITY):
                with _as_output_error(out / POINTMAP_DIR):
                    _transform_npy(out / files["pointmap"], transform)
        self.cameras = [
            dataclasses.replace(camera, extrinsic=np.asarray(corrections.extrinsics[row], dtype=np.float64))
            for camera, row in zip(self.cameras, rows, strict=True)
        ]
        if corrections.loops is None:
            return []
        path = out / "loops.json"
        with _as_output_error(path), atomic_output(path) as tmp:
            tmp.write_text(json.dumps(corrections.loops, indent=1) + "\n", encoding="utf-8")
        return [path]

    def _point_records(self, corrections: FrameCorrections | None) -> np.ndarray:
        """Every point record for points.ply: the accumulator's, or with ``corrections`` the spool re-placed
        chunk by chunk into a second spool (the first stays intact for a resumable run) or into the voxel grid."""
        if not isinstance(self._accumulator, PointSpool) or not self.correctable:
            return self._accumulator.records()
        spooled = self._accumulator.records()
        if corrections is None:
            chunks: Iterator[np.ndarray] = (
                np.array(spooled[i : i + REPLACE_CHUNK]) for i in range(0, len(spooled), REPLACE_CHUNK)
            )
        else:
            frames = np.array([c.index for c in self.cameras], dtype=np.int64)
            row_of_frame = np.full(int(frames.max()) + 1, -1, dtype=np.int64)
            row_of_frame[frames] = corrections.rows(frames)
            transforms = corrections.transforms.astype(np.float64)
            chunks = replaced_chunks(spooled, row_of_frame, transforms[:, :, :3], transforms[:, :, 3])
        with _as_output_error(self.output_dir):
            if self.voxel_size is not None:
                grid = VoxelGrid(self.voxel_size)
                for chunk in chunks:
                    grid.add(chunk)
                return grid.records()
            self._replaced = PointSpool(self.output_dir)
            for chunk in chunks:
                self._replaced.add(chunk)
            return self._replaced.records()

    def abort(self) -> None:
        """Remove temporary files, and the folders this writer created if they are empty."""
        self._close_accumulator()
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty: never removes a file

    def _folder(self, name: str) -> Path:
        """The per-frame folder ``name`` inside the output folder, created (and checked) on first use."""
        folder = self.output_dir / name
        if not folder.is_dir():
            self._created += _prepare_folder(folder)
        return folder

    def _close_accumulator(self) -> None:
        if isinstance(self._accumulator, PointSpool):
            self._accumulator.close()
        if self._replaced is not None:
            self._replaced.close()


_IDENTITY = np.concatenate((np.eye(3), np.zeros((3, 1))), axis=1)


def _rescale_npy(path: Path, scale: float) -> None:
    """Multiply the float32 array in ``path`` by ``scale``, atomically."""
    array = np.load(path)
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, (array.astype(np.float64) * scale).astype(np.float32))


def _transform_npy(path: Path, transform: np.ndarray) -> None:
    """Move the world points [H, W, 3] in ``path`` by the similarity ``transform`` [3, 4] ([sR | t]), atomically."""
    points = np.load(path).astype(np.float64)
    moved = points @ transform[:, :3].T + transform[:, 3]
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        np.save(f, moved.astype(np.float32))


def _rescale_depth16(path: Path, scale: float) -> None:
    """Multiply the depth in a 16-bit depth PNG by ``scale`` (0 stays "no depth"; beyond the range becomes 0), read
    back from the PNG: its valid pixels and units are those it was written with (within one step of rounding)."""
    from PIL import Image

    values = np.asarray(Image.open(path)).astype(np.float64)
    scaled = np.rint(values * scale)
    beyond = scaled > MAX_VALUE
    if beyond.any():
        log.warning("%s: %d pixels beyond the 16-bit range once scaled: written as 0", path.name, int(beyond.sum()))
    with atomic_output(path) as tmp:
        Image.fromarray(np.where(beyond, 0, scaled).astype(np.uint16)).save(tmp, format="PNG")


_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{12}\.tmp")  # io.atomic.temporary_name's names


def _remove_stale_temporaries(output_dir: Path) -> None:
    """Remove the temporary files a killed run left half-written in the output folder and its frame folders
    (a resumed run writes those files again)."""
    folders = [output_dir, *(output_dir / name for name in (*FRAME_DIRS, COLMAP_DIR))]
    for folder in folders:
        if not folder.is_dir() or folder.is_symlink():
            continue
        for entry in folder.iterdir():
            if _TEMPORARY.fullmatch(entry.name) and entry.is_file():
                with contextlib.suppress(OSError):
                    entry.unlink()
                    log.debug("removed %s, left by an interrupted run", entry)


def _prepare_folder(path: Path) -> list[Path]:
    """Create ``path`` and check that files can be created in it; return the folders that had to be created."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"cannot write to {path}: it is a file, not a folder")
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = temporary_name(path / "probe")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        for folder in missing:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise OutputError(f"cannot write to output folder {path}: {error.strerror or error}") from None
    return list(reversed(missing))  # outermost first


@contextlib.contextmanager
def _as_output_error(path: Path) -> Iterator[None]:
    """Turn an OS error while writing ``path`` into a one-line OutputError."""
    try:
        yield
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
