"""A real ``streamvggt reconstruct`` killed with SIGKILL (before its first save, between saves, during a save) and
run again with ``--resume`` writes the outputs of a run never interrupted; every refused resume is one line, exit
code 1, and leaves the earlier outputs as they were."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamvggt.io.run_state import STATE_DIR, RunStateStore
from streamvggt.pipeline.reconstructor import reconstruct
from tests.helpers import run_cli
from tests.reconstruct_helpers import WIDTH, tiny_checkpoint, write_images, write_video

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = Path(__file__).resolve().parent / "resume_launcher.py"
FRAMES = 7
EVERY = 2  # saves after frames 2, 4 and 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("input") / "frames"
    write_images(folder, [f"{i:03d}.png" for i in range(FRAMES)])
    return folder


def command(source: Path, output: Path, checkpoint: Path, *extra) -> list[str]:
    args = ["reconstruct", source, "-o", output, "--checkpoint", checkpoint, "--size", WIDTH, "--no-progress"]
    return [str(a) for a in (*args, "--state-every", EVERY, *extra)]


def killed(point: str, count: int, kind: str, *args: str, only: str | None = None) -> None:
    """Run the launcher in a new process, killed with SIGKILL at ``point`` of save number ``count`` (counting
    only saves into folders whose path holds ``only``)."""
    # One thread, as the tests run (conftest): the kernels then round alike in both processes.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    if only is not None:
        env["RESUME_KILL_ONLY"] = only
    result = subprocess.run(
        [sys.executable, str(LAUNCHER), point, str(count), kind, *args], env=env, capture_output=True, text=True
    )
    assert result.returncode == -signal.SIGKILL, f"not killed ({result.returncode}): {result.stderr[-2000:]}"


def outputs(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and STATE_DIR not in p.relative_to(folder).parts
    }


def assert_same_outputs(expected: Path, actual: Path) -> None:
    """Every output file of an uninterrupted run, with the same bytes (npy arrays: equal to float rounding)."""
    want, got = outputs(expected), outputs(actual)
    assert sorted(got) == sorted(want)
    for name, data in want.items():
        if data == got[name]:
            continue
        if name.endswith(".npy"):
            a, b = np.load(io.BytesIO(data)), np.load(io.BytesIO(got[name]))
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7, err_msg=name)
            continue
        if name == "cameras.json":
            assert json.loads(data) == json.loads(got[name]), name
            continue
        raise AssertionError(f"{name} differs from the uninterrupted run's")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, frames, checkpoint):
    """Uninterrupted runs by cache policy and extra flags (made once each)."""
    made: dict[tuple, Path] = {}

    def get(*extra: str) -> Path:
        if extra not in made:
            out = tmp_path_factory.mktemp("whole") / "out"
            code, _, err = run_cli(*command(frames, out, checkpoint, *extra))
            assert code == 0, err
            made[extra] = out
        return made[extra]

    return get


CASES = [
    ("save", 1, ("--cache", "full")),  # before the first save: nothing to resume, the run starts over
    ("save", 3, ("--cache", "full")),  # between saves: killed after frame 6 was written, saved after frame 4
    ("switch", 2, ("--cache", "full")),  # during the second save: its generation complete, CURRENT not yet moved
    ("save", 2, ("--cache", "window:2")),
    ("switch", 3, ("--cache", "budget:75")),
    ("save", 3, ("--cache", "window:2+int8")),
    ("switch", 2, ("--cache", "budget:75+int8", "--voxel-size", "0.05")),
    ("save", 3, ("--cache", "window:3", "--loop-closure")),
    # killed as it marks the run finished, its outputs written: every frame is done, only the outputs are redone
    ("save", 4, ("--cache", "window:2", "--max-frames", "6")),
]


@pytest.mark.parametrize(("point", "count", "extra"), CASES, ids=lambda v: "_".join(v) if isinstance(v, tuple) else v)
def test_a_killed_run_resumes_to_the_uninterrupted_outputs(
    tmp_path, frames, checkpoint, uninterrupted, point, count, extra
):
    out = tmp_path / "out"
    killed(point, count, "cli", *command(frames, out, checkpoint, *extra))
    state = RunStateStore.in_output(out).load()
    saved_frames = 0 if state is None else state.meta["frames"]
    expected = {("save", 1): 0, ("save", 2): 2, ("save", 3): 4, ("save", 4): 6, ("switch", 2): 2, ("switch", 3): 4}
    assert saved_frames == expected[(point, count)]
    code, stdout, err = run_cli(*command(frames, out, checkpoint, *extra), "--resume")
    assert code == 0, err
    if saved_frames:
        assert stdout.startswith(f"resumed after frame {saved_frames}\n")
    else:
        assert "nothing to resume" in err
    assert_same_outputs(uninterrupted(*extra), out)
    assert RunStateStore.in_output(out).load().meta["finished"] is True


def test_resuming_a_finished_run_changes_nothing(tmp_path, frames, checkpoint):
    out = tmp_path / "out"
    assert run_cli(*command(frames, out, checkpoint))[0] == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, stdout, err = run_cli(*command(frames, out, checkpoint), "--resume")
    assert (code, err) == (0, "")
    assert stdout == f"{out} holds a finished run ({FRAMES} frames, " + stdout.split("frames, ")[1]
    assert "nothing to resume, nothing changed" in stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_query_point_tracks_go_on_after_a_kill(tmp_path, frames, checkpoint):
    """Tracks are not written to files: the Python API's results after the resume equal the uninterrupted run's."""
    queries = [[10.0, 12.0], [40.0, 30.0], [60.0, 50.0]]
    common = {"size": WIDTH, "query_points": queries, "state_every": EVERY, "cache": "window:2"}
    whole = []
    reconstruct(frames, tmp_path / "whole", checkpoint, on_frame=whole.append, **common)
    out = tmp_path / "out"
    keywords = {"source": str(frames), "output": str(out), "model": str(checkpoint), **common}
    killed("save", 3, "api", json.dumps(keywords))
    resumed = []
    summary = reconstruct(frames, out, checkpoint, on_frame=resumed.append, resume=True, **common)
    assert summary.resumed_from == 4 and summary.frames == FRAMES
    assert [r.index for r in resumed] == list(range(4, FRAMES))
    for want, got in zip(whole[4:], resumed, strict=True):
        for key in ("tracks", "track_vis", "track_conf", "depth", "extrinsic"):
            np.testing.assert_array_equal(getattr(got, key), getattr(want, key), err_msg=key)
    assert_same_outputs(tmp_path / "whole", out)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, frames, checkpoint) -> Path:
    """An output folder whose run was killed after its second save."""
    out = tmp_path_factory.mktemp("killed") / "out"
    killed("save", 3, "cli", *command(frames, out, checkpoint))
    return out


def refused(out: Path, *args) -> str:
    """Run a refused resume on a copy of ``out``; checks one line, exit code 1 and untouched outputs."""
    before = {name: data for name, data in outputs(out).items()}
    state_before = {p.relative_to(out): p.read_bytes() for p in (out / STATE_DIR).rglob("*") if p.is_file()}
    code, stdout, err = run_cli(*args)
    assert code == 1 and stdout == "", err
    assert err.count("\n") == 1 and err.startswith("streamvggt reconstruct: error: "), err
    assert outputs(out) == before
    state_after = {p.relative_to(out): p.read_bytes() for p in (out / STATE_DIR).rglob("*") if p.is_file()}
    assert state_after == state_before
    return err


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "out"))


def test_a_changed_option_is_refused(tmp_path, interrupted, frames, checkpoint):
    out = copy_of(interrupted, tmp_path)
    err = refused(out, *command(frames, out, checkpoint, "--conf-threshold", "40"), "--resume")
    assert "the option output.conf_threshold differs: 50.0 was saved, 40.0 given" in err


def test_a_changed_checkpoint_is_refused(tmp_path, interrupted, frames, checkpoint):
    out = copy_of(interrupted, tmp_path)
    other = tiny_checkpoint(tmp_path / "other")
    err = refused(out, *command(frames, out, other), "--resume")
    assert "the checkpoint differs" in err


def test_a_changed_input_is_refused(tmp_path, interrupted, frames, checkpoint):
    out = copy_of(interrupted, tmp_path)
    changed = Path(shutil.copytree(frames, tmp_path / "frames"))
    err = refused(out, *command(changed, out, checkpoint), "--resume")
    assert "the input differs" in err


def test_a_grown_input_folder_is_refused(tmp_path, checkpoint):
    folder = tmp_path / "frames"
    write_images(folder, [f"{i:03d}.png" for i in range(FRAMES)])
    out = tmp_path / "out"
    killed("save", 2, "cli", *command(folder, out, checkpoint))
    write_images(tmp_path / "more", [f"{i:03d}.png" for i in range(FRAMES + 1)])
    shutil.copy(tmp_path / "more" / f"{FRAMES:03d}.png", folder / f"{FRAMES:03d}.png")
    err = refused(out, *command(folder, out, checkpoint), "--resume")
    assert f"changed since the state was saved: files 1 added ({FRAMES:03d}.png...)" in err


def test_a_damaged_state_is_reported_not_used(tmp_path, interrupted, frames, checkpoint):
    out = copy_of(interrupted, tmp_path)
    saved = RunStateStore.in_output(out).load()
    target = saved.path / "stream.safetensors"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    err = refused(out, *command(frames, out, checkpoint), "--resume")
    assert "is damaged: stream.safetensors does not match its checksum" in err


def test_a_camera_or_live_stream_is_refused(tmp_path, interrupted, checkpoint):
    out = copy_of(interrupted, tmp_path)
    video = write_video(tmp_path / "clip.mp4", frames=4)
    err = refused(out, *command(Path(f"file:{video}"), out, checkpoint), "--resume")
    assert "a camera or live stream cannot be resumed" in err


def test_a_rerun_without_resume_removes_the_interrupted_state(tmp_path, interrupted, frames, checkpoint, uninterrupted):
    out = copy_of(interrupted, tmp_path)
    code, _, err = run_cli(*command(frames, out, checkpoint, "--state-every", "0"))
    assert code == 0, err
    assert not (out / STATE_DIR).exists()
    assert_same_outputs(uninterrupted("--cache", "full"), out)


def test_a_bad_state_every_is_a_usage_error(tmp_path, frames, checkpoint):
    code, _, err = run_cli(*command(frames, tmp_path / "out", checkpoint, "--state-every", "-1"))
    assert code == 2 and err.count("\n") == 1 and "--state-every" in err
    assert not (tmp_path / "out").exists()


def test_a_loop_closed_finish_cannot_be_resumed_from_the_state_it_invalidates(
    tmp_path, frames, checkpoint, monkeypatch
):
    """The finish of a --loop-closure run rescales per-frame depth: while it runs no state is current, so a kill
    there makes --resume start over instead of rescaling twice."""
    from streamvggt.io.outputs.writer import ReconstructionWriter

    current = []
    original = ReconstructionWriter.finish

    def finish(self, *args, **keywords):
        current.append(RunStateStore.in_output(self.output_dir).load())
        return original(self, *args, **keywords)

    monkeypatch.setattr(ReconstructionWriter, "finish", finish)
    out = tmp_path / "out"
    reconstruct(frames, out, checkpoint, size=WIDTH, cache="window:3", state_every=EVERY, loop_closure=True)
    assert current == [None]
    assert RunStateStore.in_output(out).load().meta["finished"] is True
