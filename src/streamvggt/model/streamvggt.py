"""The StreamVGGT network: aggregator trunk plus camera, depth, point and track heads."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from streamvggt.config import ModelConfig
from streamvggt.model.aggregator import Aggregator
from streamvggt.model.conveniences import ModelConveniences
from streamvggt.model.execution import ExecutionPrecision, autocast
from streamvggt.model.heads.camera_head import CameraHead
from streamvggt.model.heads.dpt_head import DPTHead
from streamvggt.model.heads.track_head import TrackHead
from streamvggt.model.predictions import Predictions

log = logging.getLogger(__name__)


class StreamVGGT(ModelConveniences, nn.Module):
    """VGGT (``config.causal=False``) or StreamVGGT (``config.causal=True``) with the official parameter names.

    ``model(images)`` is the offline forward over a whole clip; with ``causal`` it has StreamVGGT's training
    semantics (frame t sees frames 0..t), which the streaming session reproduces frame by frame.

    The module holds architecture and weights only and computes in its parameters' dtype. ``execution`` is the
    precision record that whoever runs the model sets with its weights (``load_model(..., precision=...)``,
    :func:`streamvggt.runtime.precision.apply_precision`); the default is fp32 without autocast. ``stream``,
    ``from_pretrained`` and ``save_pretrained`` come from :class:`ModelConveniences`.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ModelConfig.preset("streamvggt-1b")
        cfg = self.config
        dim_in = 2 * cfg.embed_dim  # heads read frame- and global-attention outputs concatenated
        dpt = cfg.dpt_head
        self.aggregator = Aggregator(cfg)
        self.camera_head = CameraHead(dim_in, cfg.camera_head, causal=cfg.causal)
        self.point_head = DPTHead(
            dim_in=dim_in,
            patch_size=cfg.patch_size,
            output_dim=4,
            activation="inv_log",
            conf_activation="expp1",
            features=dpt.features,
            out_channels=dpt.out_channels,
            intermediate_layer_idx=dpt.intermediate_layer_idx,
        )
        self.depth_head = DPTHead(
            dim_in=dim_in,
            patch_size=cfg.patch_size,
            output_dim=2,
            activation="exp",
            conf_activation="expp1",
            features=dpt.features,
            out_channels=dpt.out_channels,
            intermediate_layer_idx=dpt.intermediate_layer_idx,
        )
        self.track_head = TrackHead(
            dim_in=dim_in,
            patch_size=cfg.patch_size,
            cfg=cfg.track_head,
            intermediate_layer_idx=dpt.intermediate_layer_idx,
        )
        # Inert data: the runtime replaces it when it converts the model for a precision (runtime.precision).
        self.execution = ExecutionPrecision()

    @property
    def head_layers(self) -> tuple[int, ...]:
        """Trunk layers that any head reads: the DPT layers and the last (camera). Only these are kept."""
        return tuple(sorted({*self.config.dpt_head.intermediate_layer_idx, self.config.depth - 1}))

    @property
    def patch_start_idx(self) -> int:
        return self.aggregator.patch_start_idx

    def forward(
        self, images: Tensor, query_points: Tensor | None = None, frames_chunk_size: int | None = 8
    ) -> Predictions:
        """Offline forward over a clip.

        images: [B, S, 3, H, W] in [0, 1]; H, W multiples of the patch size.
        query_points: optional [B, N, 2] pixel (x, y) in frame 0 to track through the clip.
        frames_chunk_size: frames decoded at once by the DPT heads (memory bound); None for all.
        Returns :class:`Predictions`: pose_enc [B,S,9], pose_enc_iters [I,B,S,9], depth [B,S,H,W,1],
        depth_conf [B,S,H,W], world_points [B,S,H,W,3], world_points_conf [B,S,H,W], and with queries
        track [B,S,N,2], track_vis [B,S,N], track_conf [B,S,N]; ``out["depth"]`` reads them by name too.
        """
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"images must be [B, S, 3, H, W], got {tuple(images.shape)}")
        if query_points is not None and (query_points.ndim != 3 or query_points.shape[-1] != 2):
            raise ValueError(f"query_points must be [B, N, 2], got {tuple(query_points.shape)}")
        with autocast(images.device.type, self.execution.trunk_dtype):
            tokens = self.aggregator(images, self.head_layers)
        return self.decode(tokens, images.shape[-2:], query_points, frames_chunk_size)

    def decode(
        self,
        tokens: Mapping[int, Tensor],
        image_size: tuple[int, int],
        query_points: Tensor | None = None,
        frames_chunk_size: int | None = 8,
        camera_caches: list | None = None,
    ) -> Predictions:
        """Run the heads on kept trunk tokens {layer: [B, S, P, 2C]}; see :meth:`forward`.

        The heads run in fp32, except the depth and point heads' convolutions under
        ``execution.dense_heads_dtype`` (their last convolution and output activations stay fp32). The camera head
        stays fp32 in every mode: reduced precision moves its pose encodings beyond the accuracy target.
        """
        device = next(iter(tokens.values())).device
        with torch.autocast(device_type=device.type, enabled=False):
            tokens = {layer: t.float() for layer, t in tokens.items()}
            size = (int(image_size[0]), int(image_size[1]))
            camera_tokens = tokens[self.config.depth - 1][:, :, 0]
            pose_iters = self.camera_head(camera_tokens, camera_caches)
            with autocast(device.type, self.execution.dense_heads_dtype):
                depth, depth_conf = self.depth_head(tokens, size, self.patch_start_idx, frames_chunk_size)
                points, points_conf = self.point_head(tokens, size, self.patch_start_idx, frames_chunk_size)
            tracks = {}
            if query_points is not None:
                coords, vis, conf = self.track_head(tokens, size, self.patch_start_idx, query_points.float())
                tracks = {"track": coords[-1], "track_vis": vis, "track_conf": conf}
            return Predictions(
                pose_enc=pose_iters[-1],
                pose_enc_iters=torch.stack(pose_iters),
                depth=depth,
                depth_conf=depth_conf,
                world_points=points,
                world_points_conf=points_conf,
                **tracks,
            )
