"""Reading frames (images, video, cameras, streams) and writing reconstructions (PLY, GLB, COLMAP, TUM, depth)."""

from streamvggt.io.errors import InputError, OutputError
from streamvggt.io.inputs.preprocess import Preprocessor, to_rgb
from streamvggt.io.inputs.sources import Frame, FrameSource, open_source, read_frames

__all__ = ["Frame", "FrameSource", "InputError", "OutputError", "Preprocessor", "open_source", "read_frames", "to_rgb"]
