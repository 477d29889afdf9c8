"""streamvggt: streaming 4D reconstruction with StreamVGGT (causal VGGT with a key/value cache)."""

from streamvggt.config import ModelConfig
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.reconstruction import ReconstructionSummary, Reconstructor, reconstruct
from streamvggt.results import FrameResult
from streamvggt.weights import CheckpointError, load_model

__all__ = [
    "CheckpointError",
    "FrameResult",
    "ModelConfig",
    "ReconstructionSummary",
    "Reconstructor",
    "StreamVGGT",
    "load_model",
    "reconstruct",
]
__version__ = "0.1.0"
