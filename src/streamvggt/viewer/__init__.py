"""The live browser viewer (viser): watch a reconstruction grow while frames stream, then scrub through time."""

from streamvggt.viewer.command import ViewSummary, finish_stream, open_viewer, open_viewer_for, view
from streamvggt.viewer.load import is_reconstruction, load_reconstruction
from streamvggt.viewer.scene_state import SceneState, Selection, ViewFrame, make_view_frame, view_frame_from_result
from streamvggt.viewer.server import LiveViewer

__all__ = [
    "LiveViewer",
    "SceneState",
    "Selection",
    "ViewFrame",
    "ViewSummary",
    "finish_stream",
    "is_reconstruction",
    "load_reconstruction",
    "make_view_frame",
    "open_viewer",
    "open_viewer_for",
    "view",
    "view_frame_from_result",
]
