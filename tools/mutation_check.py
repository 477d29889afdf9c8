"""Mutation check: plant hand-written faults in a copy of the sources, run the tests meant to catch each one, and
report which faults survive.

    .venv/bin/python tools/mutation_check.py                 # every fault; exit status 1 unless all are killed
    .venv/bin/python tools/mutation_check.py --only int8-scatter-noop window-length-short
    .venv/bin/python tools/mutation_check.py --all-failures  # list every failing test, not just the first

The working tree is never modified: ``src/`` is copied into a temporary folder, each fault is written into that
copy only, and the tests run from the repository with the copy first on PYTHONPATH (the editable install comes
later on sys.path). Bytecode is not written, so a mutated file is never shadowed by a stale .pyc.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STREAM_TESTS = (
    "tests/test_cache.py",
    "tests/test_cache_policies.py",
    "tests/test_stream.py",
    "tests/test_stream_slots.py",
)
GEOMETRY_TESTS = ("tests/test_geometry.py",)
FAULT_TIMEOUT_S = 900


@dataclasses.dataclass(frozen=True)
class Fault:
    """One planted defect: each ``(old, new)`` edit replaces the single occurrence of ``old`` in ``path``."""

    name: str
    path: str  # relative to src/streamvggt
    what: str
    edits: tuple[tuple[str, str], ...]
    tests: tuple[str, ...] = STREAM_TESTS


FAULTS = (
    # --- streaming/cache.py: storage ---
    Fault(
        "int8-scatter-noop",
        "streaming/cache.py",
        "Int8Store.scatter writes nothing: +int8 budget evictions and full window rings keep stale tokens",
        (("        k_q = self._quantize_keys(k)\n        v_q, v_scale", "        return\n        v_q, v_scale"),),
    ),
    Fault(
        "diverging-streams-read-garbage",
        "streaming/cache.py",
        "storage nobody wrote is not zeroed when batch elements' streams diverge (masked slots may hold NaN)",
        (("        self.store.zero_from(self.length)  # from now on", "        pass  # from now on"),),
    ),
    Fault(
        "plain-scatter-noop",
        "streaming/cache.py",
        "PlainStore.scatter writes nothing: budget evictions and full window rings keep stale tokens",
        (("        index = slots.unsqueeze(-1).expand(-1, -1, -1, k.shape[-1])\n", "        return\n"),),
    ),
    Fault(
        "int8-value-scale-not-scattered",
        "streaming/cache.py",
        "scattered int8 values keep the overwritten tokens' value scales",
        (("        self.v_scale.scatter_(2, index, v_scale)\n", ""),),
    ),
    Fault(
        "int8-scale-not-updated",
        "streaming/cache.py",
        "the int8 key scale is set by the first frame and never raised",
        (
            (
                "        self.k_scale.copy_(scale)",
                "        self.k_scale.copy_(scale if self.length_hint == 0 else self.k_scale)",
            ),
        ),
    ),
    Fault(
        "int8-stored-keys-not-rescaled",
        "streaming/cache.py",
        "when the key scale grows, stored int8 keys keep codes of the old scale",
        (("            stored.copy_(", "            stored.clone().copy_("),),
    ),
    Fault(
        "int8-key-scale-per-head",
        "streaming/cache.py",
        "int8 keys share one scale per head instead of one per channel",
        (
            (
                "new_max = k.abs().amax(dim=2, keepdim=True) / 127.0",
                "new_max = k.abs().amax(dim=(2, 3), keepdim=True) / 127.0",
            ),
        ),
    ),
    Fault(
        "full-growth-drops-tokens",
        "streaming/cache.py",
        "growing the full cache's storage does not copy the stored tokens",
        (("max_capacity), self.length)", "max_capacity), 0)"),),
    ),
    # --- streaming/cache.py: policies ---
    Fault(
        "window-length-short",
        "streaming/cache.py",
        "window:K reads the anchor plus K-1 frames (off by one)",
        (("min(self.frames_seen, 1 + self.frames)", "min(self.frames_seen, self.frames)"),),
    ),
    Fault(
        "window-anchor-not-pinned",
        "streaming/cache.py",
        "window:K rotates the anchor's slot too (keeps the K+1 latest frames)",
        (
            (
                "return 0 if frames_seen == 0 else 1 + (frames_seen - 1) % self.frames",
                "return frames_seen % (1 + self.frames)",
            ),
            ("slot = 1 + (self._ring - 1) % self.frames", "slot = self._ring % (1 + self.frames)"),
        ),
    ),
    Fault(
        "window-ring-overwrites-wrong-frame",
        "streaming/cache.py",
        "once the ring is full, window:K overwrites the second-oldest frame instead of the oldest",
        (("slot = 1 + (self._ring - 1) % self.frames", "slot = 1 + self._ring % self.frames"),),
    ),
    Fault(
        "budget-evicts-one-frame-early",
        "streaming/cache.py",
        "budget:N starts evicting when the new frame would exactly fill the budget (< instead of <=)",
        (("if self.length + k.shape[2] <= self.budget:", "if self.length + k.shape[2] < self.budget:"),),
    ),
    Fault(
        "budget-evicts-least-redundant",
        "streaming/cache.py",
        "budget:N evicts the least redundant keys (keeps the wrong tokens)",
        (("redundancy = (evictable @ total", "redundancy = -(evictable @ total"),),
    ),
    Fault(
        "budget-mean-includes-anchor",
        "streaming/cache.py",
        "budget:N scores redundancy against the sum (mean direction) of all keys, anchor included",
        (
            (
                "total = evictable.sum(dim=2, keepdim=True)",
                "total = (keys if rows is None else keys[rows]).sum(dim=2, keepdim=True)",
            ),
        ),
    ),
    Fault(
        "budget-first-stream-decides",
        "streaming/cache.py",
        "budget:N evicts every stream of a batch by the first stream's scores",
        (
            (
                "/ norms  # [B, heads, n]",
                "/ norms\n        redundancy = redundancy[:1].expand_as(redundancy)  # [B, heads, n]",
            ),
        ),
    ),
    Fault(
        "budget-anchor-not-pinned",
        "streaming/cache.py",
        "budget:N may evict first-frame tokens",
        (
            (
                "(keys if rows is None else keys[rows])[:, :, self.frame_tokens :]",
                "(keys if rows is None else keys[rows])",
            ),
            ("slots.numel() - ranked.values + self.frame_tokens", "slots.numel() - ranked.values"),
        ),
    ),
    # --- streaming/session.py ---
    Fault(
        "stream-position-off-by-one",
        "streaming/session.py",
        "step passes the aggregator the frame position plus one (frame 0 gets the later frames' tokens)",
        (
            (
                "positions = self.slot_frames if len(set(self.slot_frames)) > 1 else self.slot_frames[0]",
                "positions = [count + 1 for count in self.slot_frames]",
            ),
        ),
    ),
    Fault(
        "stream-reopens-at-frame-1",
        "streaming/session.py",
        "the frame counter test is off by one: caches are reallocated at frame 1 (the anchor is lost)",
        (("if self.num_frames == 0:", "if self.num_frames <= 1:"),),
    ),
    Fault(
        "stream-position-not-advanced",
        "streaming/session.py",
        "the per-element frame position never advances (every frame is given the first frame's tokens)",
        (("[count + 1 for count in self.slot_frames]", "[count for count in self.slot_frames]"),),
    ),
    Fault(
        "stream-counts-two-per-step",
        "streaming/session.py",
        "num_frames advances by two per step",
        (("self.num_frames += 1", "self.num_frames += 2"),),
    ),
    Fault(
        "caches-survive-reset",
        "streaming/cache.py",
        "reset() keeps the trunk caches and the next stream appends to them",
        (
            ("        self.trunk: list[LayerCache] = []\n", ""),
            (
                "self.trunk = [self.policy.new_layer(frame_tokens)",
                "self.trunk = getattr(self, 'trunk', None) or [self.policy.new_layer(frame_tokens)",
            ),
        ),
    ),
    Fault(
        "camera-caches-survive-reset",
        "streaming/cache.py",
        "reset() keeps the camera head's caches and the next stream appends to them",
        (
            ("        self.camera: list[list[LayerCache]] = []\n", ""),
            ("self.camera = [", "self.camera = getattr(self, 'camera', None) or ["),
        ),
    ),
    Fault(
        "reset-keeps-frame-count",
        "streaming/session.py",
        "reset() leaves num_frames as it was (the next frame is not an anchor)",
        (("        self.num_frames = 0\n", "        self.num_frames = getattr(self, 'num_frames', 0)\n"),),
    ),
    Fault(
        "int8-reset-slot-keeps-scale",
        "streaming/cache.py",
        "reset_slot leaves the element's int8 key scale as it was",
        (("            self.k_scale[index] = 0\n", "            pass\n"),),
    ),
    Fault(
        "window-reset-slot-keeps-ring",
        "streaming/cache.py",
        "reset_slot does not restart the element's window ring",
        (("            self.slot_frames[index] = 0\n", "            pass\n"),),
    ),
    Fault(
        "camera-budget-in-tokens",
        "streaming/cache.py",
        "the camera head's budget stays N tokens instead of N // frame_tokens frames",
        (("tokens=max(2, self.policy.tokens // frame_tokens)", "tokens=self.policy.tokens"),),
    ),
    Fault(
        "camera-caches-shared-across-iterations",
        "streaming/cache.py",
        "one camera cache list serves every refinement iteration (the reference's stream bug)",
        (
            (
                "[camera_policy.new_layer(1) for _ in range(camera_blocks)] for _ in range(camera_iterations)",
                "*[[camera_policy.new_layer(1) for _ in range(camera_blocks)]] * camera_iterations",
            ),
        ),
    ),
    # --- geometry.py: key conventions ---
    Fault(
        "pose-rotation-transposed",
        "geometry.py",
        "pose encodings decode to R^T (world-from-camera rotation)",
        (("rot = quat_to_mat(pose_enc[..., 3:7])", "rot = quat_to_mat(pose_enc[..., 3:7]).transpose(-1, -2)"),),
        GEOMETRY_TESTS,
    ),
    Fault(
        "invert-pose-not-transposed",
        "geometry.py",
        "invert_pose uses R instead of R^T",
        (("rot_t = pose[..., :3, :3].transpose(-1, -2)", "rot_t = pose[..., :3, :3]"),),
        GEOMETRY_TESTS,
    ),
    Fault(
        "projection-rotation-transposed",
        "geometry.py",
        "project_points rotates by R^T",
        (("cam = points @ extrinsic[..., :3, :3].transpose(-1, -2)", "cam = points @ extrinsic[..., :3, :3]"),),
        GEOMETRY_TESTS,
    ),
    Fault(
        "quaternion-scalar-first",
        "geometry.py",
        "quat_to_mat reads (w, x, y, z) instead of (x, y, z, w)",
        (("    x, y, z, w = quat.unbind(-1)", "    w, x, y, z = quat.unbind(-1)"),),
        GEOMETRY_TESTS,
    ),
    Fault(
        "mat-to-quat-scalar-first",
        "geometry.py",
        "mat_to_quat returns (w, x, y, z)",
        (
            (
                "    return torch.where(quat[..., 3:] < 0, -quat, quat)",
                "    return torch.where(quat[..., 3:] < 0, -quat, quat).roll(1, -1)",
            ),
        ),
        GEOMETRY_TESTS,
    ),
    Fault(
        "principal-point-swapped",
        "geometry.py",
        "intrinsics put the principal point at (H/2, W/2)",
        (
            ("intrinsic[..., 0, 2] = width / 2", "intrinsic[..., 0, 2] = height / 2"),
            ("intrinsic[..., 1, 2] = height / 2", "intrinsic[..., 1, 2] = width / 2"),
        ),
        GEOMETRY_TESTS,
    ),
    Fault(
        "principal-point-half-pixel",
        "geometry.py",
        "intrinsics put the principal point at ((W-1)/2, (H-1)/2)",
        (
            ("intrinsic[..., 0, 2] = width / 2", "intrinsic[..., 0, 2] = (width - 1) / 2"),
            ("intrinsic[..., 1, 2] = height / 2", "intrinsic[..., 1, 2] = (height - 1) / 2"),
        ),
        GEOMETRY_TESTS,
    ),
    Fault(
        "fov-order-swapped",
        "geometry.py",
        "the encoding's fields of view are read as (fov_w, fov_h)",
        (
            ("fy = (height / 2) / torch.tan(fov[..., 0] / 2)", "fy = (height / 2) / torch.tan(fov[..., 1] / 2)"),
            ("fx = (width / 2) / torch.tan(fov[..., 1] / 2)", "fx = (width / 2) / torch.tan(fov[..., 0] / 2)"),
        ),
        GEOMETRY_TESTS,
    ),
    Fault(
        "camera-centre-is-translation",
        "geometry.py",
        "camera_centers returns t instead of -R^T t",
        (("return invert_pose(extrinsic[..., :3, :])[..., 3]", "return extrinsic[..., :3, 3]"),),
        GEOMETRY_TESTS,
    ),
)


@dataclasses.dataclass
class Outcome:
    fault: Fault
    result: str  # "killed", "survived" or "stale" (the source no longer holds the text the fault edits)
    failures: list[str]
    seconds: float


def mutate(source: str, fault: Fault) -> str | None:
    """``source`` with the fault's edits, or None when an ``old`` does not occur exactly once (the source changed
    since the fault was written: update the fault)."""
    for old, new in fault.edits:
        if source.count(old) != 1:
            return None
        source = source.replace(old, new)
    return source


def run_tests(tests: tuple[str, ...], src: Path, stop_at_first: bool) -> tuple[int, list[str]]:
    """Run pytest on ``tests`` importing streamvggt from ``src``; return its exit code and the failing tests."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(src), os.environ.get("PYTHONPATH")))))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *tests]
    if stop_at_first:
        command.insert(4, "-x")
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=FAULT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return 124, [f"(timed out after {FAULT_TIMEOUT_S} s)"]
    failures = [
        line.split(" ", 1)[1].split(" - ", 1)[0]
        for line in result.stdout.splitlines()
        if line.startswith(("FAILED ", "ERROR "))
    ]
    if result.returncode not in (0, 1):  # collection or usage error: say why
        failures = failures or [result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "pytest error"]
    return result.returncode, failures


