"""Model configuration: one schema for VGGT (full attention) and StreamVGGT (block-causal).

The schema mirrors ``tests/fixtures/README.md``; the 1B presets reproduce the official checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class PatchEmbedConfig:
    """DINOv2 ViT with registers, used as the patch embedding."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4


@dataclass
class CameraHeadConfig:
    trunk_depth: int = 4
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_iterations: int = 4


@dataclass
class DPTHeadConfig:
    features: int = 256
    out_channels: list[int] = field(default_factory=lambda: [256, 512, 1024, 1024])
    intermediate_layer_idx: list[int] = field(default_factory=lambda: [4, 11, 17, 23])


@dataclass
class TrackHeadConfig:
    features: int = 128
    out_channels: list[int] = field(default_factory=lambda: [256, 512, 1024, 1024])
    iters: int = 4
    stride: int = 2
    corr_levels: int = 7
    corr_radius: int = 4
    hidden_size: int = 384
    tracker_depth: int = 6


_SECTIONS = {
    "patch_embed": PatchEmbedConfig,
    "camera_head": CameraHeadConfig,
    "dpt_head": DPTHeadConfig,
    "track_head": TrackHeadConfig,
}


@dataclass
class ModelConfig:
    """Hyperparameters of the network. Defaults are the official 1B StreamVGGT."""

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    rope_freq: float = 100.0
    qk_norm: bool = True
    causal: bool = True
    patch_embed: PatchEmbedConfig = field(default_factory=PatchEmbedConfig)
    camera_head: CameraHeadConfig = field(default_factory=CameraHeadConfig)
    dpt_head: DPTHeadConfig = field(default_factory=DPTHeadConfig)
    track_head: TrackHeadConfig = field(default_factory=TrackHeadConfig)

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if (self.embed_dim // self.num_heads) % 4:
            raise ValueError("2D RoPE needs a head dimension divisible by 4")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if max(self.dpt_head.intermediate_layer_idx) >= self.depth:
            raise ValueError(f"dpt_head.intermediate_layer_idx must be < depth ({self.depth})")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from a plain dict (as in ``tiny.json``); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            section = _SECTIONS.get(key)
            if section is not None and isinstance(value, dict):
                section_known = {f.name for f in dataclasses.fields(section)}
                bad = set(value) - section_known
                if bad:
                    raise ValueError(f"unknown keys in model config section '{key}': {sorted(bad)}")
                value = section(**value)
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def preset(cls, name: str) -> ModelConfig:
        """A named configuration: ``vggt-1b``, ``streamvggt-1b``, ``default`` (the bundled model), ``small``
        (benchmarks) or ``tiny`` (tests)."""
        try:
            factory = PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown preset '{name}'; known: {', '.join(sorted(PRESETS))}") from None
        return factory()


def _tiny() -> ModelConfig:
    """The architecture of ``tests/fixtures/parity/tiny.json``: every module, narrow widths."""
    return ModelConfig(
        embed_dim=32,
        num_heads=2,
        patch_embed=PatchEmbedConfig(embed_dim=32, depth=2, num_heads=2),
        camera_head=CameraHeadConfig(trunk_depth=2, num_heads=2),
        dpt_head=DPTHeadConfig(features=16, out_channels=[8, 16, 32, 32]),
        track_head=TrackHeadConfig(
            features=16,
            out_channels=[8, 16, 32, 32],
            iters=2,
            corr_levels=3,
            corr_radius=2,
            hidden_size=32,
            tracker_depth=2,
        ),
    )


def _small() -> ModelConfig:
    """A ViT-S-sized model (embed 384, all 24 block pairs): the CPU benchmark configuration."""
    return ModelConfig(
        embed_dim=384,
        num_heads=6,
        patch_embed=PatchEmbedConfig(embed_dim=384, depth=12, num_heads=6),
        camera_head=CameraHeadConfig(num_heads=6),
        dpt_head=DPTHeadConfig(features=64, out_channels=[48, 96, 192, 384]),
        track_head=TrackHeadConfig(features=32, out_channels=[48, 96, 192, 384], hidden_size=96, tracker_depth=2),
    )


def _default() -> ModelConfig:
    """The architecture of the bundled default model: 8.8M parameters, small enough to ship and to train on a CPU."""
    return ModelConfig(
        embed_dim=128,
        depth=8,
        num_heads=2,
        patch_embed=PatchEmbedConfig(embed_dim=128, depth=3, num_heads=2),
        camera_head=CameraHeadConfig(trunk_depth=2, num_heads=2),
        dpt_head=DPTHeadConfig(features=48, out_channels=[32, 64, 128, 128], intermediate_layer_idx=[1, 3, 5, 7]),
        track_head=TrackHeadConfig(
            features=32, out_channels=[32, 64, 128, 128], corr_levels=3, corr_radius=3, hidden_size=96, tracker_depth=2
        ),
    )


PRESETS = {
    "streamvggt-1b": lambda: ModelConfig(causal=True),
    "vggt-1b": lambda: ModelConfig(causal=False),
    "default": _default,
    "small": _small,
    "tiny": _tiny,
}
