"""Streaming benchmark: per-frame step latency and cache size for each cache policy, against re-running the
offline forward over all frames so far (what a non-streaming VGGT must do for every new frame).

Prints a table, writes ``streaming.json`` and ``streaming.png`` to ``--out``. For bounded policies it also
reports how far their outputs drift from the exact full cache (depth relative error, pose encoding error).

    python benchmarks/streaming.py --preset small --size 168x224 --frames 1000 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from streamvggt import ModelConfig, StreamVGGT
from streamvggt.runtime.device import select_device
from streamvggt.runtime.precision import apply_precision


def synthetic_frames(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth moving pattern [count, 3, H, W] in [0, 1]: deterministic, cheap, and not pure noise."""
    gen = torch.Generator().manual_seed(seed)
    phase = torch.rand(3, 1, 1, generator=gen) * 6.28
    ys = torch.linspace(0, 6.28, height).view(1, height, 1)
    xs = torch.linspace(0, 6.28, width).view(1, 1, width)
    frames = [
        0.5 + 0.5 * torch.sin(xs * 2 + ys + phase + 0.05 * t) * torch.cos(ys * 3 - 0.03 * t) for t in range(count)
    ]
    return torch.stack(frames).clamp(0, 1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_stream(model: StreamVGGT, frames: torch.Tensor, policy: str, keep: set[int]) -> dict:
    """Stream every frame; return per-step latency (s), cache bytes, and outputs of the frames in ``keep``."""
    device = next(model.parameters()).device
    session = model.stream(cache=policy)
    latency, cache_bytes, outputs = [], [], {}
    for t in range(frames.shape[0]):
        frame = frames[t : t + 1].to(device)
        sync(device)
        start = time.perf_counter()
        out = session.step(frame)
        sync(device)
        latency.append(time.perf_counter() - start)
        cache_bytes.append(session.cache_bytes)
        if t in keep:
            outputs[t] = {k: out[k].float().cpu() for k in ("depth", "pose_enc")}
    return {"latency_s": latency, "cache_bytes": cache_bytes, "outputs": outputs}


@torch.no_grad()
def run_offline(model: StreamVGGT, frames: torch.Tensor, counts: list[int]) -> dict[int, float]:
    """Latency of the offline forward over the first n frames, for each n in ``counts``."""
    device = next(model.parameters()).device
    result = {}
    for n in counts:
        clip = frames[:n].unsqueeze(0).to(device)
        sync(device)
        start = time.perf_counter()
        model(clip)
        sync(device)
        result[n] = time.perf_counter() - start
    return result


def drift(full: dict, bounded: dict) -> dict[str, list[float]]:
    """Per kept frame: mean relative depth error and max pose-encoding error of ``bounded`` against ``full``."""
    frames = sorted(set(full) & set(bounded))
    depth = [float(((bounded[t]["depth"] - full[t]["depth"]).abs() / full[t]["depth"]).mean()) for t in frames]
    pose = [float((bounded[t]["pose_enc"] - full[t]["pose_enc"]).abs().max()) for t in frames]
    return {"frames": frames, "depth_rel_err": depth, "pose_enc_err": pose}


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(12, 4.5))
    for policy, run in report["stream"].items():
        frames = range(1, len(run["latency_s"]) + 1)
        ax_time.plot(frames, [1e3 * s for s in run["latency_s"]], label=f"stream {policy}", lw=1)
        ax_mem.plot(frames, [b / 2**20 for b in run["cache_bytes"]], label=policy, lw=1)
    offline = report["offline_rerun_s"]
    ax_time.plot([int(n) for n in offline], [1e3 * s for s in offline.values()], "k.-", label="offline re-run")
    ax_time.set(xlabel="frame", ylabel="ms per new frame", yscale="log", title="Latency per new frame")
    ax_mem.set(xlabel="frame", ylabel="MiB", title="Cache size")
    for ax in (ax_time, ax_mem):
        ax.grid(alpha=0.3)
        ax.legend()
    cfg = report["config"]
    fig.suptitle(f"{cfg['preset']} {cfg['size']} {cfg['precision']} on {report['machine']['processor']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", help="model preset (random weights): tiny, small, streamvggt-1b")
    parser.add_argument("--size", default="168x224", help="frame size HxW (multiples of 14)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--policies", default="full,window:16,budget:4096", help="comma-separated cache policies")
    parser.add_argument("--full-max", type=int, default=300, help="frames streamed with the unbounded full cache")
    parser.add_argument("--offline-max", type=int, default=32, help="longest offline re-run clip to time")
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "int8"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.lower().split("x"))
    device = select_device(args.device)
    torch.manual_seed(0)
    model = StreamVGGT(ModelConfig.preset(args.preset)).eval().to(device)
    # The mode the trunk really runs in: CPU auto is measured per machine (bf16 or int8 for wide trunks).
    precision = apply_precision(model, args.precision, device).resolved
    frames = synthetic_frames(args.frames, height, width)
    policies = [p.strip() for p in args.policies.split(",")]
    keep = set(range(0, args.frames, max(1, args.frames // 50))) | {args.frames - 1}

    run_stream(model, frames[:3], "full", set())  # warm-up: kernels, allocator, position tables
    # The full cache grows without bound: stream it only as far as memory allows; drift is compared there.
    stream = {
        policy: run_stream(model, frames[: args.full_max] if policy == "full" else frames, policy, keep)
        for policy in policies
    }
    counts = sorted({n for n in (1, 2, 4, 8, 16, 24, 32, 48, 64) if n <= min(args.offline_max, args.frames)})
    offline = run_offline(model, frames, counts)
    report = {
        "config": {
            "preset": args.preset,
            "size": f"{height}x{width}",
            "frames": args.frames,
            "device": str(device),
            "precision": precision,
        },
        "machine": machine(),
        "offline_rerun_s": {str(n): s for n, s in offline.items()},
        "stream": {},
        "drift_vs_full": {},
    }
    for policy, run in stream.items():
        report["stream"][policy] = {"latency_s": run["latency_s"], "cache_bytes": run["cache_bytes"]}
        if policy != "full" and "full" in stream:
            report["drift_vs_full"][policy] = drift(stream["full"]["outputs"], run["outputs"])

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "streaming.json").write_text(json.dumps(report, indent=1))
    plot(report, args.out / "streaming.png")
    print_table(report)


def print_table(report: dict) -> None:
    cfg, mach = report["config"], report["machine"]
    print(
        f"# {cfg['preset']} {cfg['size']} {cfg['precision']} on {cfg['device']} ({mach['processor']}, "
        f"{mach['threads']} threads, torch {mach['torch']})"
    )
    marks = sorted({n for n in (1, 8, 16, 24, 32, 100, 300, 1000) if n <= cfg["frames"]})
    print("| policy | " + " | ".join(f"frame {n} ms" for n in marks) + " | cache at last frame (MiB) |")
    print("|---" * (len(marks) + 2) + "|")
    for policy, run in report["stream"].items():
        # Median of a few steps around each mark: single steps are noisy on shared machines.
        cells = []
        for n in marks:
            window = sorted(run["latency_s"][max(0, n - 3) : n + 2])
            cells.append(f"{1e3 * window[len(window) // 2]:.1f}" if n <= len(run["latency_s"]) else "-")
        print(f"| stream {policy} | " + " | ".join(cells) + f" | {run['cache_bytes'][-1] / 2**20:.1f} |")
    offline = report["offline_rerun_s"]
    print(
        "| offline re-run | "
        + " | ".join(f"{1e3 * offline[str(n)]:.1f}" if str(n) in offline else "-" for n in marks)
        + " | - |"
    )
    for policy, d in report["drift_vs_full"].items():
        print(
            f"drift {policy} at frame {d['frames'][-1] + 1}: depth rel err {d['depth_rel_err'][-1]:.3g}, "
            f"pose_enc err {d['pose_enc_err'][-1]:.3g}"
        )


if __name__ == "__main__":
    main()
