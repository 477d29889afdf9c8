"""Smoke example: a small randomly initialised StreamVGGT on random frames, printing every output's shape.

Replaced by ``streamvggt demo`` once the bundled model lands; useful meanwhile to check an install.
"""

import logging

import torch

from streamvggt import ModelConfig, StreamVGGT

logging.basicConfig(level=logging.INFO, format="%(message)s")
log = logging.getLogger("smoke")

torch.manual_seed(0)
model = StreamVGGT(ModelConfig.preset("tiny")).eval()
frames = torch.rand(1, 4, 3, 112, 154)  # [B, S, 3, H, W], H and W multiples of 14
queries = torch.tensor([[[20.0, 30.0], [100.0, 60.0]]])  # [B, N, 2] pixels in frame 0
with torch.no_grad():
    out = model(frames, query_points=queries)
for key, value in out.items():
    log.info("%-18s %s", key, tuple(value.shape))