def imported_from(src: Path) -> str:
    """Where a subprocess with ``src`` on PYTHONPATH imports streamvggt from."""
    env = dict(os.environ, PYTHONPATH=str(src), PYTHONDONTWRITEBYTECODE="1")
    code = "import streamvggt; print(streamvggt.__file__)"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True).stdout


def check(faults: list[Fault], stop_at_first: bool) -> list[Outcome]:
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        if not imported_from(src).startswith(str(src)):
            raise SystemExit(f"the tests would not import the copy in {src}: check PYTHONPATH and the install")
        suites = sorted({t for fault in faults for t in fault.tests})
        code, failures = run_tests(tuple(suites), src, stop_at_first=False)
        if code != 0:
            raise SystemExit(f"the tests fail without any fault ({', '.join(failures)}): fix them first")
        outcomes = []
        for fault in faults:
            target = src / "streamvggt" / fault.path
            original = target.read_text(encoding="utf-8")
            mutated = mutate(original, fault)
            if mutated is None:
                outcomes.append(Outcome(fault, "stale", [], 0.0))
                print(f"stale    {fault.name}: its text is no longer in {fault.path}", flush=True)
                continue
            target.write_text(mutated, encoding="utf-8")
            start = time.monotonic()
            try:
                code, failures = run_tests(fault.tests, src, stop_at_first)
            finally:
                target.write_text(original, encoding="utf-8")
            outcome = Outcome(fault, "killed" if code != 0 else "survived", failures, time.monotonic() - start)
            print(f"{outcome.result:8} {fault.name} ({outcome.seconds:.0f} s)", flush=True)
            outcomes.append(outcome)
    return outcomes


