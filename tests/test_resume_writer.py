"""A writer restored from a saved state, after a kill, finishes with the outputs of a writer never interrupted."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from streamvggt.io.outputs.interchange import ExportOptions, SourceFrame
from streamvggt.io.outputs.points import POINT_DTYPE, PointSpool
from streamvggt.io.outputs.writer import ReconstructionWriter, WriterState
from streamvggt.io.run_state import STATE_DIR, RunStateStore, StateError
from streamvggt.results import FrameResult

HEIGHT, WIDTH = 18, 24
FRAMES = 7
METADATA = {"source": "random frames", "model": "none"}


def random_frame(index: int, seed: int = 0) -> FrameResult:
    """A frame of random depth and confidence seen by a camera that turns and moves a little each frame."""
    rng = np.random.default_rng(seed * 1000 + index)
    angle = 0.05 * index
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    extrinsic = np.hstack((rotation, [[0.1 * index], [0.02 * index], [0.0]]))
    intrinsic = np.array([[20.0 + index, 0, WIDTH / 2], [0, 20.0 + index, HEIGHT / 2], [0, 0, 1]])
    depth = rng.uniform(1.0, 3.0, (HEIGHT, WIDTH)).astype(np.float32)
    valid = np.ones((HEIGHT, WIDTH), bool)
    valid[:2] = False  # padding rows
    return FrameResult(
        index=index,
        name=f"frame_{index:06d}",
        source_index=3 * index,
        timestamp=0.1 * index if index % 2 else None,
        image=rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8),
        valid=valid,
        extrinsic=extrinsic,
        intrinsic=intrinsic,
        depth=depth,
        depth_conf=rng.uniform(1.0, 5.0, (HEIGHT, WIDTH)).astype(np.float32),
        world_points=rng.normal(size=(HEIGHT, WIDTH, 3)).astype(np.float32),
        world_points_conf=rng.uniform(1.0, 5.0, (HEIGHT, WIDTH)).astype(np.float32),
    )


def source_frame(index: int) -> SourceFrame:
    rng = np.random.default_rng(10_000 + index)
    return SourceFrame(rng.integers(0, 256, (2 * HEIGHT, 2 * WIDTH, 3), dtype=np.uint8), (0, 0, HEIGHT, WIDTH))


CASES = {
    "spool": {},
    "voxels": {"voxel_size": 0.05},
    "voxels-merging-in-batches": {"voxel_size": 0.05, "batch": 700},
    "every-export": {
        "points": "pointmap",
        "depth_png": True,
        "pointmaps": True,
        "scene_points": 300,
        "exports": ExportOptions(colmap_images="original", transforms_depth=True, rgbd=True, shared_camera=True),
    },
}


def make_writer(out: Path, options: dict) -> ReconstructionWriter:
    options = dict(options)
    batch = options.pop("batch", None)
    writer = ReconstructionWriter(out, conf_threshold=30.0, spool_path=out / STATE_DIR / "points.spool", **options)
    if batch is not None:
        writer._accumulator.batch = batch  # small merge batches: a state falls between merges
    return writer


def add(writer: ReconstructionWriter, index: int) -> None:
    source = source_frame(index) if writer.exports.needs_source else None
    writer.add(random_frame(index), source)


def output_files(out: Path) -> dict[str, bytes | str]:
    """Every output (file contents, a link's target), the saved state and the spool left aside."""
    found: dict[str, bytes | str] = {}
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out).as_posix()
        if relative.startswith(STATE_DIR):
            continue
        if path.is_symlink():
            found[relative] = os.readlink(path)
        elif path.is_file():
            found[relative] = path.read_bytes()
    return found


def uninterrupted(out: Path, options: dict) -> dict[str, bytes | str]:
    writer = make_writer(out, options)
    for i in range(FRAMES):
        add(writer, i)
    writer.finish(METADATA)
    return output_files(out)


def save(writer: ReconstructionWriter, store: RunStateStore) -> None:
    state = writer.export_state()
    store.save({"writer": state.meta}, {"writer": state.arrays})


