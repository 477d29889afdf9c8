"""streamvggt: streaming 4D reconstruction with StreamVGGT (causal VGGT with a key/value cache)."""

from streamvggt.config import ModelConfig
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.weights import CheckpointError, load_model

__all__ = ["CheckpointError", "ModelConfig", "StreamVGGT", "load_model"]
__version__ = "0.1.0"
