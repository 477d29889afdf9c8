"""The Sim(3) pose graph over keyframes, solved with GTSAM (Levenberg-Marquardt on ``Similarity3``).

GTSAM is the field's factor-graph library and ships CPU wheels (``pip install gtsam``, the ``mapping`` extra); its
sparse Cholesky solves a chain of 1,000 Sim(3) nodes with loops in milliseconds per iteration (see
docs/long_videos.md for the measurement).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from streamvggt.extras import require
from streamvggt.mapping.sim3 import Sim3

log = logging.getLogger(__name__)


def _gtsam():
    """GTSAM, an optional extra: MissingExtraError (one line naming the install) when it is missing."""
    return require("gtsam", "mapping")


def to_gtsam(transform: Sim3):
    """GTSAM's Similarity3 maps x -> s (R x + t'), so t' = t / s."""
    gtsam = _gtsam()
    return gtsam.Similarity3(gtsam.Rot3(transform.rotation), transform.translation / transform.scale, transform.scale)


def from_gtsam(value) -> Sim3:
    scale = float(value.scale())
    return Sim3(scale, np.asarray(value.rotation().matrix()), np.asarray(value.translation()) * scale)


@dataclass
class Edge:
    """A relative constraint between keyframes ``i`` and ``j``: ``measurement`` ~ T_i^-1 T_j (j's camera into i's).

    sigmas: standard deviations [rotation rad (3), translation in i's units (3), log-scale (1)] in GTSAM's order.
    robust: a Cauchy kernel of this width in sigmas (loop edges: a wrong loop loses its pull), or None.
    """

    i: int
    j: int
    measurement: Sim3
    sigmas: np.ndarray
    robust: float | None = None


@dataclass(frozen=True)
class SolveReport:
    iterations: int
    seconds: float
    initial_error: float
    final_error: float


class PoseGraph:
    """Nodes are world-from-camera similarities T_k of keyframes; node 0 is fixed (the stream's first camera)."""

    def __init__(self) -> None:
        self.nodes: list[Sim3] = []
        self.edges: list[Edge] = []

    def add_node(self, estimate: Sim3) -> int:
        self.nodes.append(estimate)
        return len(self.nodes) - 1

    def add_edge(self, edge: Edge) -> None:
        if not (0 <= edge.i < len(self.nodes) and 0 <= edge.j < len(self.nodes)) or edge.i == edge.j:
            raise ValueError(f"edge ({edge.i}, {edge.j}) needs two distinct nodes among {len(self.nodes)}")
        self.edges.append(edge)

    def optimise(self, max_iterations: int = 50, max_seconds: float = 2.0) -> SolveReport:
        """Levenberg-Marquardt from the current estimates, stopped after ``max_iterations`` or ``max_seconds``
        (checked between iterations, so a frame loop's stall is bounded); the estimates are replaced."""
        gtsam = _gtsam()
        graph = gtsam.NonlinearFactorGraph()
        values = gtsam.Values()
        for key, node in enumerate(self.nodes):
            values.insert(key, to_gtsam(node))
        graph.add(gtsam.NonlinearEqualitySimilarity3(0, to_gtsam(self.nodes[0])))
        for edge in self.edges:
            noise = gtsam.noiseModel.Diagonal.Sigmas(np.asarray(edge.sigmas, dtype=np.float64))
            if edge.robust is not None:
                noise = gtsam.noiseModel.Robust.Create(gtsam.noiseModel.mEstimator.Cauchy.Create(edge.robust), noise)
            graph.add(gtsam.BetweenFactorSimilarity3(edge.i, edge.j, to_gtsam(edge.measurement), noise))
        params = gtsam.LevenbergMarquardtParams()
        params.setRelativeErrorTol(1e-9)
        params.setAbsoluteErrorTol(1e-12)
        optimizer = gtsam.LevenbergMarquardtOptimizer(graph, values, params)
        start = time.perf_counter()
        initial = float(graph.error(values))
        previous, iterations = initial, 0
        # Iterated by hand (not optimize()) so that the wall-clock bound is ours.
        while iterations < max_iterations and time.perf_counter() - start < max_seconds:
            optimizer.iterate()
            iterations += 1
            error = float(optimizer.error())
            if previous - error <= 1e-9 * max(previous, 1e-12) or error < 1e-14:
                break
            previous = error
        result = optimizer.values()
        self.nodes = [from_gtsam(result.atSimilarity3(key)) for key in range(len(self.nodes))]
        report = SolveReport(iterations, time.perf_counter() - start, initial, float(optimizer.error()))
        log.debug("pose graph: %d nodes, %d edges, %s", len(self.nodes), len(self.edges), report)
        return report
