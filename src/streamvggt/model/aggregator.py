"""The alternating-attention trunk: per-frame attention, then attention across frames, ``depth`` times."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from streamvggt.config import ModelConfig
from streamvggt.layers import Block, DinoV2Encoder, KVCacheLayer, RotaryEmbedding2D
from streamvggt.layers.rope import patch_grid_positions

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class Aggregator(nn.Module):
    """Images -> per-layer tokens [B, S, P, 2C] (frame-attention and global-attention outputs concatenated).

    Per-frame token layout: [camera (1), registers (R), patches (h*w)]. Special tokens have two learned slots:
    slot 0 for the first frame of a stream, slot 1 for every later frame. RoPE is purely spatial; frames are told
    apart only by the special-token slot and by the attention pattern across frames.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        pe = config.patch_embed
        if pe.embed_dim != dim:
            raise ValueError(f"patch_embed.embed_dim {pe.embed_dim} must equal embed_dim {dim}")
        self.depth = config.depth
        self.causal = config.causal
        self.patch_size = config.patch_size
        self.patch_embed = DinoV2Encoder(
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=dim,
            depth=pe.depth,
            num_heads=pe.num_heads,
            mlp_ratio=pe.mlp_ratio,
            num_register_tokens=pe.num_register_tokens,
        )
        self.rope = RotaryEmbedding2D(config.rope_freq)

        def make_block() -> Block:
            return Block(dim, config.num_heads, config.mlp_ratio, qk_norm=config.qk_norm, init_value=0.01)

        self.frame_blocks = nn.ModuleList(make_block() for _ in range(config.depth))
        self.global_blocks = nn.ModuleList(make_block() for _ in range(config.depth))
        # Special tokens: [1, 2 slots (first frame, other frames), count, C].
        self.camera_token = nn.Parameter(torch.randn(1, 2, 1, dim) * 1e-6)
        self.register_token = nn.Parameter(torch.randn(1, 2, config.num_register_tokens, dim) * 1e-6)
        self.patch_start_idx = 1 + config.num_register_tokens
        self.reset_buffers()
        self.register_load_state_dict_post_hook(_buffers_beside_loaded_parameters)

    def reset_buffers(self, device: torch.device | str | None = None) -> None:
        """(Re)create the ImageNet normalisation buffers [1, 1, 3, 1, 1] on ``device``."""
        self.register_buffer("_mean", torch.tensor(_IMAGENET_MEAN, device=device).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_IMAGENET_STD, device=device).view(1, 1, 3, 1, 1), persistent=False)

    def tokens_per_frame(self, height: int, width: int) -> int:
        return self.patch_start_idx + (height // self.patch_size) * (width // self.patch_size)

    def forward(
        self,
        images: Tensor,
        keep_layers: Sequence[int],
        first_frame_index: int | Sequence[int] = 0,
        kv_caches: Sequence[KVCacheLayer] | None = None,
    ) -> dict[int, Tensor]:
        """Run the trunk and return {layer: tokens [B, S, P, 2C]} for the layers in ``keep_layers``.

        images: [B, S, 3, H, W] in [0, 1], H and W multiples of the patch size.
        first_frame_index: stream position of ``images[:, 0]``, or one per batch element (streams of a batch may
            be at different positions); only position 0 uses the first-frame tokens.
        kv_caches: one cache per global block holding earlier frames of the stream (streaming); the new frames'
            keys and values are appended. Without caches, the S frames form the whole sequence.
        """
        batch, frames, channels, height, width = images.shape
        if channels != 3:
            raise ValueError(f"expected 3 image channels, got {channels}")
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {self.patch_size}")
        if kv_caches is not None and len(kv_caches) != self.depth:
            raise ValueError(f"expected {self.depth} KV caches, got {len(kv_caches)}")
        if kv_caches is not None and frames != 1:
            # Bounded caches reorder past tokens freely; that is only sound when a step holds a single frame.
            raise ValueError(f"a streaming step takes one frame per stream, got {frames}")
        keep = set(keep_layers)

        normalised = (images - self._mean) / self._std
        patches = self.patch_embed(normalised.reshape(batch * frames, 3, height, width))
        tokens = torch.cat((self._special_tokens(batch, frames, first_frame_index, patches.dtype), patches), dim=1)
        num_tokens, dim = tokens.shape[1], tokens.shape[2]

        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        positions = patch_grid_positions(grid_h, grid_w, self.patch_start_idx)
        rope_tables = self.rope.tables(
            positions, dim // self.frame_blocks[0].attn.num_heads, (grid_h, grid_w), tokens.dtype, tokens.device
        )
        # Block-causal across frames for StreamVGGT; a stream step (with caches) is causal by construction.
        frame_tokens = num_tokens if self.causal else None

        kept: dict[int, Tensor] = {}
        for layer in range(self.depth):
            tokens = self.frame_blocks[layer](tokens, rope_tables)  # [B*S, P, C]
            frame_out = tokens
            tokens = tokens.reshape(batch, frames * num_tokens, dim)
            cache = kv_caches[layer] if kv_caches is not None else None
            tokens = self.global_blocks[layer](tokens, rope_tables, frame_tokens, cache)  # [B, S*P, C]
            if layer in keep:
                kept[layer] = torch.cat(
                    (frame_out.reshape(batch, frames, num_tokens, dim), tokens.reshape(batch, frames, num_tokens, dim)),
                    dim=-1,
                )
            tokens = tokens.reshape(batch * frames, num_tokens, dim)
        return kept

    def _special_tokens(
        self, batch: int, frames: int, first_frame_index: int | Sequence[int], dtype: torch.dtype
    ) -> Tensor:
        """Camera and register tokens [B*S, 1+R, C] for frames first_frame_index .. first_frame_index+S-1."""
        special = torch.cat((self.camera_token, self.register_token), dim=2)  # [1, 2, 1+R, C]
        first = torch.as_tensor(first_frame_index).reshape(-1, 1)  # [1 or B, 1]
        slots = (torch.arange(frames) + first > 0).long().to(special.device)  # [1 or B, S]
        per_frame = special[0, slots]  # [1 or B, S, 1+R, C]
        return per_frame.expand(batch, -1, -1, -1).reshape(batch * frames, *per_frame.shape[2:]).to(dtype)


def _buffers_beside_loaded_parameters(module: Aggregator, incompatible_keys: object) -> None:
    """The normalisation buffers are not in checkpoints: a model built on the meta device and loaded with
    ``assign=True`` gets real parameters but would keep meta buffers, so they are made again where the
    parameters now are."""
    device = module.camera_token.device
    if module._mean.device != device:
        module.reset_buffers(device)
