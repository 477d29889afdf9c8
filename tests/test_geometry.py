"""Camera geometry: the reference's pose-encoding conventions, round trips, unprojection, Umeyama."""

from __future__ import annotations

import math

import pytest
import torch

from streamvggt.geometry import (
    MIN_FOV,
    camera_centers,
    depth_to_camera_points,
    extri_intri_to_pose_encoding,
    homogeneous_pose,
    invert_pose,
    mat_to_quat,
    pose_encoding_to_extri_intri,
    project_points,
    quat_to_mat,
    umeyama,
    unproject_depth,
)

# Geometry tests check to 1e-10: every test runs with float64 as the default dtype.
pytestmark = pytest.mark.usefixtures("float64")


@pytest.fixture
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    q = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))
    return quat_to_mat(q / q.norm(dim=-1, keepdim=True))


def rot_x(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def test_quat_to_mat_follows_xyzw_order():
    # 90 degrees about z: x, y, z = 0, 0, sin(45), w = cos(45)
    half = math.sqrt(0.5)
    rot = quat_to_mat(torch.tensor([0.0, 0.0, half, half]))
    torch.testing.assert_close(rot, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]))


def test_quat_to_mat_accepts_non_unit_quaternions():
    q = torch.tensor([0.1, -0.4, 0.3, 0.8])
    torch.testing.assert_close(quat_to_mat(3.7 * q), quat_to_mat(q / q.norm()))


def test_rotation_quaternion_round_trip_with_nonnegative_w():
    rots = random_rotations(500)
    quats = mat_to_quat(rots)
    assert (quats[:, 3] >= 0).all()
    torch.testing.assert_close(quats.norm(dim=-1), torch.ones(500))
    torch.testing.assert_close(quat_to_mat(quats), rots, atol=1e-10, rtol=0)


@pytest.mark.parametrize("angle", [0.0, math.pi / 2, math.pi - 1e-9, math.pi])
def test_mat_to_quat_is_stable_near_half_turns(angle):
    """At 180 degrees w is ~0: dividing by it would blow up; Shepperd's method divides by the largest component."""
    quat = mat_to_quat(rot_x(angle))
    assert torch.isfinite(quat).all()
    torch.testing.assert_close(quat_to_mat(quat), rot_x(angle), atol=1e-9, rtol=0)


def test_pose_encoding_decodes_with_reference_conventions():
    """t is the extrinsic translation, fov_h (index 7) sets fy from H, fov_w sets fx from W, cx, cy = W/2, H/2."""
    height, width = 56, 70
    enc = torch.tensor([0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 1.0, 1.2, 0.9])
    extrinsic, intrinsic = pose_encoding_to_extri_intri(enc, (height, width))
    torch.testing.assert_close(extrinsic[:, :3], torch.eye(3))
    torch.testing.assert_close(extrinsic[:, 3], enc[:3])
    fy, fx = (height / 2) / math.tan(1.2 / 2), (width / 2) / math.tan(0.9 / 2)
    expected = torch.tensor([[fx, 0, width / 2], [0, fy, height / 2], [0, 0, 1]])
    torch.testing.assert_close(intrinsic, expected)


def test_pose_encoding_round_trip_batched():
    height, width = 392, 518
    rots = random_rotations(12, seed=1).reshape(3, 4, 3, 3)
    trans = torch.randn(3, 4, 3, 1, generator=torch.Generator().manual_seed(2))
    extrinsic = torch.cat((rots, trans), dim=-1)
    fx = torch.rand(3, 4, generator=torch.Generator().manual_seed(3)) * 400 + 200
    intrinsic = torch.zeros(3, 4, 3, 3)
    intrinsic[..., 0, 0], intrinsic[..., 1, 1] = fx, fx * 1.1
    intrinsic[..., 0, 2], intrinsic[..., 1, 2], intrinsic[..., 2, 2] = width / 2, height / 2, 1
    enc = extri_intri_to_pose_encoding(extrinsic, intrinsic, (height, width))
    assert enc.shape == (3, 4, 9)
    ext2, int2 = pose_encoding_to_extri_intri(enc, (height, width))
    torch.testing.assert_close(ext2, extrinsic, atol=1e-10, rtol=0)
    torch.testing.assert_close(int2, intrinsic)
    torch.testing.assert_close(extri_intri_to_pose_encoding(ext2, int2, (height, width)), enc)


def test_zero_field_of_view_gives_a_finite_focal_length():
    """The camera head's ReLU can output fov = 0 exactly (an untrained head does): no infinite focal length."""
    enc = torch.tensor([0.0, 0, 0, 0, 0, 0, 1, 0.0, 0.0])
    _, intrinsic = pose_encoding_to_extri_intri(enc, (56, 70))
    assert torch.isfinite(intrinsic).all()
    assert intrinsic[0, 0] == pytest.approx(35 / math.tan(MIN_FOV / 2))


@pytest.mark.parametrize("rows", [3, 4])
def test_invert_pose_is_the_matrix_inverse(rows):
    pose = torch.cat((random_rotations(5, seed=4), torch.randn(5, 3, 1)), dim=-1)
    if rows == 4:
        pose = torch.cat((pose, torch.tensor([0.0, 0, 0, 1]).expand(5, 1, 4)), dim=-2)
    inverse = invert_pose(pose)
    assert inverse.shape == pose.shape
    square = inverse if rows == 4 else torch.cat((inverse, torch.tensor([0.0, 0, 0, 1]).expand(5, 1, 4)), dim=-2)
    full = pose if rows == 4 else torch.cat((pose, torch.tensor([0.0, 0, 0, 1]).expand(5, 1, 4)), dim=-2)
    torch.testing.assert_close(square @ full, torch.eye(4).expand(5, 4, 4), atol=1e-12, rtol=0)


