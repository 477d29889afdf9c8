""" "World = first camera" exactly: frame 0's extrinsic is the identity and every other camera and the world points
are expressed relative to frame 0's predicted camera, per stream (issue 24, item 11)."""

from __future__ import annotations

import numpy as np
import torch

from streamvggt.geometry import (
    extri_intri_to_pose_encoding,
    invert_pose,
    quat_to_mat,
    relative_to_first_camera,
    transform_points,
)
from streamvggt.io.inputs.sources import Frame
from streamvggt.model.predictions import Predictions
from streamvggt.pipeline.reconstructor import Reconstructor
from tests.helpers import cut_tiny_model

H, W = 28, 42


def pose(axis_angle: tuple[float, float, float], translation: tuple[float, float, float]) -> torch.Tensor:
    """A camera-from-world [3, 4] in float64."""
    vector = torch.tensor(axis_angle, dtype=torch.float64)
    angle = vector.norm()
    quat = torch.cat((torch.sin(angle / 2) * vector / angle, torch.cos(angle / 2)[None]))
    return torch.cat((quat_to_mat(quat), torch.tensor(translation, dtype=torch.float64)[:, None]), dim=1)


def test_the_first_camera_is_exactly_the_identity_and_the_others_relative_to_it() -> None:
    first = pose((0.010, -0.004, 0.006), (0.003, -0.002, 0.001))  # the model's frame 0: 0.7 deg, 3.5e-3 off
    other = pose((0.2, 0.1, -0.05), (0.5, 0.1, 0.2))
    relative = relative_to_first_camera(torch.stack((first, other)), first)
    assert torch.equal(relative[0], torch.eye(3, 4, dtype=torch.float64))
    expected = other @ torch.cat((invert_pose(first), torch.tensor([[0.0, 0, 0, 1]], dtype=torch.float64)))
    torch.testing.assert_close(relative[1], expected, rtol=0, atol=1e-12)
    # A point seen by both cameras keeps its camera coordinates once the world moves into camera 0's frame.
    world = torch.tensor([[0.3, -0.2, 2.5]], dtype=torch.float64)
    moved = transform_points(world, first)
    torch.testing.assert_close(transform_points(moved, relative[1]), transform_points(world, other))


class ScriptedSession:
    """A stream whose predictions are given: frame i has camera ``cameras[i]`` and sees the points ``world``."""

    def __init__(self, cameras: list[torch.Tensor], world: torch.Tensor) -> None:
        self.cameras, self.world, self.num_frames = cameras, world, 0

    def step(self, frame: torch.Tensor) -> Predictions:
        intrinsic = torch.tensor([[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]], dtype=torch.float64)
        encoding = extri_intri_to_pose_encoding(self.cameras[self.num_frames][None], intrinsic[None], (H, W))
        self.num_frames += 1
        ones = torch.ones(1, H, W)  # a step's predictions: [B, ...], no frame axis
        return Predictions(
            pose_enc=encoding.float(),
            pose_enc_iters=encoding.float()[None],
            depth=torch.full((1, H, W, 1), 2.0),
            depth_conf=ones + 1,
            world_points=self.world.float().expand(1, H, W, 3),
            world_points_conf=ones + 1,
        )


def test_each_stream_reexpresses_its_results_relative_to_its_own_first_frame() -> None:
    first = pose((0.010, -0.004, 0.006), (0.003, -0.002, 0.001))
    other = pose((0.2, 0.1, -0.05), (0.5, 0.1, 0.2))
    world = torch.tensor([0.3, -0.2, 2.5], dtype=torch.float64)
    image = np.zeros((H, W, 3), dtype=np.uint8)
    for stream in range(2):  # a second stream (another slot or input) remembers its own frame 0
        cameras = [first, other] if stream == 0 else [other, first]
        reconstructor = Reconstructor(cut_tiny_model(1), size=W, session=ScriptedSession(cameras, world))
        results = [reconstructor.step(Frame(image, f"{i}.png", i)) for i in range(2)]
        assert np.array_equal(results[0].extrinsic, np.eye(3, 4))
        expected = relative_to_first_camera(cameras[1][None], cameras[0])[0]
        np.testing.assert_allclose(results[1].extrinsic, expected.numpy(), atol=1e-5)
        # The point map moves with the world: camera 0 sees it where the raw prediction had it in camera 0.
        seen_by_first = transform_points(world, cameras[0]).numpy()
        np.testing.assert_allclose(results[0].world_points[0, 0], seen_by_first, atol=1e-5)
        np.testing.assert_allclose(results[1].world_points[5, 7], seen_by_first, atol=1e-5)
