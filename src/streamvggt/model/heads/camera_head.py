"""Camera head: iterative refinement of the 9-d pose encoding from each frame's camera token."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamvggt.config import CameraHeadConfig
from streamvggt.layers import Block, KVCacheLayer, Mlp

POSE_ENCODING_DIM = 9  # translation (3), quaternion xyzw (4), fov_h, fov_w


def activate_pose(raw: Tensor) -> Tensor:
    """Raw accumulator [..., 9] -> encoding: translation and quaternion as-is, field of view through ReLU."""
    return torch.cat((raw[..., :7], F.relu(raw[..., 7:])), dim=-1)


class CameraHead(nn.Module):
    """A small transformer trunk over the frames' camera tokens, run ``num_iterations`` times.

    Each iteration conditions the trunk (adaLN-style shift/scale/gate) on the previous iteration's estimate and
    adds a predicted delta. With ``causal`` the trunk is causal over frames, as StreamVGGT was trained.
    """

    def __init__(self, dim_in: int, config: CameraHeadConfig, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.num_iterations = config.num_iterations
        self.trunk_depth = config.trunk_depth
        self.trunk = nn.Sequential(
            *(Block(dim_in, config.num_heads, config.mlp_ratio, init_value=0.01) for _ in range(config.trunk_depth))
        )
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_ENCODING_DIM))
        self.embed_pose = nn.Linear(POSE_ENCODING_DIM, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, POSE_ENCODING_DIM)

    def forward(self, camera_tokens: Tensor, kv_caches: Sequence[Sequence[KVCacheLayer]] | None = None) -> list[Tensor]:
        """camera_tokens: [B, S, C] (token 0 of the last aggregator layer) -> one [B, S, 9] encoding per iteration.

        kv_caches: ``[iteration][block]`` caches of earlier frames (streaming). Each iteration has its own caches
        because in training iteration k of frame t attends to iteration-k tokens of frames <= t only.
        """
        batch, frames, _ = camera_tokens.shape
        tokens = self.token_norm(camera_tokens)
        normed = self.adaln_norm(tokens)
        frame_tokens = 1 if self.causal else None
        raw: Tensor | None = None
        encodings = []
        for iteration in range(self.num_iterations):
            condition = self.empty_pose_tokens.expand(batch, frames, -1) if raw is None else raw.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(condition)).chunk(3, dim=-1)
            x = gate * (normed * (1 + scale) + shift) + tokens
            for index, block in enumerate(self.trunk):
                cache = kv_caches[iteration][index] if kv_caches is not None else None
                x = block(x, frame_tokens=frame_tokens, kv_cache=cache)
            delta = self.pose_branch(self.trunk_norm(x))
            raw = delta if raw is None else raw + delta
            encodings.append(activate_pose(raw))
        return encodings
