"""Transformer building blocks shared by the patch embed, the aggregator and the camera head."""

from streamvggt.layers.attention import Attention, attend
from streamvggt.layers.block import Block, LayerScale, Mlp
from streamvggt.layers.dinov2 import DinoV2Encoder
from streamvggt.layers.kv_cache import KVCacheLayer
from streamvggt.layers.rope import RotaryEmbedding2D

__all__ = [
    "Attention",
    "Block",
    "DinoV2Encoder",
    "KVCacheLayer",
    "LayerScale",
    "Mlp",
    "RotaryEmbedding2D",
    "attend",
]
