"""Long-video map benchmark (issue 21): per-frame map cost, one pose-graph optimisation, memory, ATE.

    python benchmarks/long_video.py [--frames 5000] [--memory-frames 10000] [--keyframes 1000]

Measures, on the CPU at hand (predictor calls excluded from the map cost and counted apart):
- map cost per frame amortised over --frames frames of a 518x294 stream walking in circles (target <= 5 ms);
- one Levenberg-Marquardt optimisation over a --keyframes-node Sim(3) graph with loops (target < 1 s);
- bytes per keyframe record (target <= 64 KB) and the traced peak over --memory-frames frames (flat: it grows by
  keyframe records and per-frame poses only);
- ATE after Sim(3) alignment, with and without loop closure, on the rendered trajectories of the tests.
Prints a table and writes benchmarks/results/long_video.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from streamvggt.mapping import Edge, GlobalMap, MapOptions, PoseGraph, Sim3
from streamvggt.mapping.predictor import FramePrediction
from streamvggt.mapping.simulate import TRAJECTORIES, Drift, ate_rmse, make_sequence
from streamvggt.results import FrameResult

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = (294, 518)  # H, W of a 16:9 video frame as the model sees it


PERIOD = 400  # frames per circle: 0.9 degrees per frame, a walk-through at 30 fps


def circle_pose(index: int) -> np.ndarray:
    """Camera-from-world [3, 4] of frame ``index`` on a circle of radius 1 that slowly drifts upwards."""
    angle = 2 * math.pi * index / PERIOD
    rot = np.array([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0], [-math.sin(angle), 0, math.cos(angle)]])
    return Sim3(1.0, rot, np.array([math.cos(angle), 0.0001 * index, math.sin(angle)])).extrinsic()


def synthetic_stream(count: int):
    """FrameResults of one rendered 518x294 view, shifted sideways per frame (each place looks different), with
    its exact depth; poses from :func:`circle_pose` (the map reads images and depth on keyframes only)."""
    height, width = SIZE
    sequence = make_sequence("circle", seed=0, frames_per_lap=4, width=width, height=height)
    image, depth = sequence.view(0)
    conf = np.ones_like(depth)
    valid = np.ones((height, width), bool)
    points = np.zeros((height, width, 3), np.float32)
    for index in range(count):
        shifted = np.roll(image, (index * 7) % width, axis=1)
        yield FrameResult(
            index,
            f"{index:06d}",
            index,
            None,
            shifted,
            valid,
            circle_pose(index),
            sequence.intrinsic,
            depth,
            conf,
            points,
            conf,
        )


class RejectingPredictor:
    """A predictor that answers at once with no valid depth (the map rejects the loop): its time is measured so
    the map's own cost can be reported without it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, images):
        start = time.perf_counter()
        out = [
            FramePrediction(
                np.eye(3, 4), np.eye(3), np.zeros(i.shape[:2], np.float32), np.zeros(i.shape[:2], np.float32)
            )
            for i in images
        ]
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def map_cost(frames: int) -> dict:
    predictor = RejectingPredictor()
    gmap = GlobalMap(predictor, MapOptions(exclusion_gap=90), image_source=lambda index: np.zeros((*SIZE, 3), np.uint8))
    stream = list(synthetic_stream(min(frames, 97)))  # results reused cyclically: generating them is not map cost
    elapsed = 0.0
    for index in range(frames):
        base = stream[index % len(stream)]
        result = FrameResult(**{**base.__dict__, "index": index, "extrinsic": circle_pose(index)})
        start = time.perf_counter()
        gmap.add(result)
        elapsed += time.perf_counter() - start
    start = time.perf_counter()
    gmap.finish()
    poses = gmap.poses()
    read_back = time.perf_counter() - start
    own = elapsed - predictor.seconds
    return {
        "frames": frames,
        "keyframes": len(gmap.keyframes),
        "ms_per_frame": 1e3 * own / frames,
        "predictor_calls": predictor.calls,
        "predicted_frames": gmap.predicted_frames,
        "read_back_ms": 1e3 * read_back,
        "poses_shape": list(poses.shape),
    }


