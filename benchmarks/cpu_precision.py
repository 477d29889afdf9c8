"""CPU precision modes side by side: speed and peak memory on the 1.2B preset, accuracy on trained weights.

Speed: a random-weights checkpoint of ``--preset`` is written once as safetensors; for every mode a fresh process
loads it with ``precision=mode`` (timed), warms its kernels for the frame size (timed, with
``streamvggt.pipeline.warm_up.warm_up`` as the reconstructor does), then streams ``--frames`` frames with the
``--cache`` policy (full). Each process reports its own peak RSS, so modes do not share one high-water mark.
``--repeats`` runs the modes round robin. A mode with ``+regions`` (e.g. ``auto+regions``) also compiles the
model's blocks and dense heads (``compile="regions"``), starting from an empty inductor cache: the first repeat's
warm-up is a first run's, later ones reuse its graphs.

Accuracy: the bundled model (the only trained weights available offline) streams the demo sequence and
``--sequences`` held-out synthetic sequences in every mode; depth relative error (mean |d - d_fp32| / d_fp32)
and pose-encoding error (max |Δ|) are measured against fp32. A mode passes at <= 1% and <= 1e-3.

    python benchmarks/cpu_precision.py --preset streamvggt-1b --size 392x518 --frames 4 --threads 2 \
        --modes fp32,bf16,int8,auto,auto+regions

Prints the CPU capability, a Markdown table, and writes ``cpu_precision.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from streamvggt import ModelConfig, StreamVGGT, load_model
from streamvggt.evaluate.synthetic import DEMO_SEED, HELD_OUT_SEED, synthetic_sequence
from streamvggt.pipeline.warm_up import warm_up
from streamvggt.runtime.precision import cpu_capability, measure_blocks
from streamvggt.runtime.regional_compile import compile_regions

DEPTH_TARGET, POSE_TARGET = 0.01, 1e-3


def cpu_name() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "unknown")


def cpu_flags() -> list[str]:
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    return [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]


def load_average() -> float:
    return os.getloadavg()[0]


def memory_status() -> dict[str, int]:
    """Bytes of this process's peak RSS (VmHWM, counting memory-mapped checkpoint pages), and of its anonymous and
    file-backed resident memory now (the anonymous part is what the model needs; mapped file pages can be
    dropped by the kernel)."""
    wanted = {"VmHWM": "peak_rss_bytes", "RssAnon": "rss_anon_bytes", "RssFile": "rss_file_bytes"}
    found = {}
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in wanted:
                found[wanted[key]] = int(value.split()[0]) * 1024
    return found


# ------------------------------------------------------------------------------------------------------ speed


def split_mode(mode: str) -> tuple[str, bool]:
    """ "bf16+regions" -> ("bf16", True): a precision, and whether blocks and heads run compiled (compile="regions")."""
    precision, _, variant = mode.partition("+")
    if variant not in ("", "regions"):
        raise SystemExit(f"unknown mode variant '{variant}' in '{mode}' (only +regions)")
    return precision, variant == "regions"


def synthetic_frames(count: int, height: int, width: int) -> torch.Tensor:
    """A smooth moving pattern [count, 3, H, W] in [0, 1] (speed does not depend on content)."""
    ys = torch.linspace(0, 6.28, height).view(1, height, 1)
    xs = torch.linspace(0, 6.28, width).view(1, 1, width)
    phase = torch.tensor([0.0, 2.0, 4.0]).view(3, 1, 1)
    return torch.stack([0.5 + 0.5 * torch.sin(2 * xs + ys + phase + 0.05 * t) for t in range(count)])


@torch.no_grad()
def speed_child(checkpoint: Path, mode: str, height: int, width: int, frames: int, cache: str) -> dict:
    """Run in a fresh process: load, warm up, stream; timings in seconds, peak RSS in bytes."""
    started = time.perf_counter()
    precision, compiled = split_mode(mode)
    model = load_model(checkpoint, device="cpu", precision=precision)
    loaded = time.perf_counter()
    after_load = memory_status()
    if compiled:
        compile_regions(model)  # the warm-up frame compiles them
    warm_up(model, height, width)
    warmed = time.perf_counter()
    session = model.stream(cache=cache)
    step_s, loads = [], []
    for frame in synthetic_frames(frames, height, width):
        start = time.perf_counter()
        session.step(frame[None])
        step_s.append(time.perf_counter() - start)
        loads.append(load_average())
    return {
        "mode": mode,
        "resolved": model.execution.resolved + ("+regions" if compiled else ""),
        "load_s": loaded - started,
        "warm_up_s": warmed - loaded,
        "step_s": step_s,
        "load_average": loads,
        "cache_bytes_per_frame": session.cache_bytes / frames,
        "after_load": after_load,
        **memory_status(),
    }


def run_speed(args: argparse.Namespace, modes: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        torch.manual_seed(0)
        StreamVGGT(ModelConfig.preset(args.preset)).save_pretrained(folder)
        results = []
        # Round robin over the modes, so that a change in the machine's load reaches every mode alike.
        for repeat in range(args.repeats):
            for mode in modes:
                command = [sys.executable, __file__, "--child", mode, "--checkpoint", folder, "--size", args.size]
                command += ["--frames", str(args.frames), "--threads", str(args.threads), "--cache", args.cache]
                # Compiled regions start from an empty inductor cache: repeat 0's warm-up is a first run's, later
                # repeats find its graphs as a user's later runs do.
                inductor = Path(folder) / f"inductor-{mode}"
                env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(inductor)}
                done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
                results.append({"repeat": repeat, **json.loads(done.stdout.strip().splitlines()[-1])})
                print(f"speed {mode}: {results[-1]['step_s']}", file=sys.stderr, flush=True)
    return results


# --------------------------------------------------------------------------------------------------- accuracy


@torch.no_grad()
def stream_outputs(model: StreamVGGT, seed: int, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth [S, H, W] and pose encodings [S, 9] of a streamed synthetic sequence."""
    seq = synthetic_sequence(frames, seed=seed)
    images = torch.from_numpy(seq.images).permute(0, 3, 1, 2).float().div(255)
    session = model.stream()
    steps = [session.step(images[t : t + 1]) for t in range(frames)]
    return torch.cat([s["depth"][..., 0] for s in steps]), torch.cat([s["pose_enc"] for s in steps])


