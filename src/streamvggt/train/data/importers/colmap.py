"""Importing a COLMAP reconstruction (images + sparse model, optionally dense depth maps) as a generic scene.

Conventions converted here:

- COLMAP poses are ``cam_from_world`` (world-to-camera); the layout stores camera-to-world.
- COLMAP puts the top-left pixel's centre at (0.5, 0.5), the layout at (0, 0): principal points move by -0.5.
- PINHOLE and SIMPLE_PINHOLE cameras map directly; cameras with distortion (SIMPLE_RADIAL, OPENCV, fisheye...)
  are undistorted with COLMAP's own undistorter (``pycolmap.undistort_image``), which also gives the new
  pinhole camera.
- Depth (z along the optical axis, in the model's units: COLMAP scale is arbitrary, so never metric) comes from
  the dense workspace's ``stereo/depth_maps/{name}.geometric.bin`` (or ``.photometric.bin``), from the sparse
  points each image observes projected into it (a sparse map: most pixels 0), or nowhere (all 0).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from streamvggt.extras import require
from streamvggt.io.errors import InputError
from streamvggt.io.inputs.sources import natural_key
from streamvggt.train.data.importers.scene_writer import COPIED_SUFFIXES, ImportedFrame, SceneWriter

logger = logging.getLogger(__name__)

DEPTH_SOURCES = ("auto", "dense", "sparse", "none")
PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE")
DENSE_KINDS = ("geometric", "photometric")  # COLMAP's fused-consistency maps first
PIXEL_OFFSET = 0.5  # COLMAP image coordinates = layout pixel coordinates + this


@dataclass(frozen=True)
class ColmapSource:
    """Where the parts of a COLMAP project are: the sparse model, the images, the dense depth maps."""

    model: Path
    images: Path
    depth_maps: Path


def locate(source: Path, images: Path | None = None, depth_maps: Path | None = None) -> ColmapSource:
    """The model folder (``source``, ``source/sparse`` or ``source/sparse/0``: the first holding cameras.bin or
    cameras.txt), the images (default ``source/images``) and the depth maps (default ``source/stereo/depth_maps``,
    where ``colmap image_undistorter`` + ``patch_match_stereo`` put them)."""
    if not source.is_dir():
        raise InputError(f"COLMAP folder not found: {source}")
    candidates = (source, source / "sparse", source / "sparse" / "0")
    model = next((c for c in candidates if any((c / f"cameras.{e}").is_file() for e in ("bin", "txt"))), None)
    if model is None:
        raise InputError(f"no COLMAP model (cameras.bin or cameras.txt) in {source}, its sparse/ or sparse/0/")
    images = images if images is not None else source / "images"
    if not images.is_dir():
        raise InputError(f"image folder not found: {images} (pass --images)")
    return ColmapSource(model, images, depth_maps if depth_maps is not None else source / "stereo" / "depth_maps")


def import_colmap(
    source: str | Path,
    output: str | Path,
    images: str | Path | None = None,
    depth: str = "auto",
    depth_maps: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the registered images of the COLMAP project ``source`` as the generic scene ``output``.

    depth: ``dense`` (the depth maps; each image needs one), ``sparse`` (the model's points), ``none`` (all 0),
    or ``auto`` (dense when the depth-map folder exists, else sparse). Frames are in natural order of their
    image names. Raises InputError / OutputError with a one-line message; returns the scene folder.
    """
    if depth not in DEPTH_SOURCES:
        raise InputError(f"--depth must be one of {', '.join(DEPTH_SOURCES)}, got '{depth}'")
    located = locate(Path(source), _path(images), _path(depth_maps))
    if depth == "auto":
        depth = "dense" if located.depth_maps.is_dir() else "sparse"
    pycolmap = require("pycolmap", "train", "importing COLMAP models")
    try:
        reconstruction = pycolmap.Reconstruction(located.model)
    except (RuntimeError, ValueError) as error:
        raise InputError(f"cannot read the COLMAP model in {located.model}: {error}") from None
    registered = sorted(
        (image for image in reconstruction.images.values() if image.has_pose), key=lambda i: natural_key(i.name)
    )
    skipped = reconstruction.num_images() - len(registered)
    if skipped:
        logger.info("skipping %d images without a pose", skipped)
    if not registered:
        raise InputError(f"the COLMAP model in {located.model} has no registered image")
    distorted = sorted({c.model_name for c in reconstruction.cameras.values()} - set(PINHOLE_MODELS))
    if distorted and depth == "dense":
        raise InputError(
            f"the model in {located.model} has distorted cameras ({', '.join(distorted)}) but dense depth maps "
            "belong to undistorted images: point the import at the dense workspace (colmap image_undistorter)"
        )
    if distorted:
        logger.info("undistorting images of %s cameras with COLMAP's undistorter", ", ".join(distorted))
    cameras = {cid: _pinhole(pycolmap, camera) for cid, camera in reconstruction.cameras.items()}
    with SceneWriter(Path(output), overwrite) as writer:
        for image in registered:
            writer.add(_frame(pycolmap, reconstruction, image, cameras[image.camera_id], located, depth))
        provenance: dict[str, Any] = {
            "source": "colmap",
            "path": str(Path(source).resolve()),
            "depth": depth,
            "units": "COLMAP model units (arbitrary scale)",
            "is_metric": False,
            "static": True,
        }
        return writer.commit(provenance)


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


@dataclass(frozen=True)
class _Camera:
    """A source camera and its pinhole replacement (the same camera unless it has distortion)."""

    source: Any  # pycolmap.Camera
    pinhole: Any  # pycolmap.Camera, PINHOLE or SIMPLE_PINHOLE

    @property
    def distorted(self) -> bool:
        return self.source is not self.pinhole

    @property
    def intrinsics(self) -> np.ndarray:
        """[3, 3] with pixel centres at integers."""
        matrix = np.array(self.pinhole.calibration_matrix(), dtype=np.float64)
        matrix[:2, 2] -= PIXEL_OFFSET
        return matrix


