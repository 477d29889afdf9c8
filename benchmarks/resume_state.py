"""Saved run state: time and bytes per save, per cache policy, and what saving every N frames costs a run.

Part 1 streams ``--frames`` frames through a session of the model (random weights: timings do not depend on them)
for each cache policy and saves the session's state after every frame, as ``reconstruct --state-every 1`` would
(:class:`streamvggt.io.run_state.RunStateStore`: safetensors, SHA-256 manifest, fsync, atomic switch). It reports
the step time, the time of each save and the bytes of the state after the last frame, with the estimate the
command prints (:func:`streamvggt.io.run_state.estimate_state_size`). Part 2 runs ``reconstruct`` end to end on
the same frames, writing every output, without saved state and with ``--state-every N`` for each N of
``--every``, and reports the wall time of each and its overhead. Prints Markdown tables and writes
``resume_state.json`` to ``--out``, naming the CPU.

    python benchmarks/resume_state.py --preset streamvggt-1b --size 224 --frames 4 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from streamvggt import ModelConfig, StreamVGGT
from streamvggt.io.run_state import RunStateStore, estimate_state_size
from streamvggt.pipeline.reconstructor import reconstruct
from streamvggt.streaming.cache import parse_policy
from streamvggt.streaming.session import StreamSession


def write_frames(folder: Path, count: int, width: int, height: int) -> Path:
    """A folder of ``count`` smooth moving-pattern frames."""
    folder.mkdir(parents=True)
    v, u = np.mgrid[0:height, 0:width] / 12.0
    for t in range(count):
        channels = [np.sin(u + 0.2 * t + c) * np.cos(0.8 * v - 0.1 * t + c) for c in (0.0, 2.0, 4.0)]
        pixels = np.round(127.5 + 127.5 * np.stack(channels, axis=-1)).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{t:03d}.png")
    return folder


def cpu_name() -> str:
    """The CPU's model name (Linux), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def time_saves(model: StreamVGGT, policy: str, frames: torch.Tensor, workdir: Path) -> dict:
    """Step every frame [S, 3, H, W] and save the session's state after each; the timings and sizes."""
    session = StreamSession(model, 1, policy)
    store = RunStateStore(workdir / policy.replace(":", "-").replace("+", "-"))
    steps, saves, sizes = [], [], []
    for frame in frames:
        started = time.perf_counter()
        session.step(frame[None])
        steps.append(time.perf_counter() - started)
        started = time.perf_counter()
        meta, tensors = session.state_dict()
        folder = store.save({"session": meta}, {"session": tensors})
        saves.append(time.perf_counter() - started)
        sizes.append(folder_bytes(folder))
    height, width = frames.shape[-2:]
    dtype = model.execution.trunk_dtype or next(model.parameters()).dtype
    estimate = estimate_state_size(parse_policy(policy), model.config, (height, width), dtype)
    store.clear()
    return {
        "policy": policy,
        "step_seconds": statistics.median(steps),
        "save_seconds": saves,
        "state_bytes": sizes,
        "estimated_bytes": [estimate.at(i + 1) for i in range(len(frames))],
    }


def time_runs(model: StreamVGGT, source: Path, policy: str, size: int, every: list[int], workdir: Path) -> list[dict]:
    """``reconstruct`` end to end without saved state and with ``state_every`` N, for each N."""
    # An untimed run first: the first pass faults the process's memory in and makes the kernels.
    reconstruct(source, workdir / "warm-up", model, cache=policy, size=size, state_every=0)
    runs = []
    for n in [0, *every]:
        out = workdir / f"run-{n}"
        started = time.perf_counter()
        summary = reconstruct(source, out, model, cache=policy, size=size, state_every=n)
        runs.append(
            {
                "state_every": n,
                "seconds": time.perf_counter() - started,
                "stream_seconds": summary.stream_seconds,
                "saves": summary.state_saves,
                "save_seconds": summary.state_seconds,
            }
        )
    base = runs[0]["seconds"]
    for run in runs:
        run["overhead"] = run["seconds"] / base - 1  # wall time against no saved state (noisy on a shared CPU)
        run["save_share"] = run["save_seconds"] / run["stream_seconds"]  # the saves' own share of the stream
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="streamvggt-1b")
    parser.add_argument("--size", type=int, default=224, help="frame width (a multiple of 14); height is 3/4 of it")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--policies", default="full,window:2,budget:{2},full+int8,window:2+int8")
    parser.add_argument("--every", default="1,2", help="the N of --state-every for part 2 ('' skips part 2)")
    parser.add_argument("--run-policy", default="window:2", help="the cache policy of part 2's runs")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width = args.size
    height = (width * 3 // 4) // 14 * 14
    torch.manual_seed(0)
    built = time.perf_counter()
    model = StreamVGGT(ModelConfig.preset(args.preset)).eval()
    built = time.perf_counter() - built
    frame_tokens = model.aggregator.tokens_per_frame(height, width)
    policies = [p.replace("{2}", str(2 * frame_tokens)) for p in args.policies.split(",") if p]
    cpu = torch.backends.cpu.get_cpu_capability()
    threads = torch.get_num_threads()
    header = f"# {args.preset} {width}x{height}, {args.frames} frames, fp32 on {cpu_name()} ({cpu}, {threads} threads)"
    print(header)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        source = write_frames(workdir / "frames", args.frames, width, height)
        images = [np.array(Image.open(p)) for p in sorted(source.iterdir())]  # writable copies for torch
        frames = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image in images])
        saves = [time_saves(model, policy, frames, workdir) for policy in policies]
        every = [int(n) for n in args.every.split(",") if n]
        runs = time_runs(model, source, args.run_policy, width, every, workdir) if every else []
    print("\n| policy | step (s) | save, median (s) | save, last (s) | state after last frame | estimate |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in saves:
        print(
            f"| {row['policy']} | {row['step_seconds']:.2f} | {statistics.median(row['save_seconds']):.3f} | "
            f"{row['save_seconds'][-1]:.3f} | {row['state_bytes'][-1] / 2**20:.1f} MiB | "
            f"{row['estimated_bytes'][-1] / 2**20:.1f} MiB |"
        )
    if runs:
        print(f"\n| reconstruct, {args.run_policy} | wall (s) | saves | time in saves | wall vs no saves |")
        print("|---|---:|---:|---:|---:|")
        for run in runs:
            name = "no saved state" if run["state_every"] == 0 else f"--state-every {run['state_every']}"
            share = f"{run['save_seconds']:.2f} s ({100 * run['save_share']:.1f}%)"
            print(f"| {name} | {run['seconds']:.2f} | {run['saves']} | {share} | {100 * run['overhead']:+.1f}% |")
    result = {
        "config": {
            "preset": args.preset,
            "size": [height, width],
            "frames": args.frames,
            "frame_tokens": frame_tokens,
            "precision": "fp32",
            "device": "cpu",
            "cpu_capability": cpu,
            "cpu": cpu_name(),
            "threads": torch.get_num_threads(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "model_build_seconds": built,
        },
        "saves": saves,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "resume_state.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
