"""Batched streams: a collection reconstructed with ``reconstruct-many --batch B`` for several B, in one run.

A collection of image folders of different lengths (a smooth moving pattern, random weights: speed does not
depend on them) is reconstructed end to end for each B, writing every output, as ``reconstruct-many`` does. For
each B it reports frames per second in total (wall time, writing included) and inside the batched model steps
only, the batched steps run, the caches at their largest and the peak resident memory of the process while that
B ran. Prints a Markdown table and writes ``batched_streams.json`` to ``--out``.

    python benchmarks/batched_streams.py --preset small --size 154 --batches 1,2,4,8 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
from pathlib import Path

import numpy as np
import psutil
import torch
from PIL import Image

from streamvggt import ModelConfig, StreamVGGT
from streamvggt.collection import reconstruct_collection
from streamvggt.collection.summary import DONE


def write_collection(root: Path, lengths: list[int], width: int, height: int) -> Path:
    """Image folders clip_00, clip_01, ... of ``lengths`` frames, each pattern a little different, and a
    manifest listing them."""
    v, u = np.mgrid[0:height, 0:width] / 12.0
    names = []
    for clip, length in enumerate(lengths):
        folder = root / f"clip_{clip:02d}"
        folder.mkdir(parents=True)
        for t in range(length):
            channels = [np.sin(u + 0.2 * t + clip + c) * np.cos(0.8 * v - 0.1 * t + c) for c in (0.0, 2.0, 4.0)]
            pixels = np.round(127.5 + 127.5 * np.stack(channels, axis=-1)).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{t:03d}.png")
        names.append(folder.name)
    (root / "manifest.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return root / "manifest.txt"


class PeakMemory:
    """Samples this process's resident memory every 20 ms while in use; ``peak`` in bytes."""

    def __init__(self) -> None:
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._done.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            self._done.wait(0.02)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", type=int, default=154, help="frame width; height is 8/11 of it (112 for 154)")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--lengths", default="3,5,4,6,3,5,4,6", help="frames of each input of the collection")
    parser.add_argument("--cache", default="full")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = StreamVGGT(ModelConfig.preset(args.preset)).eval()
    width, height = args.size, args.size * 8 // 11 // 14 * 14
    lengths = [int(n) for n in args.lengths.split(",")]
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "load_before": os.getloadavg(),
    }
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        manifest = write_collection(Path(scratch) / "inputs", lengths, width, height)
        for batch in (int(b) for b in args.batches.split(",")):
            with PeakMemory() as memory:
                result = reconstruct_collection(
                    manifest, Path(scratch) / f"out-{batch}", model, batch_size=batch, size=width, cache=args.cache
                )
            assert all(r.status == DONE for r in result.records), result.records
            rows.append(
                {
                    "batch": batch,
                    "frames": result.stream_frames,
                    "seconds": result.seconds,
                    "frames_per_s": result.stream_frames / result.seconds,
                    "model_frames_per_s": result.stream_frames / result.step_seconds,
                    "steps": result.steps,
                    "peak_cache_mib": result.peak_cache_bytes / 2**20,
                    "peak_rss_mib": memory.peak / 2**20,
                    "load_after": os.getloadavg()[0],
                }
            )
            print(f"B={batch}: {rows[-1]['frames_per_s']:.3f} frames/s", flush=True)
    report = {
        "preset": args.preset,
        "frame_size": [height, width],
        "inputs": lengths,
        "cache": args.cache,
        "machine": machine,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batched_streams.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(
        f"\n{args.preset} preset, {height}x{width}, {len(lengths)} inputs of {lengths} frames, cache {args.cache}, "
        f"CPU {machine['cpu_capability']}, {args.threads} threads, torch {torch.__version__}, "
        f"load before {machine['load_before'][0]:.2f}\n"
    )
    print("| B | frames/s in total | frames/s in model steps | steps | wall s | peak cache MiB | peak RSS MiB | load |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['frames_per_s']:.3f} | {r['model_frames_per_s']:.3f} | {r['steps']} | "
            f"{r['seconds']:.1f} | {r['peak_cache_mib']:.1f} | {r['peak_rss_mib']:.0f} | {r['load_after']:.2f} |"
        )


if __name__ == "__main__":
    main()