def run_accuracy(modes: list[str], sequences: int, frames: int) -> dict[str, dict]:
    seeds = {"demo": DEMO_SEED, **{f"held-out {i}": HELD_OUT_SEED + 1 + i for i in range(sequences)}}
    reference = load_model(None, device="cpu", precision="fp32")
    expected = {name: stream_outputs(reference, seed, frames) for name, seed in seeds.items()}
    report = {}
    for mode in modes:
        precision, compiled = split_mode(mode)
        model = load_model(None, device="cpu", precision=precision)
        if compiled:
            compile_regions(model)
        depth_err, pose_err = {}, {}
        for name, seed in seeds.items():
            depth, pose = stream_outputs(model, seed, frames)
            ref_depth, ref_pose = expected[name]
            depth_err[name] = float(((depth - ref_depth).abs() / ref_depth).mean())
            pose_err[name] = float((pose - ref_pose).abs().max())
        worst_depth, worst_pose = max(depth_err.values()), max(pose_err.values())
        report[mode] = {
            "resolved": model.execution.resolved + ("+regions" if compiled else ""),
            "depth_rel_err": depth_err,
            "pose_enc_err": pose_err,
            "worst_depth_rel_err": worst_depth,
            "worst_pose_enc_err": worst_pose,
            "passes": worst_depth <= DEPTH_TARGET and worst_pose <= POSE_TARGET,
        }
        print(f"accuracy {mode}: depth {worst_depth:.3g} pose {worst_pose:.3g}", file=sys.stderr, flush=True)
    return report


# ------------------------------------------------------------------------------------------------------ main


