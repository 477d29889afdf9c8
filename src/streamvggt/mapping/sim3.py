"""Similarity transforms (s, R, t): x -> s R x + t, and a robust confidence-weighted Sim(3) fit.

Numpy float64 throughout: the map holds thousands of small transforms and fits a few thousand points at a time,
where torch's per-call overhead dominates the closed form itself (:func:`umeyama_np` is many times faster than
:func:`streamvggt.geometry.umeyama` on a few hundred points, checked equal to it in tests/test_mapping_sim3.py;
benchmarks/README.md has the timing), and IRLS calls it up to 20 times per side of a loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sim3:
    """x -> scale * rotation @ x + translation. rotation [3, 3], translation [3], scale > 0 (unitless)."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    @staticmethod
    def identity() -> Sim3:
        return Sim3(1.0, np.eye(3), np.zeros(3))

    @staticmethod
    def from_extrinsic(extrinsic: np.ndarray) -> Sim3:
        """World-from-camera (scale 1) of a camera-from-world extrinsic [3, 4]."""
        rot = np.asarray(extrinsic[:3, :3], dtype=np.float64)
        return Sim3(1.0, rot.T, -rot.T @ np.asarray(extrinsic[:3, 3], dtype=np.float64))

    @staticmethod
    def from_matrix(matrix: np.ndarray) -> Sim3:
        """From a 4x4 (or 3x4) matrix [sR | t]."""
        linear = np.asarray(matrix[:3, :3], dtype=np.float64)
        scale = float(np.cbrt(np.linalg.det(linear)))
        return Sim3(scale, linear / scale, np.asarray(matrix[:3, 3], dtype=np.float64).copy())

    def matrix(self) -> np.ndarray:
        """[4, 4] with [sR | t] on top."""
        out = np.eye(4)
        out[:3, :3] = self.scale * self.rotation
        out[:3, 3] = self.translation
        return out

    def extrinsic(self) -> np.ndarray:
        """The rigid camera-from-world [3, 4] of a world-from-camera similarity (its scale goes into the depth)."""
        rot_t = self.rotation.T
        return np.concatenate((rot_t, (-rot_t @ self.translation)[:, None]), axis=1)

    def inverse(self) -> Sim3:
        rot_t = self.rotation.T
        return Sim3(1.0 / self.scale, rot_t, -(rot_t @ self.translation) / self.scale)

    def __matmul__(self, other: Sim3) -> Sim3:
        """Composition: (self @ other)(x) = self(other(x))."""
        return Sim3(
            self.scale * other.scale,
            self.rotation @ other.rotation,
            self.scale * self.rotation @ other.translation + self.translation,
        )

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform points [..., 3] (dtype kept)."""
        out = self.scale * (points @ self.rotation.T.astype(points.dtype)) + self.translation.astype(points.dtype)
        return out.astype(points.dtype, copy=False)

    def rotation_angle(self) -> float:
        """The rotation's angle in radians."""
        return rotation_angle(self.rotation)


def umeyama_np(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> Sim3:
    """The similarity minimising sum w_i |dst_i - (s R src_i + t)|^2 for points [N, 3] and weights [N] (Umeyama,
    1991): :func:`streamvggt.geometry.umeyama` in numpy (see the module docstring for why both exist)."""
    w = weights / weights.sum()
    mu_src, mu_dst = w @ src, w @ dst
    src_c, dst_c = src - mu_src, dst - mu_dst
    cov = (dst_c * w[:, None]).T @ src_c
    u, sigma, vh = np.linalg.svd(cov)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vh) < 0:  # reflection guard: flip the weakest axis
        sign[-1] = -1.0
    rot = (u * sign) @ vh
    variance = float(w @ (src_c * src_c).sum(-1))
    scale = float((sigma * sign).sum() / variance) if variance > 0 else 1.0
    return Sim3(scale, rot, mu_dst - scale * rot @ mu_src)


def rotation_angle(rotation: np.ndarray) -> float:
    """Angle (radians) of a rotation matrix [3, 3]."""
    return float(math.acos(max(-1.0, min(1.0, (float(np.trace(rotation)) - 1.0) / 2.0))))


@dataclass(frozen=True)
class SimFit:
    """A robust Sim(3) fit: the transform, the inlier mask [N], the inlier fraction (of the weight-positive points)
    and the inliers' weighted RMS residual relative to the target points' distance to the target origin (unitless)."""

    transform: Sim3
    inliers: np.ndarray
    inlier_fraction: float
    residual: float


def fit_sim3(
    src: np.ndarray,
    dst: np.ndarray,
    weights: np.ndarray | None = None,
    iterations: int = 20,
    inlier_threshold: float = 0.05,
    dst_origin: np.ndarray | None = None,
) -> SimFit:
    """The Sim(3) mapping src [N, 3] onto dst [N, 3]: confidence-weighted Umeyama, then IRLS with a Cauchy kernel.

    Residuals are measured relative to each target point's distance from ``dst_origin`` (the camera centre the
    target was seen from; default the origin), so a 5 cm error means the same at 1 m as 5 cm per metre at 20 m does:
    depth errors of a monocular model grow with depth. ``inlier_threshold`` is that relative distance; the kernel's
    width follows it. IRLS is written here because it is ten lines over Umeyama; scipy's robust least squares
    would replace the closed form by an iterative solve, slower and less exact on noise-free data.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    base = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or base.shape != (len(src),):
        shapes = f"{src.shape}, {dst.shape}, {base.shape}"
        raise ValueError(f"fit_sim3 needs [N, 3] point sets and [N] weights, got {shapes}")
    usable = (base > 0) & np.isfinite(src).all(1) & np.isfinite(dst).all(1)
    if usable.sum() < 3:
        raise ValueError(f"fit_sim3 needs at least 3 finite points with positive weight, got {int(usable.sum())}")
    origin = np.zeros(3) if dst_origin is None else np.asarray(dst_origin, dtype=np.float64)
    reach = np.maximum(np.linalg.norm(dst - origin, axis=1), 1e-9)
    src_u, dst_u = src[usable], dst[usable]
    base_u, reach_u = base[usable], reach[usable]
    weight = base_u.copy()
    transform = Sim3.identity()
    for _ in range(max(1, iterations)):
        transform = umeyama_np(src_u, dst_u, weight)
        relative = np.linalg.norm(transform.apply(src_u) - dst_u, axis=1) / reach_u
        # Cauchy weights: a bounded influence for gross outliers without discarding near-threshold points outright.
        # The width starts at the median residual (the first fit is pulled by the outliers) and narrows to the
        # threshold: graduated robustness, which keeps IRLS out of the outliers' basin.
        width = max(inlier_threshold, 2.0 * float(np.median(relative)))
        new_weight = base_u / (1.0 + (relative / width) ** 2)
        if np.allclose(new_weight, weight, rtol=1e-10, atol=0):
            break
        weight = new_weight
    relative = np.linalg.norm(transform.apply(src) - dst, axis=1) / reach
    inliers = usable & (relative < inlier_threshold)
    fraction = float(base[inliers].sum() / base[usable].sum())
    residual = math.inf
    if inliers.any():
        residual = float(np.sqrt(np.average(relative[inliers] ** 2, weights=base[inliers])))
    return SimFit(transform, inliers, fraction, residual)
