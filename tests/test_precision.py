"""Inference precision: what auto picks on which CPU, what each mode does to the model's weights, and that the raw
module, which nobody converted, computes exactly in fp32 whatever the CPU."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from streamvggt import ModelConfig, StreamVGGT, load_model
from streamvggt.runtime import precision as precision_module
from streamvggt.runtime.precision import apply_precision, converted_for, execution_precision, resolve_precision

CPU = torch.device("cpu")
WIDE = 1024  # the 1.2B trunk's width: above MIN_WIDTH


def tiny_model(seed: int = 0) -> StreamVGGT:
    torch.manual_seed(seed)
    return StreamVGGT(ModelConfig.preset("tiny")).eval()


def frames(count: int = 2) -> torch.Tensor:
    return torch.rand(1, count, 3, 28, 42, generator=torch.Generator().manual_seed(3))


def fake_cpu(monkeypatch: pytest.MonkeyPatch, capability: str, timings: dict[str, float] | None = None) -> list:
    """Pretend to run on a CPU with ``capability`` whose trunk blocks take ``timings``; returns the measured shapes."""
    measured: list[tuple[int, int]] = []

    def measure(dim: int, tokens: int) -> dict[str, float]:
        measured.append((dim, tokens))
        if timings is None:
            raise AssertionError("auto measured blocks where the capability alone decides")
        return timings

    monkeypatch.setattr(precision_module, "cpu_capability", lambda: capability)
    monkeypatch.setattr(precision_module, "block_timings", measure)
    return measured


def test_auto_is_fp32_on_a_cpu_without_vector_bf16_without_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, "AVX2")
    assert resolve_precision(CPU, "auto", WIDE, 1374) == "fp32"


def test_auto_is_the_fastest_accurate_mode_on_avx512(monkeypatch: pytest.MonkeyPatch) -> None:
    measured = fake_cpu(monkeypatch, "AVX512", {"fp32": 0.100, "bf16": 0.040, "int8": 0.060})
    assert resolve_precision(CPU, "auto", WIDE, 1374) == "bf16"
    assert measured == [(WIDE, 1374)]
    fake_cpu(monkeypatch, "AVX512", {"fp32": 0.100, "bf16": 0.060, "int8": 0.040})
    assert resolve_precision(CPU, "auto", WIDE, 1374) == "int8"


def test_auto_is_fp32_on_avx512_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    # Skylake-class AVX-512 has no bf16 instructions: bf16 blocks come out slower, or no faster than the margin.
    fake_cpu(monkeypatch, "AVX512", {"fp32": 0.100, "bf16": 0.250, "int8": 0.150})
    assert resolve_precision(CPU, "auto", WIDE, 1374) == "fp32"
    fake_cpu(monkeypatch, "AVX512", {"fp32": 0.100, "bf16": 0.100 / precision_module.MIN_SPEEDUP + 0.001, "int8": 1})
    assert resolve_precision(CPU, "auto", WIDE, 1374) == "fp32"


def test_auto_never_picks_a_mode_that_misses_the_accuracy_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, "AVX512", {"fp32": 0.100, "bf16": 0.050, "int8": 0.010})
    monkeypatch.setattr(precision_module, "ACCURATE_CPU_MODES", ("bf16",))
    assert resolve_precision(CPU, "auto", WIDE, 1374) == "bf16"
    monkeypatch.setattr(precision_module, "ACCURATE_CPU_MODES", ("bf16", "int8"))
    assert resolve_precision(CPU, "auto", WIDE, 1374) == "int8"


def test_auto_keeps_narrow_trunks_in_fp32_without_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, "AVX512")
    assert resolve_precision(CPU, "auto", precision_module.MIN_WIDTH - 1, 1374) == "fp32"


def test_explicit_precision_overrides_the_cpu_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu(monkeypatch, "AVX2")
    assert [resolve_precision(CPU, mode, WIDE, 1374) for mode in ("fp32", "bf16", "int8")] == ["fp32", "bf16", "int8"]


def test_int8_is_refused_off_the_cpu() -> None:
    with pytest.raises(ValueError, match="'int8' runs on the CPU only"):
        resolve_precision(torch.device("cuda"), "int8")


def test_block_timings_are_measured_once_per_machine_and_cached(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(precision_module.CACHE_ENV, str(tmp_path))
    calls = []
    monkeypatch.setattr(
        precision_module, "measure_blocks", lambda dim, tokens: calls.append((dim, tokens)) or {"fp32": 0.5}
    )
    assert precision_module.block_timings(64, 20) == {"fp32": 0.5}
    assert precision_module.block_timings(64, 20) == {"fp32": 0.5}
    assert precision_module.block_timings(32, 20) == {"fp32": 0.5}
    assert calls == [(64, 20), (32, 20)]
    assert (tmp_path / "cpu_precision.json").is_file()


def test_block_measurement_covers_every_cpu_mode() -> None:
    timings = precision_module.measure_blocks(64, 8, repeats=1)
    assert sorted(timings) == ["bf16", "fp32", "int8"]
    assert all(seconds > 0 for seconds in timings.values())


def test_model_auto_follows_the_cpu_choice_for_its_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    measured = fake_cpu(monkeypatch, "AVX512", {"fp32": 0.1, "bf16": 0.01, "int8": 0.05})
    monkeypatch.setattr(precision_module, "MIN_WIDTH", 0)
    model = tiny_model()
    assert apply_precision(model, "auto", CPU).to_json() == {"requested": "auto", "resolved": "bf16"}
    assert model.execution.resolved == "bf16"
    # One measurement, at the model's shape: 518-pixel square frames of the tiny preset are 37x37 patches plus 5
    # special tokens.
    assert measured == [(32, 5 + 37 * 37)]


def test_the_raw_module_computes_fp32_on_a_cpu_where_auto_picks_int8(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A model built and loaded by hand, in eval(), is an ordinary module: no CPU measurement, no conversion, the
    same numbers as fp32; only load_model's precision converts it."""
    measured = fake_cpu(monkeypatch, "AVX512", {"fp32": 0.1, "bf16": 0.08, "int8": 0.01})
    monkeypatch.setattr(precision_module, "MIN_WIDTH", 0)
    raw = tiny_model()
    fp32 = copy.deepcopy(raw)
    apply_precision(fp32, "fp32", CPU)
    torch.save(raw.state_dict(), tmp_path / "weights.pt")
    int8 = load_model(tmp_path / "weights.pt", preset="tiny", device="cpu", precision="int8")
    with torch.no_grad():
        ours, expected, quantised = raw(frames()), fp32(frames()), int8(frames())
    assert measured == []
    assert raw.execution.to_json() == {"requested": "fp32", "resolved": "fp32"} and converted_for(raw) == "fp32"
    for name in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        torch.testing.assert_close(ours[name], expected[name], rtol=0, atol=1e-6)
    assert max(float((quantised[n] - expected[n]).abs().max()) for n in ("pose_enc", "depth")) > 1e-4


