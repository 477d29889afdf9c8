"""The verification hook on the model: a stateless offline re-run of a few frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamvggt.config import ModelConfig
from streamvggt.geometry import pose_encoding_to_extri_intri
from streamvggt.mapping import GlobalMap, model_predictor
from streamvggt.model.streamvggt import StreamVGGT


@pytest.fixture(scope="module")
def tiny_model() -> StreamVGGT:
    torch.manual_seed(0)
    return StreamVGGT(ModelConfig.preset("tiny")).eval()


def frames(count: int, size: tuple[int, int]) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


def test_model_predictor_returns_one_prediction_per_frame_as_the_offline_forward(tiny_model: StreamVGGT) -> None:
    size = (2 * tiny_model.config.patch_size, 3 * tiny_model.config.patch_size)
    images = frames(3, size)
    predictions = model_predictor(tiny_model)(images)
    assert len(predictions) == 3
    with torch.inference_mode():
        batch = torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i in images]).float() / 255
        direct = tiny_model(batch[None])
    for k, prediction in enumerate(predictions):
        assert prediction.extrinsic.shape == (3, 4) and prediction.intrinsic.shape == (3, 3)
        assert prediction.depth.shape == size and prediction.depth_conf.shape == size
        assert np.allclose(prediction.depth, direct.depth[0, k, ..., 0].numpy(), atol=1e-6)
    extrinsic, _ = pose_encoding_to_extri_intri(direct.pose_enc[0], size)
    assert np.allclose(np.stack([p.extrinsic for p in predictions]), extrinsic.double().numpy(), atol=1e-6)


def test_model_predictor_refuses_more_than_48_frames(tiny_model: StreamVGGT) -> None:
    size = (tiny_model.config.patch_size, tiny_model.config.patch_size)
    with pytest.raises(ValueError, match="1 to 48 frames"):
        model_predictor(tiny_model)(frames(49, size))


def test_for_model_builds_a_map_with_the_model_hook(tiny_model: StreamVGGT) -> None:
    gmap = GlobalMap.for_model(tiny_model)
    assert gmap.predict is not None and gmap.num_frames == 0 and gmap.poses().shape == (0, 3, 4)
