"""CoTracker-style point tracker of the track head.

Tracks start at the query point in every frame and are refined ``iters`` times: each round reads local
correlations from a feature pyramid around the current estimate, and a transformer over (time x tracks)
predicts a coordinate and feature update per track and frame. Parameter names follow the official
VGGT / StreamVGGT checkpoints (including their spelling).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_HEADS = 8
MLP_RATIO = 4
NUM_VIRTUAL_TRACKS = 64


def bilinear_sample(fmap: Tensor, coords: Tensor, padding_mode: str = "border") -> Tensor:
    """Sample ``fmap`` [B, C, H, W] at pixel coordinates ``coords`` [B, h, w, 2] (x, y) -> [B, C, h, w].

    Pixel (0, 0) is the centre of the top-left cell and (W-1, H-1) the centre of the bottom-right one.
    Positions are treated as constants: no gradient flows into them.
    """
    height, width = fmap.shape[-2:]
    to_unit = torch.tensor([2 / max(width - 1, 1), 2 / max(height - 1, 1)], device=fmap.device, dtype=fmap.dtype)
    grid = coords.detach().to(fmap) * to_unit - 1
    return F.grid_sample(fmap, grid, align_corners=True, padding_mode=padding_mode)


def sample_points(fmap: Tensor, points: Tensor) -> Tensor:
    """Bilinearly read ``fmap`` [B, C, H, W] at ``points`` [B, N, 2] (x, y pixels) -> [B, N, C]."""
    return bilinear_sample(fmap, points[:, :, None]).squeeze(-1).transpose(1, 2)


def flow_embedding(flow: Tensor, dim: int) -> Tensor:
    """Sinusoidal code of 2D offsets: [..., 2] -> [..., 2 * dim].

    ``dim`` channels per axis (x first), sin and cos interleaved. The frequencies grow linearly
    (0, 2000/dim, 4000/dim, ...), which is what the checkpoints were trained with.
    """
    freqs = torch.arange(0, dim, 2, device=flow.device, dtype=torch.float32) * (1000.0 / dim)
    angles = flow[..., None] * freqs  # [..., 2, dim / 2]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-3)


def grid_sincos_embedding(dim: int, height: int, width: int) -> Tensor:
    """Fixed 2D sin-cos position code of a pixel grid -> [1, dim, H, W] (float32, on the CPU).

    The first ``dim / 2`` channels encode x, the rest y; each half is [sin | cos] over geometric frequencies
    with base 10000. Computed in float64 (hence on the CPU: MPS has no float64) and rounded once.
    """
    if dim % 4:
        raise ValueError(f"grid embedding dimension must be a multiple of 4, got {dim}")
    per_axis = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(per_axis // 2, dtype=torch.float64) / (per_axis / 2))
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    axes = []
    for pos in (xs, ys):
        angles = pos.reshape(-1, 1) * omega
        axes.append(torch.cat([angles.sin(), angles.cos()], dim=-1))
    emb = torch.cat(axes, dim=-1).float()  # [H * W, dim]
    return emb.reshape(height, width, dim).permute(2, 0, 1)[None]


class CorrelationPyramid:
    """Feature maps at ``levels`` resolutions (2x2 average pooling) for windowed correlation lookups.

    Args:
        fmaps: [B, S, C, H, W] feature maps of every frame.
        levels: number of pyramid levels, the first at full resolution.
        radius: a lookup reads a (2 * radius + 1)^2 window per level.
    """

    def __init__(self, fmaps: Tensor, levels: int, radius: int) -> None:
        self.levels = [fmaps]
        for _ in range(levels - 1):
            b, s, c, h, w = fmaps.shape
            pooled = F.avg_pool2d(fmaps.reshape(b * s, c, h, w), kernel_size=2, stride=2)
            fmaps = pooled.reshape(b, s, c, *pooled.shape[-2:])
            self.levels.append(fmaps)
        offsets = torch.arange(-radius, radius + 1, device=fmaps.device, dtype=fmaps.dtype)
        # The x offset is the slow (row) axis of the window and y the fast one: the trained corr_mlp
        # expects its inputs in this order.
        dx, dy = torch.meshgrid(offsets, offsets, indexing="ij")
        self.window = torch.stack([dx, dy], dim=-1)  # [2r+1, 2r+1, 2]

    def sample(self, feats: Tensor, coords: Tensor) -> Tensor:
        """Correlate ``feats`` [B, S, N, C] with each level around ``coords`` [B, S, N, 2] (level-0 pixels).

        Returns [B, S, N, levels * (2r+1)^2]: scaled dot products, bilinearly read, zero outside the map.
        """
        b, s, n, c = feats.shape
        window = self.window.to(coords)
        out = []
        for level, fmaps in enumerate(self.levels):
            height, width = fmaps.shape[-2:]
            corr = torch.matmul(feats, fmaps.reshape(b, s, c, height * width)) / math.sqrt(c)
            # Coordinates are halved per level without the half-pixel shift that pooling implies,
            # as in training.
            centres = coords.reshape(b * s * n, 1, 1, 2) / 2**level
            lookup = bilinear_sample(corr.reshape(b * s * n, 1, height, width), centres + window, "zeros")
            out.append(lookup.reshape(b, s, n, -1))
        return torch.cat(out, dim=-1)


class FeedForward(nn.Module):
    """Two-layer GELU MLP over the last axis."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SelfAttentionBlock(nn.Module):
    """Multi-head self-attention and MLP over [B, L, C] sequences."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, NUM_HEADS, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, dim * MLP_RATIO, dim)

    def forward(self, x: Tensor) -> Tensor:
        # The residual branch starts from the normalised input (not the raw one): the weights were
        # trained this way. need_weights keeps its default: that code path is the reference's, while the
        # fused one differs in the last bits, which the refinement loop amplifies.
        x = self.norm1(x)
        x = x + self.attn(x, x, x)[0]
        return x + self.mlp(self.norm2(x))


class CrossAttentionBlock(nn.Module):
    """Queries [B, L, C] attend to a context [B, M, C], then an MLP."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, NUM_HEADS, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, dim * MLP_RATIO, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        # As in SelfAttentionBlock: residual taken after norm1, default attention path.
        x = self.norm1(x)
        context = self.norm_context(context)
        x = x + self.cross_attn(x, context, context)[0]
        return x + self.mlp(self.norm2(x))


