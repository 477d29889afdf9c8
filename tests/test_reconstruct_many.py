"""reconstruct-many: a manifest of inputs -> one reconstruct folder per input, batched, sharded, resumable."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from streamvggt.cli import main
from streamvggt.collection import Shard, merge_collection, parse_shard, read_manifest, reconstruct_collection
from streamvggt.collection.outputs import OutputRoot
from streamvggt.collection.sharding import launcher_process
from streamvggt.collection.summary import read_shard_file
from streamvggt.io.errors import InputError, OutputError
from streamvggt.io.run_state import STATE_DIR
from streamvggt.pipeline.reconstructor import reconstruct
from streamvggt.runtime.precision import apply_precision
from streamvggt.streaming.session import StreamSession
from streamvggt.weights import load_model
from tests.reconstruct_helpers import tiny_checkpoint, tiny_model, write_images, write_video

WIDTH, HEIGHT, SIZE = 42, 28, 42  # frames the model sees unscaled: 3 x 2 patches
REPO = Path(__file__).resolve().parents[1]


def image_folder(root: Path, name: str, frames: int, width: int = WIDTH, height: int = HEIGHT) -> Path:
    write_images(root / name, [f"{i:03d}.png" for i in range(frames)], width, height)
    return root / name


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """Folders of 4, 2 and 3 frames, videos of 3 and 5 frames (1 fps of 3 s and 5 s), and a folder of wider frames
    (another size after preprocessing: 42 x 14), listed in a manifest with relative paths and one explicit name."""
    root = tmp_path_factory.mktemp("collection")
    image_folder(root / "inputs", "a", 4)
    image_folder(root / "inputs", "b", 2)
    image_folder(root / "inputs", "c", 3)
    write_video(root / "inputs" / "d.mp4", 12, fps=4, width=WIDTH, height=HEIGHT)
    image_folder(root / "inputs", "wide", 3, width=84, height=28)
    write_video(root / "inputs" / "e.mp4", 20, fps=4, width=WIDTH, height=HEIGHT)
    lines = ["# a comment", "inputs/a", "inputs/b", "", "inputs/c", "inputs/d.mp4\tclip-d", "inputs/wide"]
    lines.append("inputs/e.mp4")
    (root / "manifest.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def numbers_and_text(value):
    """A JSON value split into its numbers (a flat list) and everything else (numbers replaced by None)."""
    if isinstance(value, dict):
        parts = {k: numbers_and_text(v) for k, v in value.items()}
        return [n for p in parts.values() for n in p[0]], {k: p[1] for k, p in parts.items()}
    if isinstance(value, list):
        parts = [numbers_and_text(v) for v in value]
        return [n for p in parts for n in p[0]], [p[1] for p in parts]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value], None
    return [], value


def assert_same_reconstruction(actual: Path, expected: Path) -> None:
    """Same files; cameras.json equal but for float rounding in its numbers; depth maps equal to 1e-5."""

    def listing(folder: Path) -> list[str]:  # a run's saved state (reconstruct's finished marker) is no output
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if STATE_DIR not in p.parts)

    files = listing(expected)
    assert listing(actual) == files
    numbers, text = numbers_and_text(json.loads((actual / "cameras.json").read_text()))
    expected_numbers, expected_text = numbers_and_text(json.loads((expected / "cameras.json").read_text()))
    assert text == expected_text
    # Cameras are float32 network outputs composed with frame 0's inverse (the world is exactly the first camera),
    # so each carries frame 0's rounding too: a batch step and a lone step differ by a few float32 ulps of 1.
    np.testing.assert_allclose(numbers, expected_numbers, rtol=1e-5, atol=4e-6)
    depth_files = [f for f in files if f.startswith("depth/") and f.endswith(".npy")]
    assert depth_files
    for name in depth_files:
        np.testing.assert_allclose(np.load(actual / name), np.load(expected / name), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------- manifest


def test_manifest_lines_resolve_against_its_folder_with_names_from_the_input_or_after_a_tab(collection):
    entries = read_manifest(collection / "manifest.txt")
    assert [e.name for e in entries] == ["a", "b", "c", "clip-d", "wide", "e"]
    assert [e.index for e in entries] == [0, 1, 2, 3, 4, 5]
    assert entries[3].input == str(collection / "inputs" / "d.mp4")
    assert entries[0].where == f"{collection / 'manifest.txt'} line 2"


def test_a_folder_manifest_lists_its_videos_and_image_folders_in_natural_order(collection):
    (collection / "inputs" / "notes.txt").write_text("not an input")
    entries = read_manifest(collection / "inputs")
    assert [e.name for e in entries] == ["a", "b", "c", "d", "e", "wide"]


def test_manifest_problems_name_the_line(tmp_path):
    (tmp_path / "m.txt").write_text("x/Clip.mp4\ny/clip.mp4\n")  # one folder where case does not count
    with pytest.raises(InputError, match=r"m.txt line 2: output name 'clip' is also the name of .*m.txt line 1"):
        read_manifest(tmp_path / "m.txt")
    (tmp_path / "m.txt").write_text("a\tsummary.json\n")
    with pytest.raises(InputError, match=r"line 1: 'summary\.json' is the collection's own file"):
        read_manifest(tmp_path / "m.txt")
    (tmp_path / "m.txt").write_text("frames/*.png\n")
    with pytest.raises(InputError, match="line 1: a URL or glob needs an output name"):
        read_manifest(tmp_path / "m.txt")
    image_folder(tmp_path, "images", 2)
    with pytest.raises(InputError, match="holds images, not videos or image folders"):
        read_manifest(tmp_path / "images")


@pytest.mark.parametrize("name", ["clip.mp4", "photo.PNG"])
def test_a_video_or_image_given_as_the_manifest_is_called_one_input(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00\x90binary")
    message = f"{tmp_path / name} is one input, not a manifest: reconstruct it with streamvggt reconstruct"
    with pytest.raises(InputError, match=f"^{re.escape(message)}"):
        read_manifest(tmp_path / name)


@pytest.mark.parametrize("under", ["a_file", "a_file/out"])
def test_an_output_root_at_or_under_a_file_is_named_as_a_file(tmp_path, under):
    (tmp_path / "a_file").write_text("")
    message = f"cannot create output root {tmp_path / under}: {tmp_path / 'a_file'} is a file, not a folder"
    with pytest.raises(OutputError, match=f"^{re.escape(message)}$"):
        OutputRoot(tmp_path / under)


# ------------------------------------------------------------------------------------------------- sharding


def test_shards_split_the_manifest_disjointly_and_completely():
    items = list(range(11))
    shares = [Shard(i, 3).select(items) for i in range(3)]
    assert shares == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    # An array task's share split among a launcher's processes: tasks 0/2 and 1/2 of 2 processes each.
    nested = [Shard(task, 2).within(Shard(rank, 2)).select(items) for task in range(2) for rank in range(2)]
    assert sorted(i for share in nested for i in share) == items
    assert nested[1] == [2, 6, 10]  # task 0, rank 1: share 2 of 4, within task 0's share


def test_shard_option_and_launcher_environment():
    assert parse_shard("3/8") == Shard(3, 8)
    for bad in ("8/8", "1", "-1/2", "1/0"):
        with pytest.raises(ValueError, match="--shard must be i/n with 0 <= i < n"):
            parse_shard(bad)
    assert launcher_process({"WORLD_SIZE": "4", "RANK": "2"}) == Shard(2, 4)
    assert launcher_process({}) == Shard(0, 1)


# ----------------------------------------------------------------------------------------------- batching


def test_batch_of_two_with_slot_reuse_writes_what_reconstruct_writes_for_each_input(model, collection, tmp_path):
    result = reconstruct_collection(collection / "manifest.txt", tmp_path / "out", model, batch_size=2, size=SIZE)
    assert {r.name: (r.status, r.frames) for r in result.records} == {
        "a": ("done", 4),
        "b": ("done", 2),
        "c": ("done", 3),
        "clip-d": ("done", 3),
        "wide": ("done", 3),
        "e": ("done", 5),
    }
    assert result.stream_frames == 20
    assert result.steps < 20  # frames of different inputs shared steps
    assert result.summary["counts"] == {"done": 6, "skipped": 0, "failed": 0, "missing": 0}
    for entry in read_manifest(collection / "manifest.txt"):
        reconstruct(entry.input, tmp_path / "alone" / entry.name, model, size=SIZE)
        assert_same_reconstruction(tmp_path / "out" / entry.name, tmp_path / "alone" / entry.name)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".collection",
        "a",
        "b",
        "c",
        "clip-d",
        "e",
        "summary.json",
        "wide",
    ]


def test_the_summary_records_the_precision_each_input_ran_in(tmp_path):
    model = tiny_model()
    apply_precision(model, "bf16", torch.device("cpu"))
    image_folder(tmp_path / "inputs", "a", 2)
    image_folder(tmp_path / "inputs", "b", 2)
    result = reconstruct_collection(tmp_path / "inputs", tmp_path / "out", model, size=SIZE)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary == result.summary
    assert summary["precision"] == {"requested": ["bf16"], "resolved": ["bf16"]}
    assert [r["precision"] for r in summary["inputs"]] == [{"requested": "bf16", "resolved": "bf16"}] * 2


def test_complete_inputs_are_skipped_on_a_second_run(model, collection, tmp_path):
    first = reconstruct_collection(collection / "manifest.txt", tmp_path / "out", model, batch_size=2, size=SIZE)
    marker = OutputRoot(tmp_path / "out").marker("a")
    written = marker.stat().st_mtime_ns
    second = reconstruct_collection(collection / "manifest.txt", tmp_path / "out", model, batch_size=2, size=SIZE)
    assert [r.status for r in second.records] == ["skipped"] * 6
    assert second.steps == 0 and marker.stat().st_mtime_ns == written
    assert second.summary["inputs"] == first.summary["inputs"]


def run_many(manifest: Path, out: Path, checkpoint: Path, *extra: object) -> int:
    """``reconstruct-many`` in this process with the tiny checkpoint on the CPU."""
    args = ["reconstruct-many", manifest, "-o", out, "--checkpoint", checkpoint, "--device", "cpu", "--no-progress"]
    return main([str(a) for a in [*args, *extra]])


def test_a_rerun_with_other_options_redoes_complete_inputs_and_says_why(tmp_path, caplog):
    checkpoint = tiny_checkpoint(tmp_path / "model")
    image_folder(tmp_path / "inputs", "a", 2, width=70, height=56)
    image_folder(tmp_path / "inputs", "b", 2, width=70, height=56)
    out = tmp_path / "out"
    assert run_many(tmp_path / "inputs", out, checkpoint, "--size", 70) == 0
    assert np.load(out / "a" / "depth" / "000000.npy").shape == (56, 70)
    with caplog.at_level("WARNING", logger="streamvggt"):
        assert run_many(tmp_path / "inputs", out, checkpoint, "--size", 56) == 0
    assert np.load(out / "a" / "depth" / "000000.npy").shape == (42, 56)  # redone, not the old outputs
    assert "2 complete input(s) done again (a, b): made with other options (stream.size: 70 -> 56)" in caplog.text
    summary = json.loads((out / "summary.json").read_text())
    assert [r["redone"] for r in summary["inputs"]] == ["made with other options (stream.size: 70 -> 56)"] * 2
    (digest,) = summary["options"]
    assert [r["options"] for r in summary["inputs"]] == [digest] * 2
    assert summary["options"][digest]["stream"]["size"] == 56


def test_a_rerun_with_the_same_options_skips_and_force_redoes_every_input(tmp_path, capsys, caplog):
    checkpoint = tiny_checkpoint(tmp_path / "model")
    image_folder(tmp_path / "inputs", "a", 2)
    write_video(tmp_path / "inputs" / "d.mp4", 8, fps=4, width=WIDTH, height=HEIGHT)
    out, marker = tmp_path / "out", OutputRoot(tmp_path / "out").marker("a")
    assert run_many(tmp_path / "inputs", out, checkpoint, "--size", SIZE, "--fps", 1) == 0
    written = marker.stat().st_mtime_ns
    # The same options (--fps changes only the videos: the image folder stays complete).
    assert run_many(tmp_path / "inputs", out, checkpoint, "--size", SIZE, "--fps", 1) == 0
    assert "0 reconstructed, 2 complete already" in capsys.readouterr().out
    assert run_many(tmp_path / "inputs", out, checkpoint, "--size", SIZE, "--fps", 2) == 0
    assert "1 reconstructed, 1 complete already" in capsys.readouterr().out
    assert marker.stat().st_mtime_ns == written
    assert run_many(tmp_path / "inputs", out, checkpoint, "--size", SIZE, "--fps", 2, "--force") == 0
    assert "2 reconstructed, 0 complete already" in capsys.readouterr().out
    assert marker.stat().st_mtime_ns != written
    assert json.loads(marker.read_text())["redone"] == "--force"
    assert not (out / ".collection" / "replaced").exists()  # its own outputs are replaced, not kept aside
    assert "different sets of options" not in caplog.text  # --fps did not act on the image folder


def test_a_merge_of_shards_run_with_other_options_says_so(model, tmp_path, caplog):
    image_folder(tmp_path / "inputs", "a", 2)
    image_folder(tmp_path / "inputs", "b", 2)
    reconstruct_collection(tmp_path / "inputs", tmp_path / "out", model, shard=Shard(0, 2), size=SIZE)
    reconstruct_collection(tmp_path / "inputs", tmp_path / "out", model, shard=Shard(1, 2), size=56)
    with caplog.at_level("WARNING", logger="streamvggt"):
        summary = merge_collection(tmp_path / "inputs", tmp_path / "out")
    assert "the done inputs were made with 2 different sets of options" in caplog.text
    assert sorted(options["stream"]["size"] for options in summary["options"].values()) == [SIZE, 56]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--colmap-points", "50"),
        ("--preprocess", "pad"),
        ("--cache", "window:1"),
        ("--conf-threshold", "10"),
        ("--max-frames", "1"),
        ("--precision", "bf16"),
        ("--voxel-size", "0.1"),
        ("--loop-closure", None),
    ],
)
def test_every_option_that_changes_the_outputs_is_in_the_fingerprint(option, value):
    from streamvggt.cli import build_parser
    from streamvggt.cli.options import reconstruct_options
    from streamvggt.collection.fingerprint import changed_options, run_fingerprint

    def fingerprint(*extra: str) -> dict:
        args = build_parser().parse_args(["reconstruct-many", "m.txt", "-o", "out", *extra])
        return run_fingerprint(reconstruct_options(args), "owner/name")

    given = [option] if value is None else [option, value]
    assert changed_options(fingerprint(), fingerprint(*given))
    assert not changed_options(fingerprint(), fingerprint("--device", "cpu", "--compile", "regions", "--no-progress"))


def test_a_marker_without_options_is_taken_as_unknown_options_and_redone(model, tmp_path):
    image_folder(tmp_path / "inputs", "a", 2)
    reconstruct_collection(tmp_path / "inputs", tmp_path / "out", model, size=SIZE)
    marker = OutputRoot(tmp_path / "out").marker("a")
    old = json.loads(marker.read_text())
    del old["options"], old["redone"]  # as markers were written before options were recorded
    marker.write_text(json.dumps(old))
    result = reconstruct_collection(tmp_path / "inputs", tmp_path / "out", model, size=SIZE)
    assert [r.status for r in result.records] == ["done"]
    assert result.summary["inputs"][0]["redone"] == "its marker predates recorded options, so they are unknown"


def test_a_model_passed_in_memory_counts_by_its_weights(model, tmp_path):
    image_folder(tmp_path / "inputs", "a", 2)
    reconstruct_collection(tmp_path / "inputs", tmp_path / "out", model, size=SIZE)
    same = reconstruct_collection(tmp_path / "inputs", tmp_path / "out", tiny_model(), size=SIZE)
    assert [r.status for r in same.records] == ["skipped"]
    other = reconstruct_collection(tmp_path / "inputs", tmp_path / "out", tiny_model(seed=1), size=SIZE)
    assert [r.status for r in other.records] == ["done"]
    assert other.summary["inputs"][0]["redone"].startswith("made with other options (checkpoint.in_memory: ")


def test_fps_samples_the_videos_and_image_folders_keep_every_image(model, tmp_path):
    image_folder(tmp_path / "inputs", "a", 3)
    write_video(tmp_path / "inputs" / "d.mp4", 12, fps=4, width=WIDTH, height=HEIGHT)  # 3 s
    result = reconstruct_collection(tmp_path / "inputs", tmp_path / "out", model, size=SIZE, fps=2.0)
    # Records come in completion order (the streams run side by side): compare them by name.
    assert sorted((r.name, r.status, r.frames) for r in result.records) == [("a", "done", 3), ("d", "done", 6)]


def test_array_shards_leave_the_summary_to_merge_which_reports_missing_inputs_until_all_ran(
    model, collection, tmp_path, capsys
):
    manifest, out = collection / "manifest.txt", tmp_path / "out"
    merge = ["reconstruct-many", str(manifest), "-o", str(out), "--merge"]
    first = reconstruct_collection(manifest, out, model, shard=Shard(0, 2), size=SIZE)
    assert first.summary is None and not (out / "summary.json").exists()
    assert main(merge) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert {r["name"]: r["status"] for r in summary["inputs"]} == {
        "a": "done",
        "b": "missing",
        "c": "done",
        "clip-d": "missing",
        "wide": "done",
        "e": "missing",
    }
    reconstruct_collection(manifest, out, model, shard=Shard(1, 2), size=SIZE)
    capsys.readouterr()
    assert main(merge) == 0
    assert json.loads((out / "summary.json").read_text())["counts"] == {
        "done": 6,
        "skipped": 0,
        "failed": 0,
        "missing": 0,
    }
    assert "collection: 6 done, 0 failed, 0 missing" in capsys.readouterr().out


# -------------------------------------------------------------------------------------------------- failures


def test_corrupt_empty_and_midway_failing_inputs_fail_alone_and_the_command_exits_1(model, tmp_path, capsys):
    """A video that does not open, an empty folder, and a folder whose 4th image is 1x1 pixels (it fails while
    streaming beside the good input, which still comes out exactly as reconstruct writes it)."""
    checkpoint = tiny_checkpoint(tmp_path / "model")
    image_folder(tmp_path, "good", 6)
    (tmp_path / "broken.mp4").write_bytes(b"\x00not a video" * 10)
    (tmp_path / "empty").mkdir()
    image_folder(tmp_path, "midway", 3)
    write_images(tmp_path / "midway", ["003.png"], width=1, height=1)
    (tmp_path / "m.txt").write_text("good\nmidway\nbroken.mp4\nempty\n")
    args = ["reconstruct-many", str(tmp_path / "m.txt"), "-o", str(tmp_path / "out"), "--batch", "2"]
    code = main([*args, "--checkpoint", str(checkpoint), "--device", "cpu", "--size", str(SIZE), "--no-progress"])
    assert code == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    by_name = {r["name"]: r for r in summary["inputs"]}
    assert by_name["good"]["status"] == "done" and by_name["good"]["frames"] == 6
    assert by_name["midway"]["status"] == "failed"
    assert by_name["midway"]["error"] == "003.png is 1x1 pixels: frames must be at least 14x14"
    assert by_name["broken"]["status"] == "failed"
    assert by_name["broken"]["error"].startswith(f"cannot open video {tmp_path / 'broken.mp4'}")
    assert by_name["empty"] == {
        **by_name["empty"],
        "status": "failed",
        "error": f"folder {tmp_path / 'empty'} is empty",
    }
    assert summary["counts"] == {"done": 1, "skipped": 0, "failed": 3, "missing": 0}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".collection", "good", "summary.json"]
    assert list((tmp_path / "out" / ".collection" / "staging").iterdir()) == []
    reconstruct(tmp_path / "good", tmp_path / "alone", checkpoint, device="cpu", size=SIZE)  # loaded as the CLI loads
    assert_same_reconstruction(tmp_path / "out" / "good", tmp_path / "alone")
    printed = capsys.readouterr().out
    assert "1 reconstructed, 0 complete already, 3 failed" in printed
    assert f"failed: empty: folder {tmp_path / 'empty'} is empty" in printed


def test_a_failing_batched_step_stops_every_worker_and_the_run_raises_it(model, collection, tmp_path, monkeypatch):
    batches = []
    step = StreamSession.step

    def failing_step(session, frame):
        batches.append(frame.shape[0])
        if len(batches) == 3:
            raise RuntimeError("device lost")
        return step(session, frame)

    monkeypatch.setattr(StreamSession, "step", failing_step)
    with pytest.raises(RuntimeError, match="device lost"):
        reconstruct_collection(collection / "manifest.txt", tmp_path / "out", model, batch_size=2, size=SIZE)
    assert len(batches) == 3  # no step after the failure, and no worker left waiting
    assert not (tmp_path / "out" / "summary.json").exists()


def test_a_folder_left_without_its_marker_is_moved_aside_not_deleted(tmp_path):
    root = OutputRoot(tmp_path / "out")
    (root.folder("a") / "depth").mkdir(parents=True)
    (root.folder("a") / "depth" / "000000.npy").write_bytes(b"old")
    staging = root.staging("a")
    staging.mkdir()
    (staging / "cameras.json").write_text("{}")
    assert not root.is_complete("a")
    root.publish("a", staging, {"frames": 1, "seconds": 0.1, "finished": 0.0})
    assert root.is_complete("a") and (root.folder("a") / "cameras.json").is_file()
    (aside,) = (root.state / "replaced").iterdir()
    assert (aside / "depth" / "000000.npy").read_bytes() == b"old"


# ------------------------------------------------------------------------------------ processes and restarts


def command(manifest: Path, out: Path, checkpoint: Path, *extra: str) -> list[str]:
    return [
        "-m", "streamvggt", "reconstruct-many", str(manifest), "-o", str(out), "--checkpoint", str(checkpoint),
        "--device", "cpu", "--size", str(SIZE), "--no-progress", *extra,
    ]  # fmt: skip


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), "PYTHONWARNINGS": "ignore"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_cover_the_manifest_exactly_once_and_rank_0_merges(collection, tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "model")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launcher += ["--master_port", str(free_port())]
    run = subprocess.run(
        [*launcher, *command(collection / "manifest.txt", tmp_path / "out", checkpoint)],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    root = OutputRoot(tmp_path / "out")
    done = {path.name: [r.name for r in read_shard_file(path) if r.status == "done"] for path in root.shard_files()}
    shards = {name: sorted(names) for name, names in done.items()}
    assert shards == {  # manifest entries 0, 2, 4 and 1, 3, 5
        "shard-00000-of-00002.jsonl": ["a", "c", "wide"],
        "shard-00001-of-00002.jsonl": ["b", "clip-d", "e"],
    }
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"] == {"done": 6, "skipped": 0, "failed": 0, "missing": 0}


def test_a_run_killed_mid_input_resumes_and_completes_with_the_same_outputs(tmp_path):
    """SIGKILL while an input is half written: the restart skips what was complete and redoes the rest."""
    checkpoint = tiny_checkpoint(tmp_path / "model")
    image_folder(tmp_path, "short", 2)
    image_folder(tmp_path, "long", 20)
    image_folder(tmp_path, "last", 2)
    (tmp_path / "m.txt").write_text("short\nlong\nlast\n")
    run = [sys.executable, *command(tmp_path / "m.txt", tmp_path / "out", checkpoint, "--batch", "2")]
    killed = subprocess.Popen(run, env=environment())
    root = OutputRoot(tmp_path / "out")
    staging_depth = root.state / "staging" / "long" / "depth"
    deadline = time.monotonic() + 120
    while not (root.is_complete("short") and len(list(staging_depth.glob("*.npy"))) >= 6):
        assert killed.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not root.is_complete("long")
    last_was_complete = root.is_complete("last")  # it streams beside long and may have finished

    resumed = subprocess.run(run, env=environment(), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (shard,) = root.shard_files()
    statuses = {r.name: r.status for r in read_shard_file(shard)}
    assert statuses == {"short": "skipped", "long": "done", "last": "skipped" if last_was_complete else "done"}
    model = load_model(checkpoint, device="cpu")  # as the command loads it: the same weights and precision
    for name in ("short", "long", "last"):
        reconstruct(tmp_path / name, tmp_path / "alone" / name, model, size=SIZE)
        assert_same_reconstruction(root.folder(name), tmp_path / "alone" / name)


def test_compile_regions_reaches_the_model_and_step_compiling_is_refused(tmp_path, monkeypatch, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "model")
    image_folder(tmp_path, "a", 2)
    (tmp_path / "m.txt").write_text("a\n")
    compiled = []
    monkeypatch.setattr("streamvggt.collection.runner.compile_regions", compiled.append)  # compiling: elsewhere
    args = ["reconstruct-many", str(tmp_path / "m.txt"), "-o", str(tmp_path / "out"), "--checkpoint", str(checkpoint)]
    args += ["--device", "cpu", "--size", str(SIZE), "--no-progress", "--compile", "regions"]
    assert main(args) == 0
    assert len(compiled) == 1 and type(compiled[0]).__name__ == "StreamVGGT"
    with pytest.raises(ValueError, match="reconstruct-many compiles regions only, not compile='step'"):
        reconstruct_collection(tmp_path / "m.txt", tmp_path / "out2", tiny_model(), compile="step")