def optimisation(keyframes: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    graph = PoseGraph()
    truth = [Sim3.identity()]
    for _ in range(1, keyframes):
        step = Sim3(1.0, _rotation(np.array([0.0, 2 * math.pi / 100, 0.0])), np.array([0.0, 0.0, 0.3]))
        truth.append(truth[-1] @ step)
    graph.add_node(truth[0])
    sigmas = np.array([0.01] * 3 + [0.02] * 3 + [0.01])
    for k in range(1, keyframes):
        noise = Sim3(float(np.exp(rng.normal(0, 0.005))), _rotation(rng.normal(0, 0.005, 3)), rng.normal(0, 0.005, 3))
        measured = noise @ (truth[k - 1].inverse() @ truth[k])
        graph.add_node(graph.nodes[-1] @ measured)
        graph.add_edge(Edge(k - 1, k, measured, sigmas))
    loops = 0
    for k in range(100, keyframes, 5):  # a revisit every 5 keyframes after the first lap of 100
        graph.add_edge(Edge(k - 100, k, truth[k - 100].inverse() @ truth[k], sigmas, robust=3.0))
        loops += 1
    report = graph.optimise(max_iterations=100, max_seconds=30.0)
    return {
        "keyframes": keyframes,
        "loop_edges": loops,
        "seconds": report.seconds,
        "iterations": report.iterations,
        "error_before": report.initial_error,
        "error_after": report.final_error,
    }


def memory(frames: int) -> dict:
    gmap = GlobalMap(options=MapOptions())
    stream = list(synthetic_stream(97))
    checkpoints = {}
    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    marks = {frames // 4, frames // 2, 3 * frames // 4, frames}
    for index in range(frames):
        base = stream[index % len(stream)]
        gmap.add(FrameResult(**{**base.__dict__, "index": index, "extrinsic": circle_pose(index)}))
        if index + 1 in marks:
            current, peak = tracemalloc.get_traced_memory()
            checkpoints[index + 1] = {
                "keyframes": len(gmap.keyframes),
                "current_bytes": current - baseline,
                "peak_bytes": peak - baseline,
            }
    tracemalloc.stop()
    first, last = checkpoints[min(checkpoints)], checkpoints[max(checkpoints)]
    growth = (last["current_bytes"] - first["current_bytes"]) / max(1, last["keyframes"] - first["keyframes"])
    return {
        "frames": frames,
        "record_bytes_per_keyframe": gmap.memory()["per_keyframe"],
        "jpeg_bytes_per_keyframe": gmap.memory()["images"] // max(1, len(gmap.keyframes)),
        "traced_growth_per_keyframe": growth,
        "checkpoints": checkpoints,
    }


def trajectories(seed: int = 0) -> dict:
    drift = Drift(rotation=math.radians(0.3), translation=0.01, scale=0.005)
    out = {}
    for kind in TRAJECTORIES:
        sequence = make_sequence(kind, seed=seed)
        gmap = GlobalMap(sequence.predictor(), MapOptions(exclusion_gap=30), image_source=sequence.image)
        raw = []
        for result in sequence.engine_results(drift, seed=seed):
            raw.append(result.extrinsic)
            gmap.add(result)
        gmap.finish()
        truth = sequence.true_extrinsics()
        without, with_loops = ate_rmse(np.stack(raw), truth), ate_rmse(gmap.poses(), truth)
        out[kind] = {
            "frames": sequence.num_frames,
            "keyframes": len(gmap.keyframes),
            "loops": len(gmap.loops),
            "predictor_calls": gmap.predictor_calls,
            "ate_without_m": without,
            "ate_with_m": with_loops,
            "ratio": with_loops / without,
        }
    return out


def _rotation(rotvec: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(rotvec))
    if angle == 0:
        return np.eye(3)
    k = rotvec / angle
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * skew + (1 - math.cos(angle)) * skew @ skew


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--memory-frames", type=int, default=10000)
    parser.add_argument("--keyframes", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS / "long_video.json")
    args = parser.parse_args()
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }
    cost = map_cost(args.frames)
    solve = optimisation(args.keyframes)
    mem = memory(args.memory_frames)
    ate = trajectories()
    report = {"machine": machine, "map_cost": cost, "optimisation": solve, "memory": mem, "trajectories": ate}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"CPU {machine['cpu']} ({machine['cpu_capability']}), python {machine['python']}")
    print(
        f"map cost: {cost['ms_per_frame']:.3f} ms/frame over {cost['frames']} frames ({cost['keyframes']} keyframes, "
        f"{cost['predictor_calls']} predictor calls excluded)  target <= 5 ms"
    )
    print(
        f"optimisation: {solve['seconds']:.3f} s over {solve['keyframes']} keyframes, {solve['loop_edges']} loops, "
        f"{solve['iterations']} iterations  target < 1 s"
    )
    print(
        f"memory: {mem['record_bytes_per_keyframe']} B per keyframe record (+{mem['jpeg_bytes_per_keyframe']} B JPEG "
        f"when no image source), traced growth {mem['traced_growth_per_keyframe']:.0f} B per keyframe  target <= 64 KB"
    )
    for frames, point in mem["checkpoints"].items():
        current, peak = point["current_bytes"] / 1e6, point["peak_bytes"] / 1e6
        kept = point["keyframes"]
        print(f"  after {frames:6d} frames: {kept:5d} keyframes, current {current:7.2f} MB, peak {peak:7.2f} MB")
    header = ("trajectory", "frames", "kf", "loops", "ATE without", "ATE with", "ratio")
    print("{:12s} {:>6s} {:>4s} {:>5s} {:>12s} {:>10s} {:>6s}".format(*header))
    for kind, row in ate.items():
        print(
            f"{kind:12s} {row['frames']:6d} {row['keyframes']:4d} {row['loops']:5d} {row['ate_without_m']:12.4f} "
            f"{row['ate_with_m']:10.4f} {row['ratio']:6.2f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