class UpdateFormer(nn.Module):
    """Transformer that predicts a per-frame update for every track.

    Each layer attends along time within a track, then across tracks. Tracks never attend to each other
    directly: they exchange information through ``NUM_VIRTUAL_TRACKS`` learned virtual tracks, so the cost
    is linear in the number of tracks.
    """

    def __init__(self, input_dim: int, hidden_size: int, output_dim: int, depth: int) -> None:
        super().__init__()
        self.input_norm = nn.LayerNorm(input_dim)
        self.input_transform = nn.Linear(input_dim, hidden_size)
        self.output_norm = nn.LayerNorm(hidden_size)
        self.flow_head = nn.Linear(hidden_size, output_dim)
        # Attribute name (typo included) is the checkpoints' key.
        self.virual_tracks = nn.Parameter(torch.randn(1, NUM_VIRTUAL_TRACKS, 1, hidden_size))
        self.time_blocks = nn.ModuleList(SelfAttentionBlock(hidden_size) for _ in range(depth))
        self.space_virtual_blocks = nn.ModuleList(SelfAttentionBlock(hidden_size) for _ in range(depth))
        self.space_point2virtual_blocks = nn.ModuleList(CrossAttentionBlock(hidden_size) for _ in range(depth))
        self.space_virtual2point_blocks = nn.ModuleList(CrossAttentionBlock(hidden_size) for _ in range(depth))
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # Near-zero updates at the start of training keep the tracks at their initial positions.
        nn.init.trunc_normal_(self.flow_head.weight, std=0.001)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` [B, N, S, input_dim] (tracks x frames) -> [B, N, S, output_dim]."""
        tokens = self.input_transform(self.input_norm(x))
        b, n, s, c = tokens.shape
        total = n + NUM_VIRTUAL_TRACKS
        h = torch.cat([tokens, self.virual_tracks.expand(b, -1, s, -1)], dim=1)  # [B, N + V, S, C]
        layers = zip(
            self.time_blocks,
            self.space_virtual2point_blocks,
            self.space_virtual_blocks,
            self.space_point2virtual_blocks,
            strict=True,
        )
        for time_block, gather, mix, scatter in layers:
            h = time_block(h.reshape(b * total, s, c))
            h = h.reshape(b, total, s, c).transpose(1, 2).reshape(b * s, total, c)  # one sequence per frame
            points, virtual = h[:, :n], h[:, n:]
            virtual = mix(gather(virtual, points))
            points = scatter(points, virtual)
            h = torch.cat([points, virtual], dim=1).reshape(b, s, total, c).transpose(1, 2)
        return self.flow_head(self.output_norm(h[:, :n] + tokens))


class Tracker(nn.Module):
    """Iterative point tracker on [B, S, C, H, W] feature maps (the official ``BaseTrackerPredictor``).

    Args:
        latent_dim: channels of the feature maps and of the per-track features.
        hidden_size: width of the update transformer and of the correlation MLP.
        depth: number of update-transformer layers (each: time attention, then attention across tracks).
        stride: image pixels per feature-map pixel.
        corr_levels: correlation pyramid levels.
        corr_radius: correlation window radius in feature-map pixels, per level.
        max_scale: divisor that brings raw flows (feature-map pixels) to about unit scale.
        predict_conf: also predict a per-point confidence.
    """

    def __init__(
        self,
        latent_dim: int,
        hidden_size: int,
        depth: int,
        stride: int,
        corr_levels: int,
        corr_radius: int,
        max_scale: float = 518,
        predict_conf: bool = True,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.stride = stride
        self.corr_levels = corr_levels
        self.corr_radius = corr_radius
        self.max_scale = max_scale
        # Per frame and track: flow code (latent_dim + 4), correlation code and track feature (latent_dim each).
        self.token_dim = 3 * latent_dim + 4

        self.corr_mlp = FeedForward(corr_levels * (2 * corr_radius + 1) ** 2, hidden_size, latent_dim)
        # Learned tokens that mark the query frame (0) and the other frames (1).
        self.query_ref_token = nn.Parameter(torch.randn(1, 2, self.token_dim))
        self.updateformer = UpdateFormer(
            input_dim=self.token_dim, hidden_size=hidden_size, output_dim=latent_dim + 2, depth=depth
        )
        self.fmap_norm = nn.LayerNorm(latent_dim)
        self.ffeat_norm = nn.GroupNorm(1, latent_dim)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent_dim, 1))
        self.conf_predictor = nn.Sequential(nn.Linear(latent_dim, 1)) if predict_conf else None

    def forward(
        self,
        query_points: Tensor,
        fmaps: Tensor,
        iters: int,
        initial_coords: Tensor | None = None,
        pinned_frames: int = 1,
    ) -> tuple[list[Tensor], Tensor, Tensor | None]:
        """Track ``query_points`` [B, N, 2] (x, y image pixels in frame 0) through ``fmaps`` [B, S, C, H', W'].

        ``initial_coords`` [B, S, N, 2] (image pixels) starts the refinement from a per-frame estimate instead of
        the query point in every frame; the first ``pinned_frames`` frames keep their initial coordinates through
        all iterations. The defaults pin frame 0, the query frame, to the query point; ``initial_coords[:, 0]``
        should be the query point too, since flows are measured from frame 0. Streaming uses both arguments to
        refine only the newest frame against tracks it has already emitted (``streamvggt.streaming.tracks``).

        Returns the coordinates after each iteration (list of [B, S, N, 2], image pixels), and the
        visibility and confidence [B, S, N] in (0, 1) after the last one (confidence None if not predicted).
        """
        b, n, _ = query_points.shape
        s, c, height, width = fmaps.shape[1:]
        if initial_coords is not None and tuple(initial_coords.shape) != (b, s, n, 2):
            raise ValueError(f"initial_coords must be [{b}, {s}, {n}, 2], got {tuple(initial_coords.shape)}")
        if not 1 <= pinned_frames <= s:
            raise ValueError(f"pinned_frames must be in [1, {s}], got {pinned_frames}")
        fmaps = self.fmap_norm(fmaps.movedim(2, -1)).movedim(-1, 2)

        queries = query_points / float(self.stride)  # feature-map pixels
        coords = queries[:, None].expand(b, s, n, 2) if initial_coords is None else initial_coords / float(self.stride)
        pinned = coords[:, :pinned_frames]
        # A real copy, not expand(): matmul with a stride-0 operand rounds differently from the reference.
        track_feats = sample_points(fmaps[:, 0], queries)[:, None].repeat(1, s, 1, 1)
        pyramid = CorrelationPyramid(fmaps, self.corr_levels, self.corr_radius)

        # Constant over iterations: where each query lies in frame 0, and which frame is the query frame.
        grid_code = grid_sincos_embedding(self.token_dim, height, width).to(fmaps.device)
        query_pos = sample_points(grid_code.expand(b, -1, -1, -1), queries)[:, :, None]  # [B, N, 1, D]
        frame_tokens = torch.cat([self.query_ref_token[:, :1], self.query_ref_token[:, 1:].expand(-1, s - 1, -1)], 1)

        coord_preds = []
        for _ in range(iters):
            # Gradients do not flow from one iteration's estimate into the next.
            coords = coords.detach()
            # Linear layers see the reference's memory layouts ([B*N, S, *] from a reshape, which is a view
            # for B=1 and a copy otherwise): BLAS rounds differently per layout, and the refinement loop
            # amplifies last-bit differences.
            corr = pyramid.sample(track_feats, coords).transpose(1, 2).reshape(b * n, s, -1)
            corr = self.corr_mlp(corr).reshape(b, n, s, c)
            flows = (coords - coords[:, :1]).transpose(1, 2)
            flow_code = flow_embedding(flows, self.latent_dim // 2)
            flow_code = torch.cat([flow_code, flows / self.max_scale, flows / self.max_scale], dim=-1)
            x = torch.cat([flow_code, corr, track_feats.transpose(1, 2)], dim=-1)  # [B, N, S, D]
            x = x + query_pos + frame_tokens.to(x)

            delta = self.updateformer(x)  # [B, N, S, 2 + C]
            feat_update = self.ffeat_updater(self.ffeat_norm(delta[..., 2:].reshape(-1, c)))
            track_feats = track_feats + feat_update.reshape(b, n, s, c).transpose(1, 2)
            coords = coords + delta[..., :2].transpose(1, 2)
            # Pinned frames (by default the query frame, at the query point) keep their coordinates.
            coords = torch.cat([pinned, coords[:, pinned_frames:]], dim=1)
            coord_preds.append(coords * self.stride)

        final_feats = track_feats.reshape(-1, c)
        vis = torch.sigmoid(self.vis_predictor(final_feats).reshape(b, s, n))
        conf = None if self.conf_predictor is None else torch.sigmoid(self.conf_predictor(final_feats).reshape(b, s, n))
        return coord_preds, vis, conf
