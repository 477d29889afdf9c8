"""Track head: half-resolution DPT features followed by the iterative point tracker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from streamvggt.config import TrackHeadConfig
from streamvggt.model.heads.dpt_head import DPTHead
from streamvggt.model.heads.tracker import Tracker


class TrackHead(nn.Module):
    """Tracks query points of the first frame through every frame of the sequence.

    Args:
        dim_in: channels of the aggregator tokens (twice the embedding width).
        patch_size: image pixels per patch token.
        cfg: track head hyperparameters.
        intermediate_layer_idx: aggregator layers the feature extractor reads.
    """

    def __init__(
        self, dim_in: int, patch_size: int, cfg: TrackHeadConfig, intermediate_layer_idx: Sequence[int]
    ) -> None:
        super().__init__()
        self.feature_extractor = DPTHead(
            dim_in=dim_in,
            patch_size=patch_size,
            features=cfg.features,
            out_channels=cfg.out_channels,
            intermediate_layer_idx=intermediate_layer_idx,
            feature_only=True,
            down_ratio=2,
            pos_embed=False,
        )
        self.tracker = Tracker(
            latent_dim=cfg.features,
            hidden_size=cfg.hidden_size,
            depth=cfg.tracker_depth,
            stride=cfg.stride,
            corr_levels=cfg.corr_levels,
            corr_radius=cfg.corr_radius,
        )
        self.iters = cfg.iters

    def forward(
        self, tokens: Mapping[int, Tensor], image_size: tuple[int, int], patch_start_idx: int, query_points: Tensor
    ) -> tuple[list[Tensor], Tensor, Tensor | None]:
        """Track ``query_points`` [B, N, 2] (x, y pixels in frame 0) through frames of ``image_size`` (H, W).

        ``tokens`` maps aggregator layer index -> [B, S, P, dim_in]. Returns the coordinates after each
        refinement iteration (list of [B, S, N, 2], pixels), visibility and confidence [B, S, N] in (0, 1).
        """
        fmaps = self.feature_extractor(tokens, image_size, patch_start_idx)  # [B, S, C, H/2, W/2]
        return self.tracker(query_points, fmaps, self.iters)
