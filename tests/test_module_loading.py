"""Modules own their load-time state: any load_state_dict, assigning or copying, leaves them ready to run.

Two things are not carried by tensors in a state dict: the aggregator's normalisation buffers (non-persistent)
and the DPT heads' channels-last weight layout. A model built on the meta device and loaded with
``assign=True`` (how checkpoints load without allocating twice) must still get both.
"""

from __future__ import annotations

import pytest
import torch

from streamvggt import ModelConfig, StreamVGGT
from streamvggt.model.heads.dpt_head import DPTHead
from tests.conftest import fixtures_dir

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def tiny_config() -> ModelConfig:
    config = ModelConfig.from_json(fixtures_dir() / "parity" / "tiny.json")
    config.causal = True
    return config


def dpt_conv_weights(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The conv weights [O, I, k, k] of every DPT head, by parameter name."""
    heads = [(name, module) for name, module in model.named_modules() if isinstance(module, DPTHead)]
    return [(f"{head}.{name}", t) for head, module in heads for name, t in module.named_parameters() if t.ndim == 4]


@pytest.fixture(scope="module")
def meta_loaded(parity_weights) -> StreamVGGT:
    """The fixture model built on the meta device and loaded by assignment, with plain torch only."""
    with torch.device("meta"):
        model = StreamVGGT(tiny_config())
    model.load_state_dict(parity_weights, strict=True, assign=True)
    return model.eval()


def test_assigned_model_has_no_tensor_left_on_the_meta_device(meta_loaded):
    left = [name for name, t in (*meta_loaded.named_parameters(), *meta_loaded.named_buffers()) if t.is_meta]
    assert left == []


def test_assigned_model_has_the_normalisation_buffers(meta_loaded):
    assert meta_loaded.aggregator._mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)
    assert meta_loaded.aggregator._std.flatten().tolist() == pytest.approx(IMAGENET_STD)
    assert meta_loaded.aggregator._mean.device.type == "cpu"


def test_assigned_heads_keep_their_conv_weights_channels_last(meta_loaded):
    convs = dpt_conv_weights(meta_loaded)
    assert len({name.split(".")[0] for name, _ in convs}) == 3  # depth, point and track heads
    assert [name for name, t in convs if not t.is_contiguous(memory_format=torch.channels_last)] == []


def test_assigning_into_a_built_model_keeps_channels_last(parity_weights):
    model = StreamVGGT(tiny_config())
    model.load_state_dict(parity_weights, strict=True, assign=True)
    convs = dpt_conv_weights(model)
    assert [name for name, t in convs if not t.is_contiguous(memory_format=torch.channels_last)] == []


def test_assigned_model_gives_the_outputs_of_a_copied_model(meta_loaded, parity_weights, parity):
    copied = StreamVGGT(tiny_config()).eval()
    copied.load_state_dict(parity_weights, strict=True)
    images = parity["input.images"][:, :2]
    with torch.no_grad():
        expected, actual = copied(images), meta_loaded(images)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def test_loading_the_aggregator_alone_also_makes_its_buffers(parity_weights):
    with torch.device("meta"):
        model = StreamVGGT(tiny_config())
    prefix = "aggregator."
    state = {name.removeprefix(prefix): t for name, t in parity_weights.items() if name.startswith(prefix)}
    model.aggregator.load_state_dict(state, strict=True, assign=True)
    assert not model.aggregator._std.is_meta
    assert model.aggregator._std.flatten().tolist() == pytest.approx(IMAGENET_STD)
