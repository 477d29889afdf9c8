"""The point tracker of the track head: checkpoint layout and hand-checkable pieces.

Numerical parity of the whole head against the reference is in test_model.py (parity fixture).
"""

from __future__ import annotations

import math

import pytest
import torch

from streamvggt.config import TrackHeadConfig
from streamvggt.model.heads.track_head import TrackHead
from streamvggt.model.heads.tracker import (
    CorrelationPyramid,
    Tracker,
    bilinear_sample,
    flow_embedding,
    grid_sincos_embedding,
    sample_points,
)

SMALL = dict(latent_dim=16, hidden_size=32, depth=2, stride=2, corr_levels=3, corr_radius=2)


def _tracker(cfg: TrackHeadConfig, **kwargs) -> Tracker:
    return Tracker(
        latent_dim=cfg.features,
        hidden_size=cfg.hidden_size,
        depth=cfg.tracker_depth,
        stride=cfg.stride,
        corr_levels=cfg.corr_levels,
        corr_radius=cfg.corr_radius,
        **kwargs,
    )


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {name: list(t.shape) for name, t in module.state_dict().items()}


def _official(layout: dict[str, list[int]], prefix: str) -> dict[str, list[int]]:
    return {name.removeprefix(prefix): shape for name, shape in layout.items() if name.startswith(prefix)}


def test_tracker_state_dict_matches_official_layout(layout_1b):
    with torch.device("meta"):
        tracker = _tracker(TrackHeadConfig())
    assert _shapes(tracker) == _official(layout_1b, "track_head.tracker.")


def test_track_head_state_dict_matches_official_layout(layout_1b):
    with torch.device("meta"):
        head = TrackHead(dim_in=2048, patch_size=14, cfg=TrackHeadConfig(), intermediate_layer_idx=[4, 11, 17, 23])
    assert _shapes(head) == _official(layout_1b, "track_head.")


def test_tracker_without_confidence_has_no_confidence_weights():
    tracker = Tracker(**SMALL, predict_conf=False)
    assert not any(name.startswith("conf_predictor") for name in tracker.state_dict())
    _, _, conf = tracker(torch.tensor([[[4.0, 6.0]]]), torch.randn(1, 2, 16, 12, 14), iters=1)
    assert conf is None


def test_bilinear_sample_at_integer_pixels_returns_pixel_values():
    fmap = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    points = torch.tensor([[[0.0, 0.0], [4.0, 3.0], [2.0, 1.0]], [[1.0, 2.0], [3.0, 0.0], [0.0, 3.0]]])
    expected = torch.stack([fmap[b, :, int(y), int(x)] for b in range(2) for x, y in points[b].tolist()])
    assert torch.equal(sample_points(fmap, points).reshape(6, 3), expected)


def test_bilinear_sample_interpolates_inside_and_clamps_at_the_border():
    fmap = torch.tensor([[[[0.0, 10.0], [20.0, 30.0]]]])  # [1, 1, 2, 2]
    coords = torch.tensor([[[[0.5, 0.0], [0.5, 0.5], [-3.0, 1.0], [0.0, -1.0]]]])  # (x, y)
    torch.testing.assert_close(bilinear_sample(fmap, coords).flatten(), torch.tensor([5.0, 15.0, 20.0, 0.0]))
    # Zero padding: half a pixel past the right edge blends the last column with zeros.
    outside = torch.tensor([[[[1.5, 0.0]]]])
    torch.testing.assert_close(bilinear_sample(fmap, outside, "zeros").flatten(), torch.tensor([5.0]))
    torch.testing.assert_close(bilinear_sample(fmap, outside).flatten(), torch.tensor([10.0]))


def test_correlation_pyramid_level_sizes_and_output_shape():
    fmaps = torch.randn(2, 3, 8, 35, 49)
    pyramid = CorrelationPyramid(fmaps, levels=3, radius=2)
    assert [tuple(level.shape[-2:]) for level in pyramid.levels] == [(35, 49), (17, 24), (8, 12)]
    # Level 1 is the 2x2 average of level 0.
    torch.testing.assert_close(pyramid.levels[1][..., 0, 0], fmaps[..., :2, :2].mean(dim=(-1, -2)))
    out = pyramid.sample(torch.randn(2, 3, 5, 8), torch.rand(2, 3, 5, 2) * 30)
    assert out.shape == (2, 3, 5, 3 * 5 * 5)