def test_camera_centre_maps_to_the_camera_origin():
    extrinsic = torch.cat((random_rotations(3, seed=5), torch.randn(3, 3, 1)), dim=-1)
    centres = camera_centers(extrinsic)
    in_camera = (extrinsic[:, :, :3] @ centres[..., None])[..., 0] + extrinsic[:, :, 3]
    torch.testing.assert_close(in_camera, torch.zeros(3, 3), atol=1e-12, rtol=0)


def test_synthetic_camera_depth_unprojects_to_known_points():
    """A camera 2 units behind the origin, turned 90 degrees about y, looking at a wall x = 3 (world)."""
    height, width, f = 4, 6, 5.0
    # World-from-camera: camera z (forward) = world +x, camera x = world -z, camera y = world y; centre (-2, 0, 0).
    world_from_cam = torch.tensor([[0.0, 0, 1, -2], [0, 1, 0, 0], [-1, 0, 0, 0]])
    extrinsic = invert_pose(world_from_cam)
    intrinsic = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]])
    depth = torch.full((height, width), 5.0)  # the wall x = 3 is 5 units in front of the camera at x = -2
    points = unproject_depth(depth, extrinsic, intrinsic)
    assert points.shape == (height, width, 3)
    torch.testing.assert_close(points[..., 0], torch.full((height, width), 3.0))
    # pixel (u, v) -> camera x = (u - W/2) / f * 5 -> world z = -x; camera y -> world y
    u = torch.arange(width, dtype=torch.float64)
    v = torch.arange(height, dtype=torch.float64)
    torch.testing.assert_close(points[0, :, 2], -(u - width / 2) / f * 5)
    torch.testing.assert_close(points[:, 0, 1], (v - height / 2) / f * 5)
    # The principal point pixel (W/2, H/2) unprojects onto the optical axis.
    torch.testing.assert_close(points[height // 2, width // 2], torch.tensor([3.0, 0, 0]))


def test_unproject_accepts_a_trailing_channel_and_batches():
    extrinsic = torch.cat((random_rotations(2, seed=6), torch.randn(2, 3, 1)), dim=-1)
    intrinsic = torch.tensor([[30.0, 0, 35], [0, 32, 28], [0, 0, 1]]).expand(2, 3, 3)
    depth = torch.rand(2, 56, 70) + 0.5
    torch.testing.assert_close(
        unproject_depth(depth[..., None], extrinsic, intrinsic), unproject_depth(depth, extrinsic, intrinsic)
    )


def test_projection_inverts_unprojection():
    height, width = 14, 28
    extrinsic = torch.cat((random_rotations(1, seed=7)[0], torch.tensor([[0.3], [-0.1], [2.0]])), dim=-1)
    intrinsic = torch.tensor([[40.0, 0, width / 2], [0, 44, height / 2], [0, 0, 1]])
    depth = torch.rand(height, width, generator=torch.Generator().manual_seed(8)) * 3 + 1
    points = unproject_depth(depth, extrinsic, intrinsic)
    pixels, z = project_points(points.reshape(-1, 3), extrinsic, intrinsic)
    v, u = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    torch.testing.assert_close(pixels, torch.stack((u, v), -1).reshape(-1, 2).double(), atol=1e-9, rtol=0)
    torch.testing.assert_close(z, depth.reshape(-1))
    torch.testing.assert_close(depth_to_camera_points(depth, intrinsic)[..., 2], depth)


def test_umeyama_recovers_a_similarity():
    src = torch.randn(50, 3, generator=torch.Generator().manual_seed(9))
    rot = random_rotations(1, seed=10)[0]
    dst = 2.5 * src @ rot.T + torch.tensor([1.0, -2.0, 0.5])
    scale, rot_est, trans = umeyama(src, dst)
    assert float(scale) == pytest.approx(2.5)
    torch.testing.assert_close(rot_est, rot)
    torch.testing.assert_close(trans, torch.tensor([1.0, -2.0, 0.5]))
    fixed, rot_rigid, _ = umeyama(src, src @ rot.T, with_scale=False)
    assert float(fixed) == 1.0
    torch.testing.assert_close(rot_rigid, rot)


def test_umeyama_returns_a_rotation_for_mirrored_points():
    src = torch.randn(30, 3, generator=torch.Generator().manual_seed(11))
    mirrored = src * torch.tensor([1.0, 1.0, -1.0])
    _, rot, _ = umeyama(src, mirrored)
    assert float(torch.linalg.det(rot)) == pytest.approx(1.0)


def test_umeyama_weights_ignore_outliers():
    src = torch.randn(40, 3, generator=torch.Generator().manual_seed(12))
    dst = src + torch.tensor([0.5, 0, 0])
    dst[:5] += 100  # outliers with zero weight
    weights = torch.ones(40)
    weights[:5] = 0
    scale, rot, trans = umeyama(src, dst, weights=weights)
    assert float(scale) == pytest.approx(1.0)
    torch.testing.assert_close(trans, torch.tensor([0.5, 0, 0]), atol=1e-10, rtol=0)
    torch.testing.assert_close(rot, torch.eye(3), atol=1e-10, rtol=0)


def test_homogeneous_pose_appends_the_bottom_row_and_keeps_4x4():
    pose = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(2, 3, 4)
    full = homogeneous_pose(pose)
    assert full.shape == (2, 4, 4) and torch.equal(full[:, :3], pose)
    assert torch.equal(full[:, 3], torch.tensor([[0.0, 0, 0, 1]] * 2, dtype=torch.float64))
    assert homogeneous_pose(full) is full
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 4\]"):
        homogeneous_pose(torch.zeros(2, 3, 3))
