"""``reconstruct-many`` killed with SIGKILL midway through an input goes on, when run again, from that input's
saved state (a batch of one) rather than its first frame, and writes what an uninterrupted run writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamvggt.collection.outputs import OutputRoot
from streamvggt.io.run_state import STATE_DIR, RunStateStore
from tests.reconstruct_helpers import WIDTH, tiny_checkpoint, write_images
from tests.test_resume_run import assert_same_outputs, killed, run_cli

FRAMES = 7


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    for name in ("a", "b"):
        write_images(folder / name, [f"{i:03d}.png" for i in range(FRAMES)])
    path = folder / "manifest.txt"
    path.write_text(f"{folder / 'a'}\n{folder / 'b'}\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint"))


def command(manifest: Path, root: Path, checkpoint: Path, *extra) -> list[str]:
    args = ["reconstruct-many", manifest, "-o", root, "--checkpoint", checkpoint, "--size", WIDTH, "--no-progress"]
    return [str(a) for a in (*args, "--state-every", 2, *extra)]


def test_an_interrupted_input_resumes_from_its_saved_state(tmp_path, manifest, checkpoint):
    whole = tmp_path / "whole"
    code, _, err = run_cli(*command(manifest, whole, checkpoint))
    assert code == 0, err
    root = tmp_path / "root"
    # b's saves: after frames 2, 4, 6: killed at the third, once a is done or still writing its outputs
    killed("save", 3, "cli", *command(manifest, root, checkpoint), only=f"staging{os.sep}b")
    staging = OutputRoot(root).state / "staging" / "b"
    saved = RunStateStore.in_output(staging).load()
    assert saved is not None and saved.meta["frames"] == 4
    code, _, err = run_cli(*command(manifest, root, checkpoint), "--verbose")
    assert code == 0, err
    assert f"b: resumed after frame {saved.meta['frames']}" in err
    for name in ("a", "b"):
        assert_same_outputs(whole / name, root / name)


def test_a_larger_batch_saves_no_state_and_starts_inputs_over(tmp_path, manifest, checkpoint):
    root = tmp_path / "root"
    code, _, err = run_cli(*command(manifest, root, checkpoint, "--batch", "2"))
    assert code == 0, err
    assert not any(p.name == STATE_DIR for p in root.rglob("*"))
