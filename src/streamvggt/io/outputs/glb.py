"""A GLB scene for viewing: the point cloud plus one camera frustum per frame (trimesh)."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import torch

from streamvggt.geometry import camera_centers, invert_pose

# glTF is y-up with the camera looking down -z; the model's world is OpenCV (y down, z forward). All geometry
# stays in the model's world coordinates under one node that carries this flip, so viewers show the scene upright
# and readers that apply node transforms can undo it exactly.
OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0, 1.0])
WORLD_NODE = "opencv_world"
POINTS_NODE = "points"
FRUSTUM_SCALE = 0.05  # frustum depth as a fraction of the scene's extent


def camera_node(index: int) -> str:
    return f"camera_{index:06d}"


def frustum_vertices(
    extrinsic: np.ndarray, intrinsic: np.ndarray, image_size: tuple[int, int], depth: float
) -> np.ndarray:
    """[5, 3] world points: the camera centre, then the image corners (top-left, top-right, bottom-right,
    bottom-left: the outer pixel edges) at ``depth`` along the optical axis."""
    height, width = image_size
    corners_px = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]])
    fx, fy, cx, cy = intrinsic[0, 0], intrinsic[1, 1], intrinsic[0, 2], intrinsic[1, 2]
    cam = np.zeros((5, 3))
    cam[1:, 0] = (corners_px[:, 0] - cx) / fx * depth
    cam[1:, 1] = (corners_px[:, 1] - cy) / fy * depth
    cam[1:, 2] = depth
    world_from_cam = invert_pose(torch.from_numpy(np.asarray(extrinsic, dtype=np.float64))).numpy()
    return cam @ world_from_cam[:, :3].T + world_from_cam[:, 3]


def scene_extent(xyz: np.ndarray, centres: np.ndarray) -> float:
    """Diagonal of the 5th-95th percentile box of points and camera centres (robust to stray points)."""
    everything = np.concatenate((np.asarray(xyz, dtype=np.float64).reshape(-1, 3), centres))
    low, high = np.percentile(everything, (5, 95), axis=0)
    return float(np.linalg.norm(high - low))


def write_glb(
    path: Path,
    xyz: np.ndarray,
    rgb: np.ndarray,
    extrinsics: np.ndarray,
    intrinsics: np.ndarray,
    image_size: tuple[int, int],
) -> None:
    """Write points [N, 3] (colours [N, 3] uint8) and a frustum per camera (extrinsics [S, 3, 4], intrinsics
    [S, 3, 3]) as a binary glTF file."""
    import trimesh

    scene = trimesh.Scene()
    scene.graph.update(frame_from=scene.graph.base_frame, frame_to=WORLD_NODE, matrix=OPENCV_TO_GLTF)
    if len(xyz):
        cloud = trimesh.PointCloud(np.asarray(xyz, dtype=np.float32), colors=np.asarray(rgb, dtype=np.uint8))
        scene.add_geometry(cloud, node_name=POINTS_NODE, geom_name=POINTS_NODE, parent_node_name=WORLD_NODE)
    centres = camera_centers(torch.from_numpy(np.asarray(extrinsics, dtype=np.float64))).numpy()
    extent = scene_extent(xyz, centres)
    depth = FRUSTUM_SCALE * extent if extent > 0 else 0.1
    # Four side faces, each listed in both windings so that viewers without double-sided materials show them.
    sides = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]])
    faces = np.concatenate((sides, sides[:, ::-1]))
    for index, (extrinsic, intrinsic) in enumerate(zip(extrinsics, intrinsics, strict=True)):
        vertices = frustum_vertices(extrinsic, intrinsic, image_size, depth)
        mesh = trimesh.Trimesh(vertices, faces, process=False)
        red, green, blue = colorsys.hsv_to_rgb(index / max(len(extrinsics), 1), 0.9, 0.95)
        mesh.visual.vertex_colors = np.array([red * 255, green * 255, blue * 255, 255], dtype=np.uint8)
        name = camera_node(index)
        scene.add_geometry(mesh, node_name=name, geom_name=name, parent_node_name=WORLD_NODE)
    path.write_bytes(scene.export(file_type="glb"))
