"""DINOv2 ViT with register tokens, used as VGGT's patch embedding.

Only the final-LayerNorm patch tokens are used downstream; the cls and register outputs are dropped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamvggt.layers.block import Block


class ConvPatchify(nn.Module):
    """Non-overlapping ``patch_size`` convolution: [N, 3, H, W] -> [N, (H/p)(W/p), C]."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2Encoder(nn.Module):
    """Token order inside: [cls, registers, patches]. Returns normalised patch tokens [N, h*w, C]."""

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        num_register_tokens: int,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
        # Unused by the forward pass but part of the official checkpoints; frozen as in the reference.
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim), requires_grad=False)
        self.patch_embed = ConvPatchify(patch_size, embed_dim)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, init_value=1.0, norm_eps=1e-6) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._pos_cache: dict[tuple, Tensor] = {}
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        nn.init.normal_(self.register_tokens, std=1e-6)

    def position_embedding(self, grid_h: int, grid_w: int, dtype: torch.dtype) -> Tensor:
        """Learned absolute embedding [1, 1 + grid_h*grid_w, C], resized bicubically (antialiased) to the grid.

        Cached per grid while the embedding cannot receive gradients (it is frozen in training). A compiled step
        resizes it inside its graph instead: the cache key reads the parameter's version counter, which a graph
        cannot, and the resize is small beside one block.
        """
        if torch.compiler.is_compiling():
            return self._resize_position_embedding(grid_h, grid_w).to(dtype)
        cacheable = not (self.pos_embed.requires_grad and torch.is_grad_enabled())
        key = (grid_h, grid_w, dtype, self.pos_embed.device, self.pos_embed._version)
        if cacheable and key in self._pos_cache:
            return self._pos_cache[key]
        embed = self._resize_position_embedding(grid_h, grid_w).to(dtype)
        if cacheable:
            self._pos_cache = {key: embed}  # one grid at a time: streams keep their size
        return embed

    def _resize_position_embedding(self, grid_h: int, grid_w: int) -> Tensor:
        trained = self.pos_embed.shape[1] - 1
        side = math.isqrt(trained)
        if grid_h == grid_w == side:
            return self.pos_embed
        dim = self.pos_embed.shape[-1]
        table = self.pos_embed.float()
        patches = table[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        patches = F.interpolate(patches, size=(grid_h, grid_w), mode="bicubic", antialias=True)
        patches = patches.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim)
        return torch.cat((table[:, :1], patches), dim=1)

    def forward(self, images: Tensor) -> Tensor:
        """images: [N, 3, H, W] (ImageNet-normalised) -> patch tokens [N, (H/p)(W/p), C]."""
        n, _, height, width = images.shape
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(n, -1, -1), x), dim=1)
        x = x + self.position_embedding(grid_h, grid_w, x.dtype)
        x = torch.cat((x[:, :1], self.register_tokens.expand(n, -1, -1), x[:, 1:]), dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 + self.num_register_tokens :]
