"""BlendedMVS reader: scenes written as DUSt3R's preprocess_blendedmvs.py leaves them, with CUT3R's
new_overlap.h5 (a sparse overlap-score matrix per scene)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamvggt.train.data.mix import build_reader
from tests.layout_helpers import (
    FRAMES,
    INTRINSICS,
    READ_OPTIONS,
    SIZE,
    assert_frame_equals,
    assert_relative_poses,
    check_clip,
    read_clips,
    render_sequence,
    save_image,
)
from tests.view_file_helpers import as_stored_jpeg, save_exr

h5py = pytest.importorskip("h5py")

# Scene folders are 24 hexadecimal characters. A: a chain 0-1-2-3-4-5; B: the chain 0-...-4 and view 5 overlapping
# nothing; C: two views (no chain of three).
CHAIN, BROKEN, PAIR = "5a3ca9cb270f8b5c84d1f13c", "5a3cb4e4270f8b5c84d2b4d3", "5a48ba95c7dab83a7d7b44ed"


@pytest.fixture(scope="module")
def sequences() -> list:
    return [render_sequence(seed) for seed in (41, 42, 43)]


def chain_scores(count: int, linked: int, other: float = 0.2) -> np.ndarray:
    """Overlap scores: 0.6 between consecutive views among the first ``linked``, ``other`` for every other pair
    (0.2 is not above the threshold: no overlap)."""
    scores = np.full((count, count), other, dtype=np.float32)
    np.fill_diagonal(scores, 0)
    for i in range(linked - 1):
        scores[i, i + 1] = scores[i + 1, i] = 0.6
    return scores


def write_view(folder: Path, basename: str, image, depth, pose) -> None:
    save_image(folder / f"{basename}.jpg", image)
    save_exr(folder / f"{basename}.exr", depth)
    np.savez(folder / f"{basename}.npz", intrinsics=INTRINSICS, R_cam2world=pose[:3, :3], t_cam2world=pose[:3, 3])


def write_overlap(root: Path, scenes: dict[str, tuple[list[str], np.ndarray]]) -> None:
    with h5py.File(root / "new_overlap.h5", "w") as h5:
        for scene, (basenames, scores) in scenes.items():
            group = h5.create_group(scene)
            rows, cols = np.nonzero(scores)
            group.create_dataset("basenames", data=np.array(basenames, dtype="S"))
            group.create_dataset("indices", data=np.stack([rows, cols]))
            group.create_dataset("values", data=scores[rows, cols])
            group.attrs["shape"] = scores.shape


def write_blendedmvs(root: Path, sequences) -> None:
    layout = {CHAIN: (FRAMES, FRAMES), BROKEN: (FRAMES, FRAMES - 1), PAIR: (2, 2)}
    overlap = {}
    for (scene, (count, linked)), frames in zip(layout.items(), sequences, strict=True):
        basenames = [f"{10 * v + 3:08d}" for v in range(count)]
        for basename, (image, depth, pose) in zip(basenames, frames, strict=False):
            write_view(root / scene, basename, image, depth, pose)
        overlap[scene] = (basenames, chain_scores(count, linked, other=0.2 if scene == CHAIN else 0.1))
    write_overlap(root, overlap)


def test_blendedmvs_clips_are_reprojection_consistent_unordered_and_not_metric(tmp_path: Path, sequences) -> None:
    write_blendedmvs(tmp_path, sequences)
    dataset = build_reader("blendedmvs", root=str(tmp_path), num_views=3, **READ_OPTIONS)
    assert len(dataset) == FRAMES + FRAMES + 2  # one clip per view
    for clip in read_clips(dataset, 4):
        check_clip(clip, 3)
        assert not bool(clip["is_metric"]) and bool(clip["static"]) and not bool(clip["is_video"])
        assert clip["dataset"] == "blendedmvs"


def test_blendedmvs_frames_equal_the_ground_truth(tmp_path: Path, sequences) -> None:
    write_blendedmvs(tmp_path, sequences)
    dataset = build_reader("blendedmvs", root=str(tmp_path), num_views=3)
    for scene, view in ((0, 0), (0, 5), (1, 3)):
        image, depth, pose = sequences[scene][view]
        assert_frame_equals(dataset.load_frame((scene, view)), as_stored_jpeg(image), depth, INTRINSICS, pose)


def test_blendedmvs_clip_poses_are_relative_to_the_first_view(tmp_path: Path, sequences) -> None:
    write_blendedmvs(tmp_path, sequences)
    dataset = build_reader("blendedmvs", root=str(tmp_path), num_views=4, aug_crop=0)
    handles, _ = dataset.clip_frames(2, np.random.default_rng(8))
    clip = dataset.clip(2, SIZE, np.random.default_rng(8))
    assert_relative_poses(clip, [sequences[scene][view][2] for scene, view in handles])


def test_blendedmvs_clip_is_a_chain_of_overlapping_views_from_its_view(tmp_path: Path, sequences) -> None:
    write_blendedmvs(tmp_path, sequences)
    dataset = build_reader("blendedmvs", root=str(tmp_path), num_views=3)
    chains = set()
    for seed in range(40):
        handles, is_video = dataset.clip_frames(2, np.random.default_rng(seed))  # scene CHAIN, view 2
        views = [view for _, view in handles]
        assert {scene for scene, _ in handles} == {0} and views[0] == 2 and not is_video
        assert np.all(np.abs(np.diff(views)) == 1) and len(set(views)) == 3
        chains.add(tuple(views))
    assert chains == {(2, 1, 0), (2, 3, 4)}  # both directions are drawn
    assert [view for _, view in dataset.clip_frames(0, np.random.default_rng(0))[0]] == [0, 1, 2]


def test_blendedmvs_views_overlap_when_their_score_exceeds_0_2_weighted_by_the_excess(
    tmp_path: Path, sequences
) -> None:
    write_blendedmvs(tmp_path, sequences)
    graph = build_reader("blendedmvs", root=str(tmp_path), num_views=3).scenes[0][2]  # scene CHAIN
    assert [n.tolist() for n in graph.neighbours] == [[1], [0, 2], [1, 3], [2, 4], [3, 5], [4]]  # 0.2: no edge
    np.testing.assert_allclose(graph.weights[2], [0.4, 0.4], rtol=1e-6)


def test_blendedmvs_view_without_a_chain_hands_over_to_another_view_of_its_scene(tmp_path: Path, sequences) -> None:
    write_blendedmvs(tmp_path, sequences)
    dataset = build_reader("blendedmvs", root=str(tmp_path), num_views=3)
    isolated = FRAMES + 5  # scene BROKEN, view 5
    for seed in range(20):
        handles, _ = dataset.clip_frames(isolated, np.random.default_rng(seed))
        views = [view for _, view in handles]
        assert {scene for scene, _ in handles} == {1} and 5 not in views
        assert np.all(np.abs(np.diff(views)) == 1)


def test_blendedmvs_scene_without_a_chain_hands_over_to_other_scenes(tmp_path: Path, sequences) -> None:
    write_blendedmvs(tmp_path, sequences)
    dataset = build_reader("blendedmvs", root=str(tmp_path), num_views=3)
    scenes = set()
    for seed in range(20):
        handles, _ = dataset.clip_frames(2 * FRAMES, np.random.default_rng(seed))  # scene PAIR, view 0
        assert len({scene for scene, _ in handles}) == 1 and len(set(handles)) == 3
        scenes.add(handles[0][0])
    assert scenes == {0, 1}


def test_blendedmvs_clip_does_not_depend_on_earlier_clips(tmp_path: Path, sequences) -> None:
    write_blendedmvs(tmp_path, sequences)
    used = build_reader("blendedmvs", root=str(tmp_path), num_views=3)
    for index in range(len(used)):  # finds the dead starts, which later searches skip
        used.clip_frames(index, np.random.default_rng(100 + index))
    assert used._dead[1] == {5} and used._dead[2] == {0, 1}
    for index in (FRAMES + 5, 2 * FRAMES, 2 * FRAMES + 1):
        for seed in range(5):
            fresh = build_reader("blendedmvs", root=str(tmp_path), num_views=3)
            expected = fresh.clip_frames(index, np.random.default_rng(seed))
            assert used.clip_frames(index, np.random.default_rng(seed)) == expected


def test_blendedmvs_without_any_chain_is_an_error_naming_the_index(tmp_path: Path, sequences) -> None:
    write_blendedmvs(tmp_path, sequences)
    dataset = build_reader("blendedmvs", root=str(tmp_path), num_views=FRAMES + 1)
    with pytest.raises(ValueError, match=r"new_overlap\.h5: found no chain of 7 overlapping views"):
        dataset.clip_frames(0, np.random.default_rng(0))


def test_blendedmvs_without_its_index_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"BlendedMVS overlap index not found: .*new_overlap\.h5"):
        build_reader("blendedmvs", root=str(tmp_path), num_views=2)


def test_blendedmvs_empty_index_is_an_error_naming_it(tmp_path: Path) -> None:
    write_overlap(tmp_path, {})
    with pytest.raises(ValueError, match=r"new_overlap\.h5: no scene with views"):
        build_reader("blendedmvs", root=str(tmp_path), num_views=2)


def test_blendedmvs_malformed_overlap_matrix_names_the_index(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "new_overlap.h5", "w") as h5:
        group = h5.create_group(CHAIN)
        group.create_dataset("basenames", data=np.array([b"00000000", b"00000001"]))
        group.create_dataset("indices", data=np.array([0, 1]))
        group.create_dataset("values", data=np.array([0.5]))
    with pytest.raises(ValueError, match=r"new_overlap\.h5: scene 5a3ca9cb270f8b5c84d1f13c has indices \(2,\)"):
        build_reader("blendedmvs", root=str(tmp_path), num_views=2)


def test_blendedmvs_has_no_test_split(tmp_path: Path, sequences) -> None:
    write_blendedmvs(tmp_path, sequences)
    with pytest.raises(ValueError, match="BlendedMVS has no 'test' split"):
        build_reader("blendedmvs", root=str(tmp_path), split="test", num_views=2)


def test_blendedmvs_malformed_views_name_their_files(tmp_path: Path, sequences) -> None:
    write_blendedmvs(tmp_path, sequences)
    dataset = build_reader("blendedmvs", root=str(tmp_path), num_views=2)
    folder = tmp_path / CHAIN
    (folder / "00000013.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"00000013\.jpg"):
        dataset.load_frame((0, 1))
    image, depth, pose = sequences[0][2]
    bad = pose.copy()
    bad[0, 0] = np.nan
    write_view(folder, "00000023", image, depth, bad)
    with pytest.raises(ValueError, match=r"00000023\.npz: camera pose must be a finite 4x4"):
        dataset.load_frame((0, 2))
    np.savez(folder / "00000033.npz", intrinsics=INTRINSICS, R_cam2world=np.eye(4), t_cam2world=np.zeros(3))
    with pytest.raises(ValueError, match=r"00000033\.npz: R_cam2world must be 3x3"):
        dataset.load_frame((0, 3))
