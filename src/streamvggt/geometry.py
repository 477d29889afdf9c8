"""Camera geometry with the model's conventions.

- Extrinsic: 3x4 camera-from-world ``[R | t]`` (world to camera), OpenCV camera axes (x right, y down, z forward).
  The world frame is the first frame's camera.
- Intrinsic: 3x3 pinhole in pixels, principal point at the image centre ``(W/2, H/2)``; pixel ``(u, v)`` (column,
  row index) sits at coordinates ``(u, v)``.
- Pose encoding [..., 9]: extrinsic translation ``t`` (not the camera centre), rotation quaternion (x, y, z, w:
  scalar last), ``fov_h``, ``fov_w`` in radians (height first).

Every function takes any number of leading batch dimensions and works in the dtype of its input.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# The camera head's field of view goes through a ReLU and can be exactly 0 (an untrained or confused head): the
# focal length would be infinite. Decoding clamps it to this many radians, far below any real lens.
MIN_FOV = 1e-3


def quat_to_mat(quat: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] from quaternions [..., 4] (x, y, z, w); need not be unit length."""
    x, y, z, w = quat.unbind(-1)
    two_s = 2.0 / (quat * quat).sum(-1)
    rows = (
        1 - two_s * (y * y + z * z),
        two_s * (x * y - z * w),
        two_s * (x * z + y * w),
        two_s * (x * y + z * w),
        1 - two_s * (x * x + z * z),
        two_s * (y * z - x * w),
        two_s * (x * z - y * w),
        two_s * (y * z + x * w),
        1 - two_s * (x * x + y * y),
    )
    return torch.stack(rows, -1).reshape((*quat.shape[:-1], 3, 3))


def mat_to_quat(rot: Tensor) -> Tensor:
    """Unit quaternions [..., 4] (x, y, z, w) with w >= 0 from rotation matrices [..., 3, 3].

    Each of the four textbook formulas divides by one component; the one with the largest component is used,
    so no division is ill-conditioned (Shepperd's method).
    """
    m = rot.reshape((*rot.shape[:-2], 9)).unbind(-1)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
    # 4w^2, 4x^2, 4y^2, 4z^2
    four_sq = torch.stack((1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22), dim=-1)
    s = 2 * four_sq.clamp_min(1e-12).sqrt()  # 4 * |component| for each case
    sw, sx, sy, sz = s.unbind(-1)
    candidates = torch.stack(
        (
            torch.stack(((m21 - m12) / sw, (m02 - m20) / sw, (m10 - m01) / sw, sw / 4), -1),
            torch.stack((sx / 4, (m01 + m10) / sx, (m02 + m20) / sx, (m21 - m12) / sx), -1),
            torch.stack(((m01 + m10) / sy, sy / 4, (m12 + m21) / sy, (m02 - m20) / sy), -1),
            torch.stack(((m02 + m20) / sz, (m12 + m21) / sz, sz / 4, (m10 - m01) / sz), -1),
        ),
        dim=-2,
    )  # [..., case, xyzw]
    best = four_sq.argmax(-1)[..., None, None].expand((*rot.shape[:-2], 1, 4))
    quat = candidates.gather(-2, best)[..., 0, :]
    quat = quat / quat.norm(dim=-1, keepdim=True)
    return torch.where(quat[..., 3:] < 0, -quat, quat)


