"""``reconstruct-many`` killed with SIGKILL midway through an input goes on, when run again, from that input's
saved state (in a batch of any size: its slot's state) rather than its first frame, and writes what an
uninterrupted run writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamvggt.collection.outputs import OutputRoot
from streamvggt.io.run_state import RunStateStore
from tests.reconstruct_helpers import WIDTH, tiny_checkpoint, write_images
from tests.test_reconstruct_many import assert_same_reconstruction
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


def test_an_interrupted_input_of_a_larger_batch_resumes_from_its_slot_state(tmp_path, checkpoint):
    """--batch 2 over inputs of 5, 7 and 4 frames: b's slot is saved after frames 2, 4, 6 while a, then c, stream
    beside it (the slots' streams have different lengths); killed at its third save, the rerun (a batch of 2
    again: b and c are left) resumes b from its slot's state and writes what an uninterrupted run writes."""
    folder = tmp_path / "inputs"
    for name, count in (("a", 5), ("b", FRAMES), ("c", 4)):
        write_images(folder / name, [f"{i:03d}.png" for i in range(count)])
    manifest = folder / "manifest.txt"
    manifest.write_text("".join(f"{folder / name}\n" for name in "abc"), encoding="utf-8")
    whole = tmp_path / "whole"
    code, _, err = run_cli(*command(manifest, whole, checkpoint, "--batch", "2"))
    assert code == 0, err
    root = tmp_path / "root"
    killed("save", 3, "cli", *command(manifest, root, checkpoint, "--batch", "2"), only=f"staging{os.sep}b")
    staging = OutputRoot(root).state / "staging" / "b"
    saved = RunStateStore.in_output(staging).load()
    assert saved is not None and saved.meta["frames"] == 4
    code, _, err = run_cli(*command(manifest, root, checkpoint, "--batch", "2"), "--verbose")
    assert code == 0, err
    assert f"b: resumed after frame {saved.meta['frames']}" in err
    # A batched step rounds with its batch's other rows (which differ between runs as threads interleave): the
    # tolerance of a batch against lone steps (tests/test_reconstruct_many.py).
    for name in "abc":
        assert_same_reconstruction(root / name, whole / name)
