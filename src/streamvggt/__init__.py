"""streamvggt: streaming 4D reconstruction with StreamVGGT (causal VGGT with a key/value cache)."""

from streamvggt.config import ModelConfig
from streamvggt.model.streamvggt import StreamVGGT

__all__ = ["ModelConfig", "StreamVGGT"]
__version__ = "0.1.0"
