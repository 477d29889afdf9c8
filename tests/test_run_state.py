"""Saved run states: atomic generations, verified checksums, fingerprints that name what differs, size estimates."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from streamvggt.config import ModelConfig
from streamvggt.io.run_state import (
    POINTER,
    RunStateStore,
    StateError,
    checkpoint_fingerprint,
    estimate_state_size,
    file_fingerprint,
    fingerprint_difference,
    input_fingerprint,
    iter_generations,
    make_fingerprint,
)
from streamvggt.streaming.cache import parse_policy


def groups(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "cache": {
            "layer0.k": torch.randn(1, 2, 5, 4, generator=generator).to(torch.bfloat16),
            "layer0.v": torch.randn(1, 2, 5, 4, generator=generator),
            "ring": torch.tensor(7),
        },
        "writer": {"extrinsic": np.random.default_rng(seed).normal(size=(3, 3, 4)), "empty": np.zeros((0, 3))},
    }


def test_a_saved_state_loads_back_exactly(tmp_path):
    store = RunStateStore(tmp_path / "state")
    saved = groups()
    store.save({"frames": 3, "finished": False, "position": {"index": 8, "timestamp": None}}, saved)
    state = store.load()
    assert state.meta == {"frames": 3, "finished": False, "position": {"index": 8, "timestamp": None}}
    tensors = state.tensors("cache")
    assert tensors["layer0.k"].dtype == torch.bfloat16
    for key, value in saved["cache"].items():
        assert torch.equal(tensors[key], value)
    arrays = state.arrays("writer")
    assert np.array_equal(arrays["extrinsic"], saved["writer"]["extrinsic"]) and arrays["empty"].shape == (0, 3)


def test_views_sharing_storage_are_saved_as_their_own_contents(tmp_path):
    storage = torch.arange(24.0).reshape(2, 3, 4)
    store = RunStateStore(tmp_path / "state")
    store.save({}, {"cache": {"prefix": storage[:, :2], "whole": storage, "row": storage[1]}})
    tensors = store.load().tensors("cache")
    assert torch.equal(tensors["prefix"], storage[:, :2]) and torch.equal(tensors["row"], storage[1])


def test_no_state_before_the_first_save(tmp_path):
    assert RunStateStore(tmp_path / "state").load() is None
    assert RunStateStore(tmp_path / "missing" / "state").load() is None


def test_each_save_replaces_the_previous_state_and_leaves_one_generation(tmp_path):
    store = RunStateStore(tmp_path / "state")
    store.save({"frames": 1}, groups(1))
    store.save({"frames": 2}, groups(2))
    store.save({"frames": 3}, groups(3))
    assert store.load().meta == {"frames": 3}
    assert [p.name for p in iter_generations(store.root)] == ["state-000003"]
    assert torch.equal(store.load().tensors("cache")["layer0.v"], groups(3)["cache"]["layer0.v"])


def test_a_save_killed_before_its_switch_leaves_the_previous_state(tmp_path, monkeypatch):
    store = RunStateStore(tmp_path / "state")
    store.save({"frames": 1}, groups(1))
    real_replace = os.replace

    def killed(source, target):
        if str(target).endswith(POINTER):
            raise KeyboardInterrupt  # the instant before the pointer names the new state
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        store.save({"frames": 2}, groups(2))
    monkeypatch.undo()
    assert store.load().meta == {"frames": 1}  # the new generation is complete on disk, but not current
    store.save({"frames": 3}, groups(3))  # the next save reuses its number and removes nothing current
    assert store.load().meta == {"frames": 3}
    assert [p.name for p in iter_generations(store.root)] == ["state-000002"]


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from streamvggt.io.run_state import RunStateStore
    store = RunStateStore(sys.argv[1])
    count = 0
    calls = int(sys.argv[2])
    real_write = os.write
    import streamvggt.io.run_state as rs
    original = rs._write_file
    def write_then_maybe_die(path, data):
        global count
        count += 1
        if count == calls:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(path, data)
    rs._write_file = write_then_maybe_die
    for frames in range(1, 4):
        store.save({"frames": frames}, {"big": {"a": np.full(300_000, frames, np.float32)}})
    """
)


