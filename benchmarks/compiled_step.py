"""Eager against compiled streaming steps, per cache policy, on any device (CPU here; CUDA as is).

For every policy an eager session and a ``compile=True`` session stream the same frames side by side. Per frame it
records both latencies, the number of graphs dynamo has compiled so far, the compiled outputs' distance from eager
(depth relative, pose-encoding absolute) and memory: ``torch.cuda.max_memory_allocated`` during the step on
CUDA (CUDA graphs are used there for bounded policies), the session's cache bytes everywhere. Bounded policies
must show one compile, at the frame their cache fills, and none after it.

    python benchmarks/compiled_step.py --preset tiny --size 28x42 --frames 1000 --threads 2
    python benchmarks/compiled_step.py --preset streamvggt-1b --size 392x518 --frames 10000 --device cuda \\
        --precision auto --eager-max 200

Prints a table, writes ``compiled_step.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch._dynamo.utils import counters

from streamvggt import ModelConfig, StreamVGGT
from streamvggt.runtime.device import select_device
from streamvggt.runtime.precision import apply_precision


def synthetic_frames(count: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """A smooth moving pattern [count, 3, H, W] in [0, 1] (speed does not depend on content)."""
    ys = torch.linspace(0, 6.28, height).view(1, height, 1)
    xs = torch.linspace(0, 6.28, width).view(1, 1, width)
    phase = torch.tensor([0.0, 2.0, 4.0]).view(3, 1, 1)
    frames = [0.5 + 0.5 * torch.sin(2 * xs + ys + phase + 0.05 * t) * torch.cos(ys - 0.03 * t) for t in range(count)]
    return torch.stack(frames).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(session: object, frame: torch.Tensor, device: torch.device) -> tuple[object, float, int]:
    """The step's output, its seconds, and the peak CUDA memory during it (0 off CUDA)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    out = session.step(frame)
    sync(device)
    seconds = time.perf_counter() - start
    return out, seconds, torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0


def gap(ours: object, eager: object) -> tuple[float, float]:
    depth = float(((ours["depth"] - eager["depth"]).abs() / eager["depth"].abs()).max())
    return depth, float((ours["pose_enc"] - eager["pose_enc"]).abs().max())


@torch.no_grad()
def run_policy(model: StreamVGGT, frames: torch.Tensor, policy: str, args: argparse.Namespace) -> dict:
    device = frames.device
    options = {"backend": args.backend} if args.backend != "inductor" else True
    compiled = model.stream(cache=policy, compile=options)
    eager = model.stream(cache=policy)
    graphs_before = counters["stats"]["unique_graphs"]
    run: dict[str, list] = {key: [] for key in ("eager_s", "compiled_s", "graphs", "depth_gap", "pose_gap")}
    run.update(compiled_peak_bytes=[], eager_peak_bytes=[], cache_bytes=[])
    for index, frame in enumerate(frames):
        out, seconds, peak = timed_step(compiled, frame[None], device)
        run["compiled_s"].append(seconds)
        run["compiled_peak_bytes"].append(peak)
        run["graphs"].append(counters["stats"]["unique_graphs"] - graphs_before)
        run["cache_bytes"].append(compiled.cache_bytes)
        if index < args.eager_max:  # the eager twin stops early on long runs; its state would then fall behind
            reference, seconds, peak = timed_step(eager, frame[None], device)
            run["eager_s"].append(seconds)
            run["eager_peak_bytes"].append(peak)
            depth, pose = gap(out, reference)
            run["depth_gap"].append(depth)
            run["pose_gap"].append(pose)
        if (index + 1) % 100 == 0:
            print(f"{policy}: frame {index + 1}, graphs {run['graphs'][-1]}", file=sys.stderr, flush=True)
    graphs = run["graphs"]
    first = next((i for i, count in enumerate(graphs) if count > 0), None)
    run["compiled_at_frame"] = first
    run["recompiles_after_first"] = graphs[-1] - 1 if first is not None else 0
    return run


def median_after(values: list[float], start: int | None) -> float:
    tail = values[(start or 0) + 1 :] or values
    return statistics.median(tail) if tail else float("nan")


def machine(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def print_table(report: dict) -> None:
    cfg, mach = report["config"], report["machine"]
    where = mach.get("gpu", f"{mach['processor']}, {mach['threads']} threads, CPU {mach['cpu_capability']}")
    print(f"# {cfg['preset']} {cfg['size']} {cfg['precision']} on {cfg['device']} ({where}), backend {cfg['backend']}")
    print(
        "| policy | compiled at frame | graphs | recompiles after | eager ms | compiled ms | compiled FPS "
        "| max depth rel gap | max pose gap | peak MiB (compiled) | cache MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for policy, run in report["policies"].items():
        start = run["compiled_at_frame"]
        eager_ms = 1e3 * median_after(run["eager_s"], start)
        compiled_ms = 1e3 * median_after(run["compiled_s"], start)
        peak = max(run["compiled_peak_bytes"]) / 2**20
        cells = [
            policy,
            str(start),
            str(run["graphs"][-1]),
            str(run["recompiles_after_first"]),
            f"{eager_ms:.1f}",
            f"{compiled_ms:.1f}",
            f"{1e3 / compiled_ms:.1f}",
            f"{max(run['depth_gap']):.1e}",
            f"{max(run['pose_gap']):.1e}",
            f"{peak:.0f}" if peak else "-",
            f"{run['cache_bytes'][-1] / 2**20:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="model preset (random weights)")
    parser.add_argument("--size", default="28x42", help="frame size HxW (multiples of 14)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--eager-max", type=int, default=None, help="frames the eager twin streams (default all)")
    parser.add_argument(
        "--policies", default=None, help="cache policies (default: window:16, budget of 17 frames, each +int8; full)"
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (eager: capture only)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.eager_max = args.frames if args.eager_max is None else args.eager_max
    height, width = (int(v) for v in args.size.lower().split("x"))
    device = select_device(args.device)
    torch.manual_seed(0)
    model = StreamVGGT(ModelConfig.preset(args.preset)).eval().to(device)
    apply_precision(model, args.precision, device)
    frame_tokens = model.aggregator.tokens_per_frame(height, width)
    budget = f"budget:{17 * frame_tokens}"  # the same memory as window:16 (anchor + 16 frames)
    default = f"window:16,window:16+int8,{budget},{budget}+int8,full"
    policies = [p.strip() for p in (args.policies or default).split(",")]
    frames = synthetic_frames(args.frames, height, width, device)
    report = {
        "config": {
            "preset": args.preset,
            "size": f"{height}x{width}",
            "frames": args.frames,
            "device": str(device),
            "precision": model.execution.resolved,
            "backend": args.backend,
        },
        "machine": machine(device),
        "policies": {policy: run_policy(model, frames, policy, args) for policy in policies},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compiled_step.json").write_text(json.dumps(report, indent=1))
    print_table(report)
    return report


if __name__ == "__main__":
    main()