def print_table(report: dict) -> None:
    mach = report["machine"]
    print(
        f"# CPU: {mach['cpu']} ({', '.join(mach['flags'])}); torch capability {mach['capability']}; "
        f"{mach['threads']} threads; torch {mach['torch']}"
    )
    block = report["block_ms"]
    print(f"one trunk block, {report['block_shape']}, ms: " + ", ".join(f"{m} {v:.1f}" for m, v in block.items()))
    cfg = report["config"]
    print(
        f"\n{cfg['preset']} (random weights) at {cfg['size']}, {cfg['frames']} frames, cache {cfg['cache']}, "
        f"{cfg['repeats']} run(s) per mode (median, range); accuracy: bundled model vs fp32 on the demo + "
        "held-out sequences (worst sequence)\n"
    )
    print(
        "| mode | runs as | load s | warm-up s | frame 1 s | later frames s (median) | peak RSS / anon GiB "
        "| KV MiB/frame | load avg | depth rel err | pose-enc err | accurate |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    modes = list(dict.fromkeys(run["mode"] for run in report["speed"]))
    for mode in modes:
        runs = [run for run in report["speed"] if run["mode"] == mode]
        first = runs[0]
        acc = report["accuracy"].get(first["resolved"], {})
        cells = [
            mode,
            first["resolved"],
            _spread([run["load_s"] for run in runs], 1),
            _spread([run["warm_up_s"] for run in runs], 1),
            _spread([run["step_s"][0] for run in runs], 2),
            _spread([statistics.median(run["step_s"][1:]) for run in runs if len(run["step_s"]) > 1], 2),
            f"{first['peak_rss_bytes'] / 2**30:.2f} / {first.get('rss_anon_bytes', float('nan')) / 2**30:.2f}",
            f"{first['cache_bytes_per_frame'] / 2**20:.0f}",
            _spread([statistics.median(run["load_average"]) for run in runs], 1),
            f"{acc.get('worst_depth_rel_err', 0.0):.2e}",
            f"{acc.get('worst_pose_enc_err', 0.0):.2e}",
            "yes" if acc.get("passes", first["resolved"] == "fp32") else "no",
        ]
        print("| " + " | ".join(cells) + " |")


def _spread(values: list[float], digits: int) -> str:
    """Median, and the range in brackets when there are several values: "2.41 (2.15-2.47)"."""
    if not values:
        return "-"
    median = f"{statistics.median(values):.{digits}f}"
    return median if len(values) == 1 else f"{median} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="streamvggt-1b", help="architecture timed (random weights)")
    parser.add_argument("--size", default="392x518", help="frame size HxW (multiples of 14)")
    parser.add_argument("--frames", type=int, default=3, help="frames streamed per mode for timing")
    parser.add_argument("--modes", default="fp32,bf16,int8,auto,auto+regions", help='+regions: compile="regions"')
    parser.add_argument("--sequences", type=int, default=4, help="held-out sequences for accuracy")
    parser.add_argument("--accuracy-frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default="full", help="cache policy of the timed streams")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per mode, round robin")
    parser.add_argument("--tmp", default=None, help="folder for the temporary random checkpoint")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.height, args.width = (int(v) for v in args.size.lower().split("x"))
    if args.child:
        result = speed_child(args.checkpoint, args.child, args.height, args.width, args.frames, args.cache)
        print(json.dumps(result))
        return

    modes = [m.strip() for m in args.modes.split(",")]
    config = ModelConfig.preset(args.preset)
    tokens = 1 + config.num_register_tokens + (args.height // 14) * (args.width // 14)
    print(f"CPU capability found: {cpu_capability()}", flush=True)
    block = measure_blocks(config.embed_dim, tokens)
    speed = run_speed(args, modes)
    # Accuracy of what each speed run ran as (auto resolves per model: the bundled model alone would stay fp32).
    resolved = sorted({run["resolved"] for run in speed} - {"fp32"})
    accuracy = run_accuracy(resolved, args.sequences, args.accuracy_frames)
    report = {
        "config": {
            "preset": args.preset,
            "size": args.size,
            "frames": args.frames,
            "cache": args.cache,
            "repeats": args.repeats,
        },
        "machine": {
            "cpu": cpu_name(),
            "flags": cpu_flags(),
            "capability": cpu_capability(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": args.threads,
        },
        "block_shape": f"[1, {tokens}, {config.embed_dim}]",
        "block_ms": {mode: 1e3 * s for mode, s in block.items()},
        "accuracy": accuracy,
        "speed": speed,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_precision.json").write_text(json.dumps(report, indent=1))
    print_table(report)


if __name__ == "__main__":
    main()
