"""The StreamVGGT network: aggregator trunk plus camera, depth, point and track heads."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from streamvggt.config import ModelConfig
from streamvggt.model.aggregator import Aggregator
from streamvggt.model.heads.camera_head import CameraHead
from streamvggt.model.heads.dpt_head import DPTHead
from streamvggt.model.heads.track_head import TrackHead
from streamvggt.model.predictions import Predictions
from streamvggt.runtime.device import resolve_precision

log = logging.getLogger(__name__)


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
        # Trunk precision: "auto" picks bf16/fp16 autocast on CUDA and what is fastest and accurate on this CPU
        # (see streamvggt.runtime.device and streamvggt.runtime.precision).
        self.precision = "auto"
        # The mode the trunk's weights were converted for by prepare_precision ("fp32": as built or loaded).
        self.weights_precision = "fp32"
        self._resolved: dict[tuple[str, str], str] = {}
        self._warmed: set[tuple[str, str, int, int]] = set()  # (device, mode, height, width) warm_up has run for

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

    def resolved_precision(self, device: torch.device) -> str:
        """The concrete mode ``self.precision`` means on ``device`` (auto measured once per model and device)."""
        key = (device.type, self.precision)
        if key not in self._resolved:
            side = self.config.img_size
            tokens = self.aggregator.tokens_per_frame(side, side)
            self._resolved[key] = resolve_precision(device, self.precision, self.config.embed_dim, tokens)
        return self._resolved[key]

    def prepare_precision(self, device: torch.device | None = None) -> str:
        """Convert the trunk for the mode ``self.precision`` resolves to on ``device`` and return that mode.

        On CPU, bf16 stores the aggregator's Linear weights in bf16 (half the memory, no re-cast per step) and
        int8 quantises them; both are one-way (load the model again for another mode). Other modes and devices
        keep the weights as they are and use autocast alone.
        """
        device = device if device is not None else next(self.parameters()).device
        mode = self.resolved_precision(device)
        if device.type != "cpu" or mode not in ("bf16", "int8") or mode == self.weights_precision:
            return mode
        self._check_converted_for(mode)
        if self.training:
            raise ValueError(f"precision '{mode}' converts weights for inference: call model.eval() first")
        from streamvggt.runtime.precision import cast_trunk_linears, quantize_trunk  # model code below; lazy on purpose

        count = cast_trunk_linears(self, torch.bfloat16) if mode == "bf16" else quantize_trunk(self)
        self.weights_precision = mode
        log.info("trunk converted for %s: %d Linear layers", mode, count)
        return mode

    @torch.no_grad()
    def warm_up(self, height: int, width: int, device: torch.device | None = None) -> bool:
        """Convert the trunk for its precision and stream one blank ``height`` x ``width`` frame through a throwaway
        session, so that kernels for that frame size (oneDNN bf16 primitives take seconds) are made now and not
        in a stream's first step. Once per device, mode and size: returns False when it had run already."""
        device = device if device is not None else next(self.parameters()).device
        key = (str(device), self.prepare_precision(device), height, width)
        if key in self._warmed:
            return False
        self.stream().step(torch.zeros(1, 3, height, width, device=device))
        self._warmed.add(key)
        return True

    @contextlib.contextmanager
    def trunk_precision(self, device: torch.device) -> Iterator[None]:
        """Autocast context for the trunk according to ``self.precision``, the device and the converted weights."""
        dtype = self.trunk_autocast_dtype(device)
        if dtype is None:
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=dtype):
                yield

    def _check_converted_for(self, mode: str) -> None:
        """Weight conversion is one-way: a trunk converted for one reduced precision cannot run another."""
        if self.weights_precision != "fp32" and mode != self.weights_precision:
            raise ValueError(
                f"the trunk's weights were converted for precision '{self.weights_precision}'; "
                f"load the model again to run '{mode}'"
            )

    def trunk_autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The trunk's autocast dtype on ``device`` (None: none), converting int8 weights on first use."""
        mode = self.resolved_precision(device)
        if mode == "int8" and self.weights_precision != "int8":
            self.prepare_precision(device)
        self._check_converted_for(mode)
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)

    def stream(
        self,
        batch_size: int = 1,
        cache: str = "full",
        query_points: Tensor | None = None,
        compile: bool | str | Mapping[str, object] = False,
    ):
        """A streaming session (see :class:`streamvggt.streaming.session.StreamSession`); ``cache`` selects the policy:
        ``"full"`` (exact), ``"window:K"`` or ``"budget:N"``. ``query_points`` [B, N, 2] are pixels in frame 0.
        ``compile``: True or ``"step"`` runs each step as one ``torch.compile(fullgraph=True)`` graph (see
        :mod:`streamvggt.runtime.compiled_step`); a mapping adds ``torch.compile`` arguments, e.g. ``{"backend": ...}``;
        ``"regions"`` compiles this model's transformer blocks and dense heads instead, for every session and cache
        policy (see :mod:`streamvggt.runtime.regional_compile`)."""
        from streamvggt.streaming.session import StreamSession

        return StreamSession(self, batch_size=batch_size, cache=cache, query_points=query_points, compile=compile)

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
        """Run the heads on kept trunk tokens {layer: [B, S, P, 2C]}; see :meth:`forward`.

        The heads run in fp32, except the depth and point heads' convolutions in CPU bf16 mode (2.5x faster there;
        their last convolution and output activations stay fp32). The camera head stays fp32 in every mode: in
        bf16 its pose encodings moved by 9.3e-3 on the bundled model, above the 1e-3 target (issue #14).
        """
        device = next(iter(tokens.values())).device
        dense_bf16 = device.type == "cpu" and self.resolved_precision(device) == "bf16"
        dense_precision = torch.autocast("cpu", dtype=torch.bfloat16) if dense_bf16 else contextlib.nullcontext()
        with torch.autocast(device_type=device.type, enabled=False):
            tokens = {layer: t.float() for layer, t in tokens.items()}
            size = (int(image_size[0]), int(image_size[1]))
            camera_tokens = tokens[self.config.depth - 1][:, :, 0]
            pose_iters = self.camera_head(camera_tokens, camera_caches)
            with dense_precision:
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