def pose_encoding_to_extri_intri(
    pose_enc: Tensor, image_size: tuple[int, int], min_fov: float = MIN_FOV
) -> tuple[Tensor, Tensor]:
    """Extrinsics [..., 3, 4] and intrinsics [..., 3, 3] from pose encodings [..., 9] for ``image_size`` (H, W).

    The fields of view are clamped to [min_fov, pi - min_fov] so that the focal lengths stay finite.
    """
    height, width = image_size
    rot = quat_to_mat(pose_enc[..., 3:7])
    extrinsic = torch.cat((rot, pose_enc[..., :3, None]), dim=-1)
    fov = pose_enc[..., 7:9].clamp(min_fov, math.pi - min_fov)
    fy = (height / 2) / torch.tan(fov[..., 0] / 2)
    fx = (width / 2) / torch.tan(fov[..., 1] / 2)
    intrinsic = pose_enc.new_zeros((*pose_enc.shape[:-1], 3, 3))
    intrinsic[..., 0, 0] = fx
    intrinsic[..., 1, 1] = fy
    intrinsic[..., 0, 2] = width / 2
    intrinsic[..., 1, 2] = height / 2
    intrinsic[..., 2, 2] = 1
    return extrinsic, intrinsic


def extri_intri_to_pose_encoding(extrinsic: Tensor, intrinsic: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Pose encodings [..., 9] from extrinsics [..., 3, 4] and intrinsics [..., 3, 3] for ``image_size`` (H, W)."""
    height, width = image_size
    quat = mat_to_quat(extrinsic[..., :3, :3])
    fov_h = 2 * torch.atan((height / 2) / intrinsic[..., 1, 1])
    fov_w = 2 * torch.atan((width / 2) / intrinsic[..., 0, 0])
    return torch.cat((extrinsic[..., :3, 3], quat, fov_h[..., None], fov_w[..., None]), dim=-1)


def invert_pose(pose: Tensor) -> Tensor:
    """The inverse of rigid transforms [..., 3, 4] or [..., 4, 4] (same shape): camera-from-world <-> world-from-camera.

    Uses ``[R^T | -R^T t]`` rather than a general matrix inverse: exact for rotations and cheap.
    """
    rot_t = pose[..., :3, :3].transpose(-1, -2)
    trans = -(rot_t @ pose[..., :3, 3:])
    inverse = torch.cat((rot_t, trans), dim=-1)
    if pose.shape[-2] == 4:
        bottom = torch.zeros_like(pose[..., 3:, :])
        bottom[..., 3] = 1
        inverse = torch.cat((inverse, bottom), dim=-2)
    return inverse


def relative_to_first_camera(extrinsic: Tensor, first: Tensor) -> Tensor:
    """Camera-from-world extrinsics [..., 3, 4] re-expressed with the world at the first camera, whose
    camera-from-world in the same world is ``first`` [3, 4]: ``E first^-1``. Where ``extrinsic`` is ``first``
    itself the result is exactly the identity (the product is only within rounding of it)."""
    relative = extrinsic[..., :3, :3] @ first[:3, :3].transpose(-1, -2)
    translation = extrinsic[..., :3, 3:] - relative @ first[:3, 3:]
    result = torch.cat((relative, translation), dim=-1)
    same = (extrinsic[..., :3, :] == first[:3, :]).flatten(-2).all(-1)
    identity = torch.eye(3, 4, dtype=result.dtype, device=result.device).expand_as(result)
    return torch.where(same[..., None, None], identity, result)


def transform_points(points: Tensor, pose: Tensor) -> Tensor:
    """Points [..., 3] moved by a rigid transform [3, 4] (``R p + t``): e.g. world points into the frame of the
    camera whose camera-from-world ``pose`` is."""
    return points @ pose[:3, :3].transpose(-1, -2) + pose[:3, 3]


def homogeneous_pose(pose: Tensor) -> Tensor:
    """Rigid transforms [..., 3, 4] as [..., 4, 4] with the bottom row (0, 0, 0, 1); [..., 4, 4] unchanged."""
    if pose.shape[-2:] == (4, 4):
        return pose
    if pose.shape[-2:] != (3, 4):
        raise ValueError(f"poses must be [..., 3, 4] or [..., 4, 4], got {tuple(pose.shape)}")
    bottom = torch.zeros_like(pose[..., :1, :])
    bottom[..., 3] = 1
    return torch.cat((pose, bottom), dim=-2)


def camera_centers(extrinsic: Tensor) -> Tensor:
    """Camera centres [..., 3] in world coordinates from extrinsics [..., 3, 4]: ``-R^T t``."""
    return invert_pose(extrinsic[..., :3, :])[..., 3]


def depth_to_camera_points(depth: Tensor, intrinsic: Tensor) -> Tensor:
    """Camera-frame points [..., H, W, 3] from depth [..., H, W] (z along the optical axis) and K [..., 3, 3]."""
    height, width = depth.shape[-2:]
    v, u = torch.meshgrid(
        torch.arange(height, dtype=depth.dtype, device=depth.device),
        torch.arange(width, dtype=depth.dtype, device=depth.device),
        indexing="ij",
    )
    k = intrinsic[..., None, None, :, :].to(depth.dtype)  # broadcast over pixels
    x = (u - k[..., 0, 2]) / k[..., 0, 0] * depth
    y = (v - k[..., 1, 2]) / k[..., 1, 1] * depth
    return torch.stack((x, y, depth), dim=-1)


def unproject_depth(depth: Tensor, extrinsic: Tensor, intrinsic: Tensor) -> Tensor:
    """World points [..., H, W, 3] from depth [..., H, W] (or [..., H, W, 1]) and the camera that saw it."""
    if depth.shape[-1] == 1 and depth.ndim == extrinsic.ndim + 1:
        depth = depth[..., 0]
    cam = depth_to_camera_points(depth, intrinsic)
    world_from_cam = invert_pose(extrinsic).to(depth.dtype)
    rot, trans = world_from_cam[..., None, None, :3, :3], world_from_cam[..., None, None, :3, 3]
    return (rot @ cam[..., None])[..., 0] + trans


def project_points(points: Tensor, extrinsic: Tensor, intrinsic: Tensor) -> tuple[Tensor, Tensor]:
    """Pixels [..., N, 2] (u, v) and depths [..., N] of world points [..., N, 3] seen by a camera [..., 3, 4]."""
    cam = points @ extrinsic[..., :3, :3].transpose(-1, -2) + extrinsic[..., None, :3, 3]
    z = cam[..., 2]
    k = intrinsic[..., None, :, :]
    u = k[..., 0, 0] * cam[..., 0] / z + k[..., 0, 2]
    v = k[..., 1, 1] * cam[..., 1] / z + k[..., 1, 2]
    return torch.stack((u, v), dim=-1), z


def umeyama(
    src: Tensor, dst: Tensor, weights: Tensor | None = None, with_scale: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """The similarity (s, R, t) minimising sum w_i |dst_i - (s R src_i + t)|^2 for points [N, 3] (Umeyama, 1991).

    Returns scale (scalar tensor; 1 without ``with_scale``), rotation [3, 3] (det +1) and translation [3].
    """
    if src.shape != dst.shape or src.ndim != 2 or src.shape[0] < 3:
        raise ValueError(f"umeyama needs two [N, 3] point sets with N >= 3, got {tuple(src.shape)}, {tuple(dst.shape)}")
    w = torch.ones_like(src[:, 0]) if weights is None else weights.to(src.dtype)
    w = w / w.sum()
    mu_src, mu_dst = w @ src, w @ dst
    src_c, dst_c = src - mu_src, dst - mu_dst
    cov = (dst_c * w[:, None]).T @ src_c  # [3, 3]
    u, sigma, vh = torch.linalg.svd(cov)
    # Reflection guard: flip the weakest axis when the best orthogonal map would be a reflection.
    sign = torch.ones_like(sigma)
    if torch.linalg.det(u) * torch.linalg.det(vh) < 0:
        sign[-1] = -1
    rot = u @ torch.diag(sign) @ vh
    scale = (sigma * sign).sum() / (w @ (src_c * src_c).sum(-1)) if with_scale else torch.ones((), dtype=src.dtype)
    trans = mu_dst - scale * rot @ mu_src
    return scale, rot, trans
