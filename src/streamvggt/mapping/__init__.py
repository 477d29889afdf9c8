"""The long-video map beside the stream: keyframes, revisit detection, loop verification, the Sim(3) pose graph.

``GlobalMap.add(result)`` per frame, ``finish()`` at the end, then ``poses()``, ``scales()``, ``loops`` and
``correct(result)``; see docs/long_videos.md.
"""

from streamvggt.mapping.graph import Edge, PoseGraph, SolveReport
from streamvggt.mapping.map import GlobalMap, Loop, Predictor
from streamvggt.mapping.options import MapOptions
from streamvggt.mapping.predictor import FramePrediction, model_predictor
from streamvggt.mapping.sim3 import Sim3, SimFit, fit_sim3

__all__ = [
    "Edge",
    "FramePrediction",
    "GlobalMap",
    "Loop",
    "MapOptions",
    "PoseGraph",
    "Predictor",
    "Sim3",
    "SimFit",
    "SolveReport",
    "fit_sim3",
    "model_predictor",
]