def _pinhole(pycolmap: Any, camera: Any) -> _Camera:
    if camera.model_name in PINHOLE_MODELS:
        return _Camera(camera, camera)
    return _Camera(camera, pycolmap.undistort_camera(pycolmap.UndistortCameraOptions(), camera))


def _frame(
    pycolmap: Any, reconstruction: Any, image: Any, camera: _Camera, located: ColmapSource, depth: str
) -> ImportedFrame:
    path = located.images / image.name
    try:
        with Image.open(path) as opened:
            size = (opened.width, opened.height)
    except OSError as error:
        raise InputError(f"cannot read image {path}: {error}") from None
    if size != (camera.source.width, camera.source.height):
        # `reconstruct --colmap-images original` writes the model for images_original/, beside images/.
        original = located.images.parent / "images_original"
        hint = f" (pass --images {original}?)" if (original / image.name).is_file() else ""
        raise InputError(
            f"{path} is {size[0]}x{size[1]} but its COLMAP camera is {camera.source.width}x{camera.source.height}{hint}"
        )
    pixels: np.ndarray | Path = path
    if camera.distorted:
        bitmap = pycolmap.Bitmap.from_array(_rgb(path))
        undistorted, _ = pycolmap.undistort_image(pycolmap.UndistortCameraOptions(), bitmap, camera.source)
        pixels = undistorted.to_array()
    elif path.suffix.lower() not in COPIED_SUFFIXES:
        pixels = _rgb(path)
    cam_from_world = np.eye(4)
    cam_from_world[:3] = image.cam_from_world().matrix()
    shape = (camera.pinhole.height, camera.pinhole.width)
    if depth == "dense":
        depth_map = _dense_depth(located.depth_maps, image.name, shape)
    elif depth == "sparse":
        depth_map = sparse_depth(reconstruction, image, cam_from_world, camera.intrinsics, shape)
    else:
        depth_map = np.zeros(shape, dtype=np.float32)
    return ImportedFrame(
        name=image.name,
        image=pixels,
        depth=depth_map,
        intrinsics=camera.intrinsics,
        cam_to_world=np.linalg.inv(cam_from_world),
    )


def _rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as opened:
            return np.ascontiguousarray(opened.convert("RGB"))
    except OSError as error:
        raise InputError(f"cannot read image {path}: {error}") from None


def _dense_depth(folder: Path, name: str, shape: tuple[int, int]) -> np.ndarray:
    """The image's dense depth map [H, W] (0 unknown), brought to the image size by nearest neighbour when
    patch-match ran on downscaled images (its max_image_size)."""
    paths = [folder / f"{name}.{kind}.bin" for kind in DENSE_KINDS]
    path = next((p for p in paths if p.is_file()), None)
    if path is None:
        raise InputError(f"depth map not found: {paths[0]} (nor {paths[1].name}); or pass --depth sparse")
    values = read_depth_map(path)
    if values.shape != shape:
        logger.info("%s: depth map %s resized to the image's %s", path.name, list(values.shape), list(shape))
        resized = Image.fromarray(values, mode="F").resize((shape[1], shape[0]), Image.Resampling.NEAREST)
        values = np.asarray(resized, dtype=np.float32)
    return np.where(np.isfinite(values) & (values > 0), values, 0.0).astype(np.float32)


def read_depth_map(path: Path) -> np.ndarray:
    """A COLMAP dense array file as [H, W] float32: the text header ``width&height&channels&``, then the
    little-endian float32 values, row by row.

    Read here rather than with ``pycolmap.DepthMap.read``, which does not check the header against the data:
    with pycolmap 4.2.1 a truncated file or a two-channel array reads as garbage without an error.
    """
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read depth map {path}: {error.strerror}") from None
    parts = raw.split(b"&", 3)
    try:
        width, height, channels = (int(p) for p in parts[:3])
    except ValueError:
        raise InputError(f"{path} is not a COLMAP depth map (no width&height&channels& header)") from None
    data = parts[3] if len(parts) == 4 else b""
    if channels != 1 or width < 1 or height < 1 or len(data) != 4 * width * height:
        raise InputError(
            f"depth map {path}: header says {width}x{height}x{channels}, expected one channel of "
            f"{width}x{height} float32 values ({len(data)} bytes follow)"
        )
    return np.frombuffer(data, dtype="<f4").reshape(height, width).astype(np.float32)


def sparse_depth(
    reconstruction: Any, image: Any, cam_from_world: np.ndarray, intrinsics: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """[H, W] depth of the 3D points ``image`` observes, each at the pixel it projects to (the nearest point
    where several land on one pixel), 0 elsewhere. Projection rather than the keypoint keeps depth consistent
    with the stored pose and intrinsics."""
    ids = [p.point3D_id for p in image.points2D if p.has_point3D()]
    if not ids:
        return np.zeros(shape, dtype=np.float32)
    xyz = np.stack([reconstruction.points3D[i].xyz for i in ids])
    camera = xyz @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
    z = camera[:, 2]
    front = z > 0
    pixels = camera[front] / z[front, None] @ intrinsics.T
    u, v, z = np.round(pixels[:, 0]).astype(int), np.round(pixels[:, 1]).astype(int), z[front]
    inside = (u >= 0) & (u < shape[1]) & (v >= 0) & (v < shape[0])
    nearest = np.full(shape, np.inf)
    np.minimum.at(nearest, (v[inside], u[inside]), z[inside])
    return np.where(np.isfinite(nearest), nearest, 0.0).astype(np.float32)