def test_load_model_auto_takes_what_the_cpu_measurement_picks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_cpu(monkeypatch, "AVX512", {"fp32": 0.1, "bf16": 0.08, "int8": 0.01})
    monkeypatch.setattr(precision_module, "MIN_WIDTH", 0)
    torch.save(tiny_model().state_dict(), tmp_path / "weights.pt")
    model = load_model(tmp_path / "weights.pt", preset="tiny", device="cpu")
    assert model.execution.to_json() == {"requested": "auto", "resolved": "int8"}
    assert converted_for(model) == "int8"


def test_bf16_stores_only_the_trunk_linear_weights_in_bf16() -> None:
    model = tiny_model()
    assert apply_precision(model, "bf16", CPU).resolved == "bf16"
    trunk = {id(linear) for _, _, linear in precision_module.trunk_linears(model)}
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    cfg = model.config
    assert len(trunk) == 4 * (2 * cfg.depth + cfg.patch_embed.depth)  # qkv, proj, fc1, fc2 per block
    for linear in linears:
        expected = torch.bfloat16 if id(linear) in trunk else torch.float32
        assert linear.weight.dtype == linear.bias.dtype == expected
    assert model.aggregator.camera_token.dtype == torch.float32


def test_bf16_weights_give_what_bf16_autocast_gives_on_the_same_rounded_weights() -> None:
    converted, reference = tiny_model(), tiny_model()
    apply_precision(converted, "bf16", CPU)
    reference.execution = execution_precision("bf16", "bf16", CPU)  # the same autocast, fp32 weights
    for _, _, linear in precision_module.trunk_linears(reference):
        linear.weight.data = linear.weight.data.bfloat16().float()
        linear.bias.data = linear.bias.data.bfloat16().float()
    with torch.no_grad():
        ours, expected = converted(frames()), reference(frames())
    assert ours["depth"].dtype == torch.float32
    assert torch.equal(ours["depth"], expected["depth"])
    assert torch.equal(ours["pose_enc"], expected["pose_enc"])


