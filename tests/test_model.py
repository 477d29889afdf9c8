"""The network against the reference implementation's outputs (tests/fixtures/parity)."""

from __future__ import annotations

import pytest
import torch

from streamvggt import ModelConfig, StreamVGGT
from tests.helpers import TRACK_ATOL, assert_close, tiny_model

DENSE_KEYS = ("pose_enc", "pose_enc_iters", "depth", "depth_conf", "world_points", "world_points_conf")
TRACK_KEYS = ("track", "track_vis", "track_conf")


@pytest.fixture(scope="module", params=[True, False], ids=["causal", "full"])
def mode_outputs(request, parity, parity_weights):
    """(prefix, model, outputs with query points) for the causal (StreamVGGT) and full (VGGT) semantics."""
    causal = request.param
    model = tiny_model(parity_weights, causal=causal)
    with torch.no_grad():
        out = model(parity["input.images"], parity["input.query_points"])
    return ("causal." if causal else "full."), model, out


def test_default_preset_state_dict_matches_official_layout(layout_1b):
    with torch.device("meta"):
        model = StreamVGGT(ModelConfig.preset("streamvggt-1b"))
    ours = {name: list(t.shape) for name, t in model.state_dict().items()}
    assert sorted(set(layout_1b) - set(ours)) == [], "missing tensors"
    assert sorted(set(ours) - set(layout_1b)) == [], "unexpected tensors"
    assert {n: s for n, s in ours.items() if layout_1b[n] != s} == {}, "shape mismatches"
    assert len(ours) == 1797
    assert sum(t.numel() for t in model.state_dict().values()) == 1_256_537_516


def test_vggt_and_streamvggt_presets_differ_only_in_causality():
    vggt, stream = ModelConfig.preset("vggt-1b"), ModelConfig.preset("streamvggt-1b")
    assert vggt.causal is False and stream.causal is True
    vggt.causal = True
    assert vggt == stream


def test_tiny_json_config_round_trips(tmp_path):
    from tests.conftest import fixtures_dir

    config = ModelConfig.from_json(fixtures_dir() / "parity" / "tiny.json")
    assert config == ModelConfig.preset("tiny")
    config.to_json(tmp_path / "c.json")
    assert ModelConfig.from_json(tmp_path / "c.json") == config


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"embed_dim": 32, "num_heads": 2, "bogus": 1})


@pytest.mark.parametrize("layer", [4, 23])
def test_aggregator_tokens_match_reference(mode_outputs, parity, layer):
    prefix, model, _ = mode_outputs
    with torch.no_grad():
        tokens = model.aggregator(parity["input.images"], keep_layers=[layer])
    assert list(tokens) == [layer]
    assert_close(tokens[layer], parity[f"{prefix}tokens_layer{layer}"], f"{prefix}tokens_layer{layer}")


@pytest.mark.parametrize("key", DENSE_KEYS)
def test_heads_match_reference(mode_outputs, parity, key):
    prefix, _, out = mode_outputs
    assert_close(out[key], parity[prefix + key], prefix + key)


@pytest.mark.parametrize("key", TRACK_KEYS)
def test_tracks_match_reference(mode_outputs, parity, key):
    prefix, _, out = mode_outputs
    atol = TRACK_ATOL if key == "track" else None
    assert_close(out[key], parity[prefix + key], prefix + key, **({"atol": atol} if atol else {}))


def test_wrong_causal_flag_is_detected(parity, parity_weights):
    """The parity test can fail: causal outputs differ from the full-attention reference beyond tolerance."""
    model = tiny_model(parity_weights, causal=True)
    with torch.no_grad():
        out = model(parity["input.images"])
    for key in ("pose_enc", "depth", "world_points"):
        with pytest.raises(AssertionError):
            assert_close(out[key], parity["full." + key], key)
    # With a single frame the two semantics coincide, so the difference above comes from causality alone.
    full = tiny_model(parity_weights, causal=False)
    with torch.no_grad():
        one_causal, one_full = model(parity["input.images"][:, :1]), full(parity["input.images"][:, :1])
    assert_close(one_causal["depth"], one_full["depth"], "single-frame depth")


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_batch_of_two_gives_each_element_its_own_result(parity, parity_weights, causal):
    """The fixture batch plus a horizontally flipped copy: element 0 equals the reference, element 1 its own run."""
    model = tiny_model(parity_weights, causal=causal)
    images, queries = parity["input.images"], parity["input.query_points"]
    width = images.shape[-1]
    flipped = images.flip(-1)
    flipped_queries = queries.clone()
    flipped_queries[..., 0] = width - 1 - queries[..., 0]
    with torch.no_grad():
        batch = model(torch.cat((images, flipped)), torch.cat((queries, flipped_queries)))
        alone = model(flipped, flipped_queries)
    prefix = "causal." if causal else "full."
    for key in DENSE_KEYS:
        batch_dim = 1 if key == "pose_enc_iters" else 0
        first, second = batch[key].split(1, dim=batch_dim)
        assert_close(first, parity[prefix + key], f"batch[0] {key}")
        assert_close(second, alone[key], f"batch[1] {key}")
    for key in TRACK_KEYS:
        atol = TRACK_ATOL if key == "track" else 1e-5
        assert_close(batch[key][:1], parity[prefix + key], f"batch[0] {key}", atol=atol)
        assert_close(batch[key][1:], alone[key], f"batch[1] {key}", atol=atol)
    assert not torch.allclose(batch["depth"][0], batch["depth"][1]), "flipped element must give a different result"


def test_dpt_chunking_does_not_change_outputs(parity, parity_weights):
    model = tiny_model(parity_weights, causal=True)
    with torch.no_grad():
        whole = model(parity["input.images"], frames_chunk_size=None)
        chunked = model(parity["input.images"], frames_chunk_size=2)
    for key in DENSE_KEYS:
        assert_close(chunked[key], whole[key], key)


def test_offline_forward_keeps_only_head_layers(parity, parity_weights):
    model = tiny_model(parity_weights, causal=True)
    kept: list[list[int]] = []
    original = model.aggregator.forward

    def recording_forward(*args, **kwargs):
        tokens = original(*args, **kwargs)
        kept.append(sorted(tokens))
        return tokens

    model.aggregator.forward = recording_forward
    with torch.no_grad():
        model(parity["input.images"][:, :2])
    assert kept == [[4, 11, 17, 23]]


def test_image_size_must_be_patch_multiple(parity_weights):
    model = tiny_model(parity_weights, causal=True)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.rand(1, 1, 3, 30, 28))


def test_state_dict_saves_directly_with_safetensors(tmp_path, parity_weights):
    """DPT convs run channels-last, but state dicts keep the usual contiguous layout that safetensors needs."""
    from safetensors.torch import load_file, save_file

    model = tiny_model(parity_weights, causal=True)
    assert model.depth_head.projects[0].weight.is_contiguous(memory_format=torch.channels_last)
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    loaded = load_file(tmp_path / "m.safetensors")
    assert all(torch.equal(loaded[name], parity_weights[name]) for name in parity_weights)
