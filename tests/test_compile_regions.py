"""compile="regions": the model's transformer blocks and DPT heads run through inductor-compiled regions shared by
every instance.

Streams with every kind of cache and the offline forward give eager's outputs (inductor reorders float sums, so
within 1e-4, not bit for bit), later frames compile nothing new, switching back is exact, and a machine where
torch.compile cannot work gets one line. Real inductor runs here (the graphs are a tiny model's: seconds).
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import streamvggt.runtime.regional_compile as regional_compile
from streamvggt import StreamVGGT
from streamvggt.layers import Block
from streamvggt.model.heads.dpt_head import DPTHead
from streamvggt.runtime.precision import apply_precision, converted_for
from tests.helpers import cut_tiny_model

HEIGHT, WIDTH = 28, 42


def small_model() -> StreamVGGT:
    """The tiny preset cut to 2 block pairs and a 1-block camera trunk."""
    return cut_tiny_model(depth=2)


@pytest.fixture(scope="module")
def model() -> StreamVGGT:
    return small_model()


@pytest.fixture
def eager_after(model: StreamVGGT):
    yield model
    regional_compile.compile_regions(model, enabled=False)


def frames(count: int, batch: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [torch.rand(batch, 3, HEIGHT, WIDTH, generator=generator) for _ in range(count)]


@torch.no_grad()
def stream(model: StreamVGGT, inputs: list[torch.Tensor], cache: str, compile: bool | str = False) -> list[dict]:
    session = model.stream(batch_size=inputs[0].shape[0], cache=cache, compile=compile)
    return [dict(session.step(frame)) for frame in inputs]


def assert_close(ours: dict, eager: dict) -> None:
    for name in ("pose_enc", "depth", "world_points", "depth_conf"):
        torch.testing.assert_close(ours[name], eager[name], rtol=1e-4, atol=1e-4, msg=name)


@pytest.mark.parametrize(("cache", "batch"), [("full", 1), ("full", 2), ("window:2", 1), ("budget:30+int8", 2)])
def test_compiled_blocks_stream_like_eager_and_compile_only_at_the_start(eager_after, cache: str, batch: int):
    model = eager_after
    inputs = frames(5, batch)
    expected = stream(model, inputs, cache)
    session = model.stream(batch_size=batch, cache=cache, compile="regions")
    assert all(block.compiled_regions for block in model.modules() if isinstance(block, Block | DPTHead))
    with torch.no_grad():
        ours = [dict(session.step(frame)) for frame in inputs[:2]]
        graphs_after_two = counters["stats"]["unique_graphs"]
        ours += [dict(session.step(frame)) for frame in inputs[2:]]
    # Frames 3-5 grow (or evict from) the cache, which stays eager: the compiled regions see the same shapes.
    assert counters["stats"]["unique_graphs"] == graphs_after_two
    for got, want in zip(ours, expected, strict=True):
        assert_close(got, want)


def test_offline_forward_with_compiled_blocks_matches_eager(eager_after):
    model = eager_after
    clip = torch.stack(frames(3, 1), dim=1)  # [1, 3, 3, H, W]: block-causal attention across frames
    with torch.no_grad():
        expected = model(clip)
        regional_compile.compile_regions(model)
        ours = model(clip)
    assert_close(ours, expected)


def test_switching_back_is_exactly_eager(eager_after):
    model = eager_after
    inputs = frames(2, 1)
    expected = stream(model, inputs, "full")
    stream(model, inputs, "full", compile="regions")
    switched = sum(isinstance(module, Block | DPTHead) for module in model.modules())
    assert regional_compile.compile_regions(model, enabled=False) == switched
    for got, want in zip(stream(model, inputs, "full"), expected, strict=True):
        torch.testing.assert_close(got["depth"], want["depth"], rtol=0, atol=0)


def test_an_unknown_compile_mode_is_refused(model: StreamVGGT):
    with pytest.raises(ValueError, match="unknown compile mode 'graph'; choose one of step, regions"):
        model.stream(compile="graph")


def test_a_machine_where_compile_fails_gets_one_line(model: StreamVGGT, monkeypatch):
    def broken_compile(*args, **kwargs):
        def run(*inputs):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found in\n  g++ (detail)")

        return run

    regional_compile.check_compiler.cache_clear()
    monkeypatch.setattr(torch, "compile", broken_compile)
    try:
        with pytest.raises(RuntimeError) as raised:
            model.stream(compile="regions")
    finally:
        regional_compile.check_compiler.cache_clear()
    assert str(raised.value) == (
        "torch.compile does not work here, so regions cannot be compiled: InvalidCxxCompiler: No working C++ compiler "
        "found in"
    )
    assert not any(block.compiled_regions for block in model.modules() if isinstance(block, Block | DPTHead))


@pytest.mark.parametrize("order", ["compile, then quantise", "quantise, then compile"])
def test_an_int8_trunk_keeps_its_blocks_eager_and_compiles_its_heads(order: str):
    model = small_model()
    inputs = frames(3, 1)
    if order == "compile, then quantise":
        # Quantising after the blocks were switched to compiled must switch the trunk's back to eager.
        regional_compile.compile_regions(model)
    apply_precision(model, "int8", torch.device("cpu"))
    ours = stream(model, inputs, "full", compile="regions" if order == "quantise, then compile" else False)
    assert converted_for(model) == "int8"
    assert not any(block.compiled_regions for block in model.aggregator.modules() if isinstance(block, Block))
    assert model.depth_head.compiled_regions and model.point_head.compiled_regions
    regional_compile.compile_regions(model, enabled=False)
    for got, want in zip(ours, stream(model, inputs, "full"), strict=True):
        assert_close(got, want)


def test_a_step_compiled_whole_traces_the_plain_blocks(eager_after):
    """compile="regions" on the model, then a session compiling whole steps: the step's graph holds the blocks'
    plain code (no compiled function called inside a graph), and runs like eager."""
    model = eager_after
    inputs = frames(4, 1)
    expected = stream(model, inputs, "window:1")
    regional_compile.compile_regions(model)
    graphs = []

    def recording_backend(graph: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(graph)
        return graph.forward

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # dynamo warns when it traces through functools caches
        ours = stream(model, inputs, "window:1", compile={"backend": recording_backend})
    assert len(graphs) == 1  # one graph: the step, compiled once the window is full
    for got, want in zip(ours, expected, strict=True):
        assert_close(got, want)