def test_int8_quantises_every_trunk_linear_and_streams() -> None:
    model = tiny_model()
    count = len(precision_module.trunk_linears(model))
    apply_precision(model, "int8", CPU)
    session = model.stream()
    out = [session.step(frames()[:, t]) for t in range(2)]
    quantised = [m for m in model.aggregator.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantised) == count
    assert precision_module.trunk_linears(model) == []
    assert all(bool(torch.isfinite(o["depth"]).all()) for o in out)


def test_converted_weights_refuse_another_mode() -> None:
    model = tiny_model()
    apply_precision(model, "bf16", CPU)
    with pytest.raises(ValueError, match="converted for precision 'bf16'; load the model again to run 'fp32'"):
        apply_precision(model, "fp32", CPU)
    assert model.execution.resolved == "bf16"


def test_weights_are_converted_for_inference_only() -> None:
    model = tiny_model().train()
    with pytest.raises(ValueError, match=r"call model.eval\(\) first"):
        apply_precision(model, "int8", CPU)
    assert converted_for(model) == "fp32"


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_bf16_load_puts_the_checkpoint_straight_into_bf16(tmp_path: Path, suffix: str) -> None:
    source = tiny_model()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save(source.state_dict(), path)
    else:
        source.save_pretrained(tmp_path)
        path = tmp_path
    model = load_model(path, preset="tiny", device="cpu", precision="bf16")
    assert converted_for(model) == "bf16"
    assert model.execution.to_json() == {"requested": "bf16", "resolved": "bf16"}
    state = source.state_dict()
    for name, tensor in model.state_dict().items():
        expected = state[name].to(tensor.dtype)
        assert torch.equal(tensor, expected), name
    assert model.aggregator.global_blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert model.depth_head.projects[0].weight.dtype == torch.float32


def test_int8_load_quantises_the_trunk() -> None:
    model = load_model(None, device="cpu", precision="int8")
    assert converted_for(model) == "int8"
    assert model.execution.resolved == "int8"
    assert precision_module.trunk_linears(model) == []


def test_bf16_runs_the_dense_heads_convolutions_in_bf16_and_their_outputs_in_fp32() -> None:
    model = tiny_model()
    apply_precision(model, "bf16", CPU)
    seen: dict[str, torch.dtype] = {}

    def record(name: str):
        return lambda module, inputs, output: seen.__setitem__(name, output.dtype)

    model.depth_head.scratch.output_conv1.register_forward_hook(record("depth conv"))
    model.point_head.scratch.output_conv1.register_forward_hook(record("point conv"))
    model.depth_head.scratch.output_conv2[0].register_forward_hook(record("depth output conv"))
    model.depth_head.scratch.output_conv2[-1].register_forward_hook(record("depth last conv"))
    model.camera_head.pose_branch.register_forward_hook(record("camera"))
    with torch.no_grad():
        out = model(frames())
    assert seen == {
        "depth conv": torch.bfloat16,
        "point conv": torch.bfloat16,
        "depth output conv": torch.bfloat16,
        "depth last conv": torch.float32,
        "camera": torch.float32,
    }
    assert out["depth"].dtype == out["world_points"].dtype == out["pose_enc"].dtype == torch.float32


def test_fp32_runs_every_head_in_fp32() -> None:
    model = tiny_model()
    apply_precision(model, "fp32", CPU)
    seen = []
    model.depth_head.scratch.output_conv1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad():
        model(frames())
    assert seen == [torch.float32]


def test_training_loads_its_models_in_fp32_where_auto_would_quantise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Training converts nothing: a student initialised from a checkpoint and the teacher keep fp32 weights and the
    default record, on a CPU where load_model's auto would pick int8."""
    from streamvggt.train.config import ModelSection
    from streamvggt.train.loop import build_models

    monkeypatch.setattr(precision_module, "choose_cpu_precision", lambda dim, tokens: "int8")
    tiny_model().save_pretrained(tmp_path / "init")
    section = ModelSection(preset="tiny", init=str(tmp_path / "init"), teacher=str(tmp_path / "init"))
    student, teacher = build_models(section, distill=True, seed=0)
    for model in (student, teacher):
        assert converted_for(model) == "fp32"
        assert model.execution.to_json() == {"requested": "fp32", "resolved": "fp32"}
    assert student.training


def test_training_resolves_its_autocast_with_the_runtime_resolver() -> None:
    from streamvggt.train.config import TrainConfig
    from streamvggt.train.loop import training_precision

    config = TrainConfig()
    for wanted, expected in (("auto", "fp32"), ("no", "fp32"), ("bf16", "bf16"), ("fp16", "fp16")):
        config.run.mixed_precision = wanted
        assert training_precision(config, CPU) == expected
