"""Clip sampling, batch plans across processes, the dataset mix, image transforms and the synthetic scenes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from streamvggt.scenes.procedural_room import SyntheticScene
from streamvggt.train.data.mix import DatasetMix
from streamvggt.train.data.sampling import BatchPlan, ClipSampling, ItemKey
from streamvggt.train.data.synthetic import SyntheticDataset
from streamvggt.train.data.transforms import (
    ColorJitter,
    crop_around_principal_point,
    crop_resize,
    resize,
    shift_hue,
)
from tests.layout_helpers import reprojection

# ---------------------------------------------------------------------------------------------- clip sampling


def test_video_clips_are_increasing_and_start_at_the_anchor() -> None:
    sampling = ClipSampling(max_interval=4, video_prob=1.0, fixed_interval_prob=0.0)
    for seed in range(50):
        positions, is_video = sampling.sample(100, 10, 6, np.random.default_rng(seed))
        assert is_video and positions[0] == 10 and positions == sorted(positions)
        assert len(set(positions)) == 6 and max(positions) < 100


def test_fixed_interval_clips_have_one_stride_within_bounds() -> None:
    sampling = ClipSampling(min_interval=2, max_interval=3, video_prob=1.0, fixed_interval_prob=1.0)
    for seed in range(20):
        positions, _ = sampling.sample(100, 0, 5, np.random.default_rng(seed))
        strides = set(np.diff(positions).tolist())
        assert len(strides) == 1 and strides <= {2, 3}


def test_strides_shrink_to_fit_near_the_end_of_a_sequence() -> None:
    sampling = ClipSampling(max_interval=25, video_prob=1.0, fixed_interval_prob=1.0)
    positions, _ = sampling.sample(10, 5, 5, np.random.default_rng(0))
    assert positions == [5, 6, 7, 8, 9]


def test_collections_are_shuffled_within_blocks() -> None:
    sampling = ClipSampling(max_interval=1, video_prob=0.0, block_shuffle=4)
    shuffled = 0
    for seed in range(20):
        positions, is_video = sampling.sample(20, 0, 8, np.random.default_rng(seed))
        assert not is_video and sorted(positions) == list(range(8))  # stride 1: frames 0..7
        assert sorted(positions[:4]) == [0, 1, 2, 3] and sorted(positions[4:]) == [4, 5, 6, 7]
        shuffled += positions != sorted(positions)
    assert shuffled > 10


def test_short_sequences_revisit_frames() -> None:
    positions, _ = ClipSampling(video_prob=1.0).sample(3, 0, 7, np.random.default_rng(0))
    assert positions == [0, 1, 2, 0, 1, 2, 0]


def test_sampling_is_reproducible_and_validated() -> None:
    sampling = ClipSampling()
    assert sampling.sample(50, 3, 5, np.random.default_rng(7)) == sampling.sample(50, 3, 5, np.random.default_rng(7))
    with pytest.raises(ValueError):
        ClipSampling(min_interval=3, max_interval=2)
    with pytest.raises(ValueError):
        sampling.sample(5, 5, 2, np.random.default_rng(0))


# ------------------------------------------------------------------------------------------------ batch plans


def test_processes_get_disjoint_equal_shares_of_an_epoch() -> None:
    plans = [
        BatchPlan(num_items=23, batch_size=2, resolution_weights=[1.0], seed=0, rank=r, world_size=3) for r in range(3)
    ]
    assert all(len(p) == 3 for p in plans)  # 23 // 3 = 7 clips each, 3 batches of 2
    seen = [k.index for p in plans for batch in p.epoch(0) for k in batch]
    assert len(seen) == len(set(seen)) == 18
    assert seen != [k.index for p in plans for batch in p.epoch(1) for k in batch]  # reshuffled per epoch


def test_resuming_mid_epoch_yields_the_remaining_batches() -> None:
    plan = BatchPlan(num_items=40, batch_size=4, resolution_weights=[2.0, 1.0], seed=5)
    full = list(plan.epoch(3))
    assert list(plan.epoch(3, start=6)) == full[6:]


def test_one_resolution_per_batch_drawn_by_weight() -> None:
    plan = BatchPlan(num_items=3000, batch_size=1, resolution_weights=[2.0, 1.0, 0.0], seed=0)
    counts = Counter(batch[0].resolution for batch in plan.epoch(0))
    assert counts[2] == 0 and counts[0] / counts[1] == pytest.approx(2.0, rel=0.15)
    plan = BatchPlan(num_items=40, batch_size=4, resolution_weights=[1.0, 1.0], seed=0)
    assert all(len({k.resolution for k in batch}) == 1 for batch in plan.epoch(0))


# --------------------------------------------------------------------------------------------------- the mix


@pytest.fixture(scope="module")
def synthetic() -> SyntheticDataset:
    return SyntheticDataset(num_views=2, num_scenes=3, frames_per_scene=5, supersample=1)


def test_mix_draws_each_dataset_by_its_sample_count(synthetic: SyntheticDataset) -> None:
    other = SyntheticDataset(num_views=2, num_scenes=1, frames_per_scene=3, seed=9, supersample=1)
    mix = DatasetMix([synthetic, other], [5, 20], resolutions=[(28, 28)], seed=0)
    assert len(mix) == 25
    located = [mix.locate(0, i) for i in range(25)]
    assert Counter(entry for entry, _ in located) == {0: 5, 1: 20}
    clips_of_other = Counter(clip for entry, clip in located if entry == 1)
    assert set(clips_of_other) == set(range(len(other))) and max(clips_of_other.values()) <= 10  # spread evenly


def test_mix_items_are_a_function_of_epoch_and_index(synthetic: SyntheticDataset) -> None:
    mix = DatasetMix([synthetic], [10], resolutions=[(28, 28), (42, 28)], seed=0)
    first = mix[ItemKey(epoch=0, index=3, resolution=1)]
    assert first["images"].shape == (2, 3, 28, 42)
    again = DatasetMix([synthetic], [10], resolutions=[(28, 28), (42, 28)], seed=0)[ItemKey(0, 3, 1)]
    assert all(torch.equal(first[k], again[k]) for k in ("images", "depth", "extrinsics", "intrinsics"))
    other_epoch = mix[ItemKey(epoch=1, index=3, resolution=1)]
    assert not torch.equal(first["images"], other_epoch["images"])


# ----------------------------------------------------------------------------------------------- transforms


def test_crop_around_the_principal_point_centres_it() -> None:
    image = np.zeros((8, 10, 3), dtype=np.uint8)
    intrinsics = np.array([[5.0, 0, 4.0], [0, 5.0, 4.0], [0, 0, 1]])
    image, depth, new = crop_around_principal_point(image, np.ones((8, 10)), intrinsics)
    assert image.shape == (8, 8, 3) and depth.shape == (8, 8)  # margins min(4, 6) = 4 and min(4, 4) = 4
    assert new[0, 2] == 4.0 and new[1, 2] == 4.0
    with pytest.raises(ValueError, match="off centre"):
        crop_around_principal_point(image, np.ones((8, 8)), np.array([[5.0, 0, 1.0], [0, 5.0, 4.0], [0, 0, 1]]))


def test_resize_scales_intrinsics_about_the_pixel_corner_and_depth_by_nearest() -> None:
    depth = np.array([[1.0, 2.0], [3.0, 4.0]])
    intrinsics = np.array([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]])  # principal point at the 2x2 centre
    _, big, new = resize(np.zeros((2, 2, 3), np.uint8), depth, intrinsics, 4, 4)
    assert np.array_equal(big, np.kron(depth, np.ones((2, 2))))
    assert new[0, 0] == 4.0 and new[0, 2] == 1.5  # (0.5 + 0.5) * 2 - 0.5: still the image centre


def test_crop_resize_intrinsics_match_a_rendering_with_them() -> None:
    scene = SyntheticScene(np.random.default_rng(2), 4)
    intrinsics = np.array([[60.0, 0, 44.0], [0, 60.0, 38.0], [0, 0, 1]])
    image, depth = scene.render(0, 96, 72, intrinsics=intrinsics)
    _, cropped, new = crop_resize(image, depth, intrinsics, (40, 28), enlarge=5)
    assert cropped.shape == (28, 40)
    _, rendered = scene.render(0, 40, 28, intrinsics=new)
    relative = np.abs(cropped - rendered) / rendered
    assert np.median(relative) < 0.01 and (relative < 0.03).mean() > 0.85


def test_color_jitter_operations() -> None:
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert torch.equal(ColorJitter()(red), red)
    assert torch.allclose(ColorJitter(brightness=0.5)(red), red * 0.5)
    gray = ColorJitter(saturation=0.0)(red)
    assert torch.allclose(gray, torch.full((3, 1, 1), 0.299))
    assert torch.allclose(shift_hue(red, 1 / 3), torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1), atol=1e-6)
    colours = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(shift_hue(colours, 0.0), colours, atol=1e-5)
    assert torch.allclose(shift_hue(shift_hue(colours, 0.3), 0.7), colours, atol=1e-5)


def test_sampled_jitter_is_in_the_reference_ranges() -> None:
    for seed in range(20):
        jitter = ColorJitter.sample(np.random.default_rng(seed))
        assert 0.5 <= jitter.brightness <= 1.5 and 0.5 <= jitter.contrast <= 1.5 and 0.5 <= jitter.saturation <= 1.5
        assert -0.1 <= jitter.hue <= 0.1 and sorted(jitter.order) == [0, 1, 2, 3]


# -------------------------------------------------------------------------------------------------- synthetic


def test_synthetic_clips_are_geometrically_exact(synthetic: SyntheticDataset) -> None:
    for index in range(0, len(synthetic), 3):
        clip = synthetic.clip(index, (56, 42), np.random.default_rng(index))
        assert clip["valid_mask"].all()  # a closed room: every ray hits something
        agree, impossible = reprojection(clip, 1)
        assert impossible == 0.0 and agree > 0.7
        width_fov = 2 * torch.atan(28 / clip["intrinsics"][0, 0, 0])
        assert np.deg2rad(50) <= float(width_fov) <= np.deg2rad(85)


def test_synthetic_scenes_are_reproducible_and_varied() -> None:
    a = SyntheticScene(np.random.default_rng(1), 8).render(3, 32, 24)
    b = SyntheticScene(np.random.default_rng(1), 8).render(3, 32, 24)
    c = SyntheticScene(np.random.default_rng(2), 8).render(3, 32, 24)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].std() > 10  # textured, not flat


def test_synthetic_cameras_move_and_stay_inside_the_room() -> None:
    scene = SyntheticScene(np.random.default_rng(3), 24)
    centres = scene.cam_to_world[:, :3, 3]
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.min() > 0.005 and steps.max() < 0.6
    assert (np.abs(centres[:, [0, 2]]) < scene.room[[0, 2]] / 2).all()
    assert ((centres[:, 1] > 0) & (centres[:, 1] < scene.room[1])).all()
    rotations = scene.cam_to_world[:, :3, :3]
    assert np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(rotations), 1.0)