@pytest.mark.parametrize("kill_at_write", [1, 2, 3, 4, 5, 6])
def test_sigkill_at_any_write_of_a_save_leaves_a_complete_state(tmp_path, kill_at_write):
    """Each save writes meta.json, manifest.json and the pointer: a SIGKILL before any of them leaves the state of
    the save before (or none before the first), never a mix."""
    root = tmp_path / "state"
    result = subprocess.run([sys.executable, "-c", KILLER, str(root), str(kill_at_write)], capture_output=True)
    assert result.returncode == -9, result.stderr.decode()
    state = RunStateStore(root).load()
    completed = (kill_at_write - 1) // 3  # saves whose three writes all happened
    if completed == 0:
        assert state is None
    else:
        assert state.meta == {"frames": completed}
        assert np.all(state.arrays("big")["a"] == completed)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("tensor", r"cache\.safetensors does not match its checksum"),
        ("truncate", r"cache\.safetensors has \d+ bytes, \d+ were saved"),
        ("meta", r"meta\.json does not match its checksum"),
        ("manifest", r"manifest\.json does not match its checksum"),
        ("pointer", r"CURRENT is not a state pointer"),
        ("missing", r"writer\.safetensors is missing"),
    ],
)
def test_a_damaged_state_is_reported_in_one_line_and_never_used(tmp_path, damage, message):
    store = RunStateStore(tmp_path / "state")
    folder = store.save({"frames": 4}, groups())
    if damage == "tensor":
        data = bytearray((folder / "cache.safetensors").read_bytes())
        data[-3] ^= 0x40
        (folder / "cache.safetensors").write_bytes(bytes(data))
    elif damage == "truncate":
        os.truncate(folder / "cache.safetensors", 100)
    elif damage == "meta":
        (folder / "meta.json").write_text((folder / "meta.json").read_text().replace("4", "5"))  # same size
    elif damage == "manifest":
        (folder / "manifest.json").write_text((folder / "manifest.json").read_text().replace("1", "2", 1))
    elif damage == "pointer":
        (store.root / POINTER).write_bytes(b"\x00garbage")
    else:
        (folder / "writer.safetensors").unlink()
    with pytest.raises(StateError) as raised:
        store.load()
    text = str(raised.value)
    assert "\n" not in text and text.startswith(f"the saved state in {store.root} is damaged: ")
    assert text.endswith("run again without --resume to start over")
    assert re.search(message, text)


def test_a_state_of_another_format_version_is_named(tmp_path):
    store = RunStateStore(tmp_path / "state")
    store.save({}, {})
    pointer = json.loads((store.root / POINTER).read_text())
    pointer["version"] = 99
    (store.root / POINTER).write_text(json.dumps(pointer))
    with pytest.raises(StateError, match="format version 99, this version reads 1"):
        store.load()


def test_clear_removes_every_state_and_the_spool(tmp_path):
    store = RunStateStore.in_output(tmp_path / "out")
    store.save({"frames": 1}, groups())
    store.spool_path.write_bytes(b"records")
    store.clear()
    assert not store.root.exists() and store.load() is None


def test_mark_finished_keeps_only_a_small_finished_state(tmp_path):
    store = RunStateStore.in_output(tmp_path / "out")
    store.save({"frames": 5}, groups())
    store.spool_path.write_bytes(b"records")
    store.mark_finished({"frames": 5, "fingerprint": {"precision": "fp32"}})
    state = store.load()
    assert state.meta["finished"] is True and state.groups == {}
    assert not store.spool_path.exists()


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_the_lock(tmp_path):
    first, second = RunStateStore.in_output(tmp_path / "out"), RunStateStore.in_output(tmp_path / "out")
    first.lock()
    with pytest.raises(StateError, match=f"another run is writing {tmp_path / 'out'}"):
        second.lock()
    first.unlock()
    second.lock()
    second.unlock()


def test_group_names_must_be_plain_file_names(tmp_path):
    with pytest.raises(ValueError, match="state group name"):
        RunStateStore(tmp_path).save({}, {"../escape": {}})


# ------------------------------------------------------------------------------------------------- fingerprint