def restore(out: Path, options: dict, store: RunStateStore) -> ReconstructionWriter:
    saved = store.load()
    writer = make_writer(out, options)
    writer.restore_state(WriterState(saved.meta["writer"], saved.arrays("writer")))
    return writer


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("saved_at", [1, 4])
def test_a_writer_restored_after_a_kill_finishes_with_the_uninterrupted_outputs(tmp_path, case, saved_at):
    options = CASES[case]
    expected = uninterrupted(tmp_path / "whole", options)
    out = tmp_path / "resumed"
    store = RunStateStore.in_output(out)
    writer = make_writer(out, options)
    for i in range(saved_at):
        add(writer, i)
    save(writer, store)
    for i in range(saved_at, min(saved_at + 2, FRAMES)):  # work after the save, lost with the kill
        add(writer, i)
    del writer  # killed: nothing closed, finished or cleaned
    if not options.get("voxel_size"):
        with open(store.spool_path, "ab") as spool:
            spool.write(b"half a record of a frame being written")
    (out / "depth" / ".000005.npy.0123456789ab.tmp").write_bytes(b"half-written")

    writer = restore(out, options, store)
    if not options.get("voxel_size"):  # the records after the state (and the junk) are cut away
        saved_records = store.load().meta["writer"]["spool"]["count"]
        assert store.spool_path.stat().st_size == saved_records * POINT_DTYPE.itemsize
    assert not (out / "depth" / ".000005.npy.0123456789ab.tmp").exists()
    for i in range(saved_at, FRAMES):
        add(writer, i)
    written = writer.finish(METADATA)

    assert output_files(out) == expected
    assert written.points > 0 and len(writer.cameras) == FRAMES


def test_states_saved_twice_and_restored_twice_still_give_the_uninterrupted_outputs(tmp_path):
    expected = uninterrupted(tmp_path / "whole", {})
    out = tmp_path / "resumed"
    store = RunStateStore.in_output(out)
    writer = make_writer(out, {})
    for i in range(3):
        add(writer, i)
    save(writer, store)
    del writer
    writer = restore(out, {}, store)
    add(writer, 3)
    add(writer, 4)
    save(writer, store)
    add(writer, 5)
    del writer
    writer = restore(out, {}, store)
    for i in range(5, FRAMES):
        add(writer, i)
    writer.finish(METADATA)
    assert output_files(out) == expected


def test_a_spool_cut_shorter_than_the_state_is_reported_in_one_line(tmp_path):
    out = tmp_path / "out"
    store = RunStateStore.in_output(out)
    writer = make_writer(out, {})
    for i in range(3):
        add(writer, i)
    save(writer, store)
    del writer
    size = store.spool_path.stat().st_size
    os.truncate(store.spool_path, size - POINT_DTYPE.itemsize)
    with pytest.raises(StateError, match=r"^the point spool .* is shorter than the saved state \(\d+ records\)"):
        restore(out, {}, store)


def test_a_spool_changed_under_the_state_is_reported(tmp_path):
    out = tmp_path / "out"
    store = RunStateStore.in_output(out)
    writer = make_writer(out, {})
    add(writer, 0)
    save(writer, store)
    del writer
    with open(store.spool_path, "r+b") as spool:
        spool.write(b"\xff" * 8)
    with pytest.raises(StateError, match="does not match the saved state's checksum"):
        restore(out, {}, store)


def test_a_missing_frame_file_of_the_state_is_reported(tmp_path):
    out = tmp_path / "out"
    store = RunStateStore.in_output(out)
    writer = make_writer(out, {})
    add(writer, 0)
    add(writer, 1)
    save(writer, store)
    del writer
    (out / "depth" / "000001.npy").unlink()
    with pytest.raises(StateError, match=r"000001\.npy of a saved frame is missing"):
        restore(out, {}, store)


def test_a_state_of_other_output_options_is_refused(tmp_path):
    out = tmp_path / "out"
    store = RunStateStore.in_output(out)
    writer = make_writer(out, {})
    add(writer, 0)
    save(writer, store)
    del writer
    with pytest.raises(StateError, match="other output options"):
        restore(out, {"depth_png": True}, store)


def test_a_temporary_spool_is_deleted_but_a_stable_one_outlives_the_writer(tmp_path):
    temporary = PointSpool(tmp_path)
    temporary.add(np.zeros(3, POINT_DTYPE))
    temporary.close()
    stable = PointSpool(tmp_path, path=tmp_path / "points.spool")
    stable.add(np.zeros(3, POINT_DTYPE))
    stable.close()
    assert [p.name for p in tmp_path.iterdir()] == ["points.spool"]
    assert (tmp_path / "points.spool").stat().st_size == 3 * POINT_DTYPE.itemsize


def test_export_state_makes_the_frame_files_durable(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    out = tmp_path / "out"
    writer = make_writer(out, {})
    add(writer, 0)
    writer.export_state()
    for name in ("depth/000000.npy", "depth/000000_conf.npy", "images/000000.png", "depth", "images"):
        assert str(out / name) in synced
