"""2D rotary position embedding (RoPE) over a patch grid, as used by VGGT.

Each head's channels are split in two halves: the first half is rotated by the token's row, the second by its
column. Within each half the usual rotate-half RoPE applies with frequencies ``base ** (-2i / half)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RotaryEmbedding2D(nn.Module):
    """Builds and applies per-token cos/sin tables for a grid of (row, col) positions.

    Tables are computed from host-side integer positions and cached per (grid, dtype, device), so applying RoPE
    never reads positions back from the accelerator.
    """

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = base
        self._tables: dict[tuple, tuple[Tensor, Tensor]] = {}

    def tables(
        self, positions: Tensor, head_dim: int, key: tuple, dtype: torch.dtype, device: torch.device
    ) -> tuple[Tensor, Tensor]:
        """cos/sin tables [N, head_dim] for integer ``positions`` [N, 2] (row, col); cached under ``key``."""
        cache_key = (key, head_dim, dtype, device)
        cached = self._tables.get(cache_key)
        if cached is not None:
            return cached
        half = head_dim // 2
        exponents = torch.arange(0, half, 2, dtype=torch.float32) / half
        inv_freq = 1.0 / (self.base**exponents)  # [half/2]
        angles = positions.to(torch.float32)[:, :, None] * inv_freq  # [N, 2, half/2]
        angles = torch.cat((angles, angles), dim=-1)  # [N, 2, half]: rotate-half layout per axis
        angles = angles.reshape(positions.shape[0], head_dim)  # rows for the first half, cols for the second
        cos, sin = angles.cos().to(device=device, dtype=dtype), angles.sin().to(device=device, dtype=dtype)
        self._tables[cache_key] = (cos, sin)
        return cos, sin

    @staticmethod
    def apply(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Rotate ``x`` [..., N, D] with tables [N, D]; rotation acts within each axis' half of D."""
        q1, q2, q3, q4 = x.chunk(4, dim=-1)
        rotated = torch.cat((-q2, q1, -q4, q3), dim=-1)
        return x * cos + rotated * sin


def patch_grid_positions(grid_h: int, grid_w: int, num_special: int) -> Tensor:
    """(row, col) positions [num_special + grid_h*grid_w, 2] for one frame's tokens.

    Special tokens (camera, registers) sit at (0, 0), which RoPE leaves unrotated; patches count from 1.
    """
    rows = torch.arange(grid_h).repeat_interleave(grid_w) + 1
    cols = torch.arange(grid_w).repeat(grid_h) + 1
    patches = torch.stack((rows, cols), dim=-1)
    return torch.cat((torch.zeros(num_special, 2, dtype=patches.dtype), patches), dim=0)