def test_correlation_window_is_x_major_scaled_dot_product():
    radius, channels = 1, 4
    fmaps = torch.randn(1, 1, channels, 6, 7)
    feats = torch.randn(1, 1, 1, channels)
    x, y = 3, 2
    window = CorrelationPyramid(fmaps, levels=1, radius=radius).sample(feats, torch.tensor([[[[x, y]]]]).float())
    expected = [
        fmaps[0, 0, :, y + dy, x + dx] @ feats[0, 0, 0] / math.sqrt(channels)
        for dx in range(-radius, radius + 1)  # x offset: slow axis
        for dy in range(-radius, radius + 1)
    ]
    torch.testing.assert_close(window.flatten(), torch.stack(expected))


def test_flow_embedding_layout():
    emb = flow_embedding(torch.zeros(2, 3, 2), dim=8)
    assert emb.shape == (2, 3, 16)
    assert torch.equal(emb[0, 0], torch.tensor([0.0, 1.0] * 8))  # sin, cos interleaved
    # Channels 0..7 encode x, 8..15 y; the second frequency is 1000 / dim * 2.
    emb = flow_embedding(torch.tensor([[0.01, 0.0]]), dim=8)
    torch.testing.assert_close(emb[0, 2:4], torch.tensor([math.sin(2.5), math.cos(2.5)]))
    torch.testing.assert_close(emb[0, 8:], torch.tensor([0.0, 1.0] * 4))


def test_grid_embedding_halves_encode_x_then_y():
    dim, height, width = 16, 5, 7
    emb = grid_sincos_embedding(dim, height, width)
    assert emb.shape == (1, dim, height, width)
    assert torch.equal(emb[0, :, 0, 0], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4))
    assert torch.equal(emb[0, : dim // 2], emb[0, : dim // 2, :1].expand(-1, height, -1))  # x half: same per column
    assert torch.equal(emb[0, dim // 2 :], emb[0, dim // 2 :, :, :1].expand(-1, -1, width))  # y half: same per row
    # First frequency is 1: sin(x) at pixel x.
    torch.testing.assert_close(emb[0, 0, 0], torch.sin(torch.arange(width, dtype=torch.float32)))
    with pytest.raises(ValueError, match="multiple of 4"):
        grid_sincos_embedding(18, 2, 2)


@pytest.fixture(scope="module")
def small_run() -> tuple[Tracker, torch.Tensor, torch.Tensor, tuple]:
    torch.manual_seed(0)
    tracker = Tracker(**SMALL).eval()
    query_points = torch.tensor([[[10.0, 8.0], [50.0, 30.0], [3.5, 20.25], [40.0, 5.0]]])
    fmaps = torch.randn(1, 3, 16, 20, 30)
    with torch.no_grad():
        return tracker, query_points, fmaps, tracker(query_points, fmaps, iters=3)


def test_tracker_output_shapes_and_ranges(small_run):
    _, query_points, _, (coord_preds, vis, conf) = small_run
    assert len(coord_preds) == 3
    assert all(c.shape == (1, 3, 4, 2) for c in coord_preds)
    assert vis.shape == conf.shape == (1, 3, 4)
    assert ((vis > 0) & (vis < 1) & (conf > 0) & (conf < 1)).all()
    # The query frame is pinned at the query points (image pixels, undone stride).
    for coords in coord_preds:
        torch.testing.assert_close(coords[:, 0], query_points)


def test_tracker_is_equivariant_to_track_order(small_run):
    tracker, query_points, fmaps, (coord_preds, vis, conf) = small_run
    order = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        coords_p, vis_p, conf_p = tracker(query_points[:, order], fmaps, iters=3)
    torch.testing.assert_close(coords_p[-1], coord_preds[-1][:, :, order])
    torch.testing.assert_close(vis_p, vis[:, :, order])
    torch.testing.assert_close(conf_p, conf[:, :, order])
