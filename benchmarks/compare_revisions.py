"""Before/after: the streaming benchmark of two source trees, run alternately on this machine in one run.

Each tree runs its own ``benchmarks/streaming.py`` (so each uses its own API) with the same arguments, in a
subprocess whose ``PYTHONPATH`` is that tree's ``src``; the trees take turns ``--repeats`` times, so that load on a
shared machine falls on both alike. Prints a table of the median per-frame step latency per cache policy (frames
after the first, which pays for warm-up) and writes ``compare_revisions.json`` to ``--out``.

    git worktree add /tmp/before <commit>
    python benchmarks/compare_revisions.py --before /tmp/before --after . --preset small --size 168x224 \\
        --frames 24 --policies full,window:8,budget:2048 --repeats 2
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
from pathlib import Path

import torch


def run_tree(tree: Path, arguments: list[str], out: Path) -> dict:
    """One run of ``tree``'s streaming benchmark; its JSON report."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    command = [sys.executable, str(tree / "benchmarks" / "streaming.py"), *arguments, "--out", str(out)]
    subprocess.run(command, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "streaming.json").read_text())


def step_latencies(report: dict) -> dict[str, list[float]]:
    """Per policy: the step latencies in seconds of every frame after the first."""
    return {policy: run["latency_s"][1:] for policy, run in report["stream"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="source tree of the earlier revision")
    parser.add_argument("--after", type=Path, required=True, help="source tree of the later revision")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", default="168x224")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--policies", default="full,window:8,budget:2048")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="runs per tree, alternating")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    arguments = [
        *("--preset", args.preset, "--size", args.size, "--frames", str(args.frames)),
        *("--policies", args.policies, "--full-max", str(args.frames), "--offline-max", "2"),
        *("--precision", args.precision, "--threads", str(args.threads)),
    ]
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    latencies: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for name, tree in trees.items():
                report = run_tree(tree, arguments, Path(scratch) / f"{name}-{repeat}")
                for policy, values in step_latencies(report).items():
                    latencies[name].setdefault(policy, []).extend(values)
    medians = {name: {p: statistics.median(v) for p, v in runs.items()} for name, runs in latencies.items()}
    capability = torch.backends.cpu.get_cpu_capability()
    print(
        f"{args.preset} {args.size} {args.precision}, {args.frames} frames x {args.repeats} runs per tree, "
        f"{args.threads} threads, CPU {platform.processor() or platform.machine()} ({capability})"
    )
    print(f"{'policy':<16}{'before ms':>12}{'after ms':>12}{'after/before':>14}")
    for policy in medians["before"]:
        before, after = medians["before"][policy], medians["after"].get(policy, float("nan"))
        print(f"{policy:<16}{1e3 * before:>12.1f}{1e3 * after:>12.1f}{after / before:>14.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "config": {**vars(args), "before": str(args.before), "after": str(args.after), "out": str(args.out)},
        "machine": {"platform": platform.platform(), "cpu_capability": capability, "torch": torch.__version__},
        "median_step_s": medians,
        "step_s": latencies,
    }
    (args.out / "compare_revisions.json").write_text(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