def killers(failures: list[str]) -> str:
    """The first failing test of each test file, with how many more of that file failed."""
    by_file: dict[str, list[str]] = {}
    for test in failures:
        by_file.setdefault(test.split("::")[0], []).append(test)
    return "<br>".join(
        f"`{tests[0]}`" + (f" (+{len(tests) - 1})" if len(tests) > 1 else "") for tests in by_file.values()
    )


def table(outcomes: list[Outcome]) -> str:
    rows = ["| fault | file | what it breaks | result | killed by |", "|---|---|---|---|---|"]
    for o in outcomes:
        killers_cell = killers(o.failures) or "-"
        result = o.result if o.result == "killed" else f"**{o.result}**"
        rows.append(f"| `{o.fault.name}` | {o.fault.path} | {o.fault.what} | {result} | {killers_cell} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these faults")
    parser.add_argument(
        "--all-failures", action="store_true", help="run every test per fault, not up to the first failure"
    )
    args = parser.parse_args()
    names = {fault.name for fault in FAULTS}
    unknown = set(args.only or ()) - names
    if unknown:
        raise SystemExit(f"unknown fault(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(names))}")
    faults = [fault for fault in FAULTS if not args.only or fault.name in args.only]
    outcomes = check(faults, stop_at_first=not args.all_failures)
    print()
    print(table(outcomes))
    counts = {result: sum(o.result == result for o in outcomes) for result in ("killed", "survived", "stale")}
    print(f"\n{len(outcomes)} faults: " + ", ".join(f"{n} {result}" for result, n in counts.items()))
    sys.exit(0 if counts["killed"] == len(outcomes) else 1)


if __name__ == "__main__":
    main()
