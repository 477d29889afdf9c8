"""The StreamVGGT network: aggregator trunk plus camera, depth, point and track heads."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from streamvggt.config import ModelConfig
from streamvggt.device import trunk_dtype
from streamvggt.model.aggregator import Aggregator
from streamvggt.model.camera_head import CameraHead
from streamvggt.model.dpt_head import DPTHead
from streamvggt.model.predictions import Predictions
from streamvggt.model.track_head import TrackHead


class StreamVGGT(nn.Module):
    """VGGT (``config.causal=False``) or StreamVGGT (``config.causal=True``) with the official parameter names.

    ``model(images)`` is the offline forward over a whole clip; with ``causal`` it has StreamVGGT's training
    semantics (frame t sees frames 0..t), which the streaming session reproduces frame by frame.
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
            dim_in, cfg.patch_size, 4, "inv_log", "expp1", dpt.features, dpt.out_channels, dpt.intermediate_layer_idx
        )
        self.depth_head = DPTHead(
            dim_in, cfg.patch_size, 2, "exp", "expp1", dpt.features, dpt.out_channels, dpt.intermediate_layer_idx
        )
        self.track_head = TrackHead(dim_in, cfg.patch_size, cfg.track_head, dpt.intermediate_layer_idx)
        # Trunk precision: "auto" picks bf16/fp16 autocast on CUDA and fp32 elsewhere (see streamvggt.device).
        self.precision = "auto"

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``folder``; :meth:`from_pretrained` reads it back."""
        from streamvggt.weights import save_pretrained  # weights imports this module

        return save_pretrained(self, folder)

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike,
        preset: str | ModelConfig | None = None,
        device: str | torch.device | None = None,
    ) -> StreamVGGT:
        """The model with the weights of ``source`` (file, folder or Hugging Face repo id); see ``load_model``."""
        from streamvggt.weights import load_model  # weights imports this module

        return load_model(source, preset=preset, device=device)

    @property
    def head_layers(self) -> tuple[int, ...]:
        """Trunk layers that any head reads: the DPT layers and the last (camera). Only these are kept."""
        return tuple(sorted({*self.config.dpt_head.intermediate_layer_idx, self.config.depth - 1}))

    @property
    def patch_start_idx(self) -> int:
        return self.aggregator.patch_start_idx

    @contextlib.contextmanager
    def trunk_precision(self, device: torch.device) -> Iterator[None]:
        """Autocast context for the trunk according to ``self.precision`` and the device."""
        dtype = trunk_dtype(device, self.precision)
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=dtype):
                yield

    def stream(self, batch_size: int = 1, cache: str = "full", query_points: Tensor | None = None):
        """A streaming session (see :class:`streamvggt.stream.StreamSession`); ``cache`` selects the policy:
        ``"full"`` (exact), ``"window:K"`` or ``"budget:N"``. ``query_points`` [B, N, 2] are pixels in frame 0."""
        from streamvggt.stream import StreamSession

        return StreamSession(self, batch_size=batch_size, cache=cache, query_points=query_points)

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
        with self.trunk_precision(images.device):
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
        """Run the heads (in fp32) on kept trunk tokens {layer: [B, S, P, 2C]}; see :meth:`forward`."""
        device_type = next(iter(tokens.values())).device.type
        with torch.autocast(device_type=device_type, enabled=False):
            tokens = {layer: t.float() for layer, t in tokens.items()}
            size = (int(image_size[0]), int(image_size[1]))
            camera_tokens = tokens[self.config.depth - 1][:, :, 0]
            pose_iters = self.camera_head(camera_tokens, camera_caches)
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