def options(**changes) -> dict:
    return {"cache": "window:8", "size": 518, "stride": None, "conf_threshold": 50.0, **changes}


def fingerprint(input_spec, checkpoint, precision="fp32", **changes) -> dict:
    return make_fingerprint(
        input_fingerprint(input_spec), checkpoint_fingerprint(checkpoint), precision, options(**changes)
    )


@pytest.fixture
def video_and_checkpoint(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(os.urandom(3 << 20))
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(os.urandom(1 << 16))
    return video, checkpoint


def test_the_same_run_has_the_same_fingerprint(video_and_checkpoint):
    video, checkpoint = video_and_checkpoint
    assert fingerprint_difference(fingerprint(video, checkpoint), fingerprint(video, checkpoint)) is None


def test_a_changed_option_is_named_with_both_values(video_and_checkpoint):
    video, checkpoint = video_and_checkpoint
    saved = fingerprint(video, checkpoint)
    assert (
        fingerprint_difference(saved, fingerprint(video, checkpoint, cache="full"))
        == "the option cache differs: window:8 was saved, full given"
    )
    assert (
        fingerprint_difference(saved, fingerprint(video, checkpoint, stride=2))
        == "the option stride differs: none was saved, 2 given"
    )
    assert (
        fingerprint_difference(saved, fingerprint(video, checkpoint, query_points=[[1, 2]]))
        == "the option query_points differs: (not set) was saved, [[1, 2]] given"
    )


def test_a_changed_precision_or_checkpoint_is_named(video_and_checkpoint, tmp_path):
    video, checkpoint = video_and_checkpoint
    saved = fingerprint(video, checkpoint)
    assert (
        fingerprint_difference(saved, fingerprint(video, checkpoint, precision="bf16"))
        == "the precision differs: fp32 was saved, bf16 given"
    )
    other = tmp_path / "other.safetensors"
    other.write_bytes(checkpoint.read_bytes())
    assert (
        fingerprint_difference(saved, fingerprint(video, other))
        == f"the checkpoint differs: {checkpoint.resolve()} was saved, {other.resolve()} given"
    )
    with open(checkpoint, "r+b") as f:  # same size, new weights
        f.seek(100)
        f.write(b"\x01\x02\x03")
    assert (
        fingerprint_difference(saved, fingerprint(video, checkpoint))
        == f"the checkpoint {checkpoint.resolve()} changed since the state was saved"
    )
    repo = make_fingerprint({}, checkpoint_fingerprint("org/model", "abc123"), "fp32", {})
    other_repo = make_fingerprint({}, checkpoint_fingerprint("org/model", "def456"), "fp32", {})
    assert (
        fingerprint_difference(repo, other_repo) == "the checkpoint differs: org/model@abc123 was saved, "
        "org/model@def456 given"
    )


def test_a_changed_video_is_named_by_what_changed(video_and_checkpoint, tmp_path):
    video, checkpoint = video_and_checkpoint
    saved = fingerprint(video, checkpoint)
    stat = video.stat()
    with open(video, "r+b") as f:  # the last MiB changes; size and modification time are put back
        f.seek(stat.st_size - 10)
        f.write(b"0123456789")
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (
        fingerprint_difference(saved, fingerprint(video, checkpoint))
        == f"the input {video.resolve()} changed since the state was saved (its content)"
    )
    with open(video, "ab") as f:
        f.write(b"more")
    assert "(its size, its modification time, its content)" in fingerprint_difference(
        saved, fingerprint(video, checkpoint)
    )
    other = tmp_path / "other.mp4"
    other.write_bytes(b"x")
    assert (
        fingerprint_difference(saved, fingerprint(other, checkpoint))
        == f"the input differs: {video.resolve()} was saved, {other.resolve()} given"
    )


def test_a_folder_input_is_its_file_list_with_sizes(tmp_path, video_and_checkpoint):
    _, checkpoint = video_and_checkpoint
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("b.png", "a.png", ".hidden.png", "notes.txt"):
        (folder / name).write_bytes(b"12345")
    record = input_fingerprint(folder)
    assert record == {"kind": "files", "spec": str(folder.resolve()), "files": [["a.png", 5], ["b.png", 5]]}
    saved = fingerprint(folder, checkpoint)
    (folder / "c.png").write_bytes(b"1")
    (folder / "a.png").write_bytes(b"123")
    assert fingerprint_difference(saved, fingerprint(folder, checkpoint)) == (
        f"the input {folder.resolve()} changed since the state was saved: files 1 added (c.png...), "
        "1 changed size (a.png...)"
    )


def test_a_glob_input_is_the_list_of_the_files_it_matches(tmp_path):
    for name in ("x/1.png", "y/2.jpg", "y/3.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"123")
    record = input_fingerprint(str(tmp_path / "*" / "*"))
    assert record["kind"] == "files"
    assert record["files"] == [[str((tmp_path / "x/1.png").resolve()), 3], [str((tmp_path / "y/2.jpg").resolve()), 3]]


def test_a_file_fingerprint_reads_only_the_head_and_tail(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(b"a" * (3 << 20))
    before = file_fingerprint(path)
    with open(path, "r+b") as f:
        f.seek(3 << 19)  # the middle MiB is not read
        f.write(b"b")
    os.utime(path, ns=(path.stat().st_atime_ns, before["mtime_ns"]))
    assert file_fingerprint(path) == before


def test_fingerprints_survive_the_json_round_trip(video_and_checkpoint):
    video, checkpoint = video_and_checkpoint
    current = fingerprint(video, checkpoint, size=(518, 392))
    saved = json.loads(json.dumps(current))
    assert fingerprint_difference(saved, current) is None


# ------------------------------------------------------------------------------------------------ size estimate


def test_the_1b_full_cache_state_grows_by_the_trunk_and_camera_tokens_of_each_frame():
    config = ModelConfig.preset("streamvggt-1b")
    size = estimate_state_size(parse_policy("full"), config, (392, 518), torch.bfloat16)
    tokens = 5 + 28 * 37
    trunk = 24 * tokens * 2 * 1024 * 2  # layers x tokens x (k, v) x width x bf16
    camera = 4 * 4 * 2 * 2048 * 4  # iterations x blocks x (k, v) x width x fp32
    assert size.per_frame == trunk + camera and size.frames_limit is None and size.fixed == 0
    assert size.at(100) == 100 * size.per_frame
    assert (
        size.describe(100) == "the saved state grows by 97.8 MiB a frame (full cache): about 9.6 GiB after 100 frames"
    )


def test_bounded_caches_have_a_constant_state_size():
    config = ModelConfig.preset("streamvggt-1b")
    window = estimate_state_size(parse_policy("window:8"), config, (392, 518), torch.bfloat16)
    assert window.frames_limit == 9 and window.at(1000) == window.at(9) == 9 * window.per_frame
    budget = estimate_state_size(parse_policy("budget:20000"), config, (392, 518), torch.bfloat16)
    assert budget.frames_limit == 20000 // 1041 and budget.at(10_000) == budget.at(19)
    int8 = estimate_state_size(parse_policy("window:8+int8"), config, (392, 518), torch.bfloat16)
    assert int8.at(9) < window.at(9) / 1.9 and int8.fixed == 24 * 1024 * 2 + 16 * 2048 * 4
    assert window.describe().startswith("the saved state stays under")


@pytest.mark.parametrize("policy", ["full", "window:2", "budget:60", "full+int8", "window:3+int8"])
def test_the_estimate_equals_the_tiny_sessions_cached_tensors(policy):
    """The bytes of every cache's valid part after 5 frames, as a state saves them (not preallocated room)."""
    from streamvggt import ModelConfig as Config
    from streamvggt import StreamVGGT

    torch.manual_seed(0)
    config = Config.preset("tiny")
    model = StreamVGGT(config).eval()
    session = model.stream(cache=policy)
    frames = torch.rand(5, 1, 3, 28, 42)
    for frame in frames:
        session.step(frame)
    _, tensors = session.state_dict()  # what a run state saves of the session
    saved = sum(t.numel() * t.element_size() for name, t in tensors.items() if name.startswith("cache."))
    estimate = estimate_state_size(parse_policy(policy), config, (28, 42))
    assert estimate.at(5) == saved
