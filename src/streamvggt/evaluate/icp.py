"""Point-cloud registration and normals for the reconstruction protocol: point-to-point ICP and PCA normals.

The reference calls Open3D (``registration_icp`` with ``TransformationEstimationPointToPoint`` and the default
``ICPConvergenceCriteria``; ``estimate_normals`` with its default 30-nearest-neighbour search). Open3D is a large
binary dependency for two small algorithms, so both are written here on scipy's KD-tree and the Kabsch solution of
:func:`streamvggt.geometry.umeyama`, mirroring Open3D's iteration, correspondence and stopping rules so the numbers
agree with the reference's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from streamvggt.extras import require
from streamvggt.geometry import umeyama

log = logging.getLogger(__name__)

# Open3D's ICPConvergenceCriteria defaults.
MAX_ITERATIONS = 30
RELATIVE_FITNESS = 1e-6
RELATIVE_RMSE = 1e-6
# Open3D's estimate_normals() default search: KDTreeSearchParamKNN(knn=30).
NORMAL_NEIGHBOURS = 30
_CHUNK = 65536  # points per batch of neighbour covariances (bounds memory to ~50 MB)

cKDTree = require("scipy.spatial", "eval").cKDTree  # noqa: N816 (scipy's class name)


@dataclass(frozen=True)
class IcpResult:
    """transformation [4, 4] maps the source onto the target; fitness is the fraction of source points with a
    target neighbour within the threshold, inlier_rmse the RMS distance of those pairs (as Open3D reports)."""

    transformation: np.ndarray
    fitness: float
    inlier_rmse: float
    iterations: int


def _transform(points: np.ndarray, transformation: np.ndarray) -> np.ndarray:
    return points @ transformation[:3, :3].T + transformation[:3, 3]


def icp_point_to_point(
    source: np.ndarray,
    target: np.ndarray,
    threshold: float,
    init: np.ndarray | None = None,
    max_iterations: int = MAX_ITERATIONS,
) -> IcpResult:
    """Rigid ICP of ``source`` [N, 3] onto ``target`` [M, 3]: Open3D's point-to-point ``registration_icp``.

    Each round pairs every (transformed) source point with its nearest target point, keeps pairs closer than
    ``threshold`` (metres), and solves the best rotation and translation of those pairs (Kabsch, no scale). It stops
    after ``max_iterations`` or when fitness and inlier RMSE both change by less than 1e-6.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    for name, cloud in (("source", source), ("target", target)):
        if cloud.ndim != 2 or cloud.shape[1] != 3 or len(cloud) == 0:
            raise ValueError(f"ICP {name} must be a non-empty [N, 3] cloud, got shape {cloud.shape}")
    transformation = np.eye(4) if init is None else np.asarray(init, dtype=np.float64).copy()
    tree = cKDTree(target)

    def match(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        distance, index = tree.query(points, distance_upper_bound=threshold)
        inliers = np.isfinite(distance)  # beyond the bound the query returns inf
        fitness = float(inliers.mean())
        rmse = float(np.sqrt(np.mean(distance[inliers] ** 2))) if inliers.any() else 0.0
        return inliers, index, fitness, rmse

    moved = _transform(source, transformation)
    inliers, index, fitness, rmse = match(moved)
    iterations = 0
    for _ in range(max_iterations):
        if inliers.sum() < 3:
            log.warning("ICP: fewer than 3 pairs within %.3g m; keeping the current alignment", threshold)
            break
        _, rot, trans = umeyama(
            torch.from_numpy(moved[inliers]), torch.from_numpy(target[index[inliers]]), with_scale=False
        )
        update = np.eye(4)
        update[:3, :3], update[:3, 3] = rot.numpy(), trans.numpy()
        transformation = update @ transformation
        iterations += 1
        moved = _transform(moved, update)
        previous = (fitness, rmse)
        inliers, index, fitness, rmse = match(moved)
        if abs(previous[0] - fitness) < RELATIVE_FITNESS and abs(previous[1] - rmse) < RELATIVE_RMSE:
            break
    return IcpResult(transformation=transformation, fitness=fitness, inlier_rmse=rmse, iterations=iterations)


def estimate_normals(points: np.ndarray, neighbours: int = NORMAL_NEIGHBOURS) -> np.ndarray:
    """Unit normals [N, 3] of a cloud [N, 3]: the least-variance direction of each point's ``neighbours`` nearest
    points (itself included), as Open3D's ``estimate_normals()`` computes them. The sign is arbitrary, which the
    normal-consistency metric ignores (it takes |n . n'|)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) < 3:
        raise ValueError(f"normals need a [N, 3] cloud of at least 3 points, got shape {points.shape}")
    k = min(neighbours, len(points))
    tree = cKDTree(points)
    normals = np.empty_like(points)
    for start in range(0, len(points), _CHUNK):
        chunk = points[start : start + _CHUNK]
        _, index = tree.query(chunk, k=k)
        local = points[index]  # [n, k, 3]
        centred = local - local.mean(axis=1, keepdims=True)
        covariance = np.einsum("nki,nkj->nij", centred, centred) / k
        _, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues
        normals[start : start + len(chunk)] = vectors[:, :, 0]
    return normals
