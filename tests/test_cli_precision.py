"""``--precision`` and ``--compile`` on the commands that run the model: they reach the model and its session, a
reduced precision is warmed up at the first frame's size before streaming starts, the requested and resolved modes
are recorded in cameras.json and the summary, and bad values are one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

import streamvggt.pipeline.reconstructor as reconstruction
from streamvggt import StreamVGGT
from streamvggt.io.inputs.sources import Frame
from streamvggt.pipeline.reconstructor import Reconstructor, reconstruct
from streamvggt.pipeline.warm_up import warm_up
from streamvggt.runtime.precision import apply_precision, converted_for
from streamvggt.streaming.session import StreamSession
from tests.helpers import run_cli
from tests.reconstruct_helpers import HEIGHT, WIDTH, frame_pixels, tiny_checkpoint, tiny_model, write_images


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint"))


@pytest.fixture
def frames(tmp_path) -> Path:
    write_images(tmp_path / "frames", ["0.png", "1.png"])
    return tmp_path / "frames"


@pytest.fixture
def loaded(monkeypatch) -> list[StreamVGGT]:
    """The models reconstruct loads, as it loads them."""
    models: list[StreamVGGT] = []
    load = reconstruction.load_model

    def recording_load(*args, **kwargs) -> StreamVGGT:
        models.append(load(*args, **kwargs))
        return models[-1]

    monkeypatch.setattr(reconstruction, "load_model", recording_load)
    return models


@pytest.fixture
def events(monkeypatch) -> list[tuple]:
    """("warm_up", height, width, ran) for each model warm-up and ("step", frames before) for each session step."""
    seen: list[tuple] = []
    step = StreamSession.step

    def recording_warm_up(model, height, width, device=None) -> bool:
        ran = warm_up(model, height, width, device)
        seen.append(("warm_up", height, width, ran))
        return ran

    def recording_step(session, frame):
        seen.append(("step", session.num_frames))
        return step(session, frame)

    monkeypatch.setattr(reconstruction, "warm_up", recording_warm_up)
    monkeypatch.setattr(StreamSession, "step", recording_step)
    return seen


def reconstruct_cli(frames: Path, checkpoint: Path, *options) -> tuple[int, str, str]:
    out = frames.parent / "out"
    return run_cli("reconstruct", frames, "-o", out, "--checkpoint", checkpoint, "--size", WIDTH, *options)


def test_precision_bf16_reaches_the_model_and_converts_its_trunk(frames, checkpoint, loaded):
    code, _, stderr = reconstruct_cli(frames, checkpoint, "--precision", "bf16", "--no-progress")
    assert code == 0, stderr
    (model,) = loaded
    assert model.execution.to_json() == {"requested": "bf16", "resolved": "bf16"}
    assert converted_for(model) == "bf16"
    assert model.aggregator.patch_embed.blocks[0].attn.qkv.weight.dtype == torch.bfloat16


def test_auto_keeps_a_tiny_model_in_fp32_below_the_width_floor(frames, checkpoint, loaded):
    code, _, stderr = reconstruct_cli(frames, checkpoint, "--no-progress")
    assert code == 0, stderr
    (model,) = loaded
    assert model.execution.to_json() == {"requested": "auto", "resolved": "fp32"}
    assert converted_for(model) == "fp32"
    assert model.aggregator.patch_embed.blocks[0].attn.qkv.weight.dtype == torch.float32


def test_bf16_is_warmed_up_at_the_first_frames_size_before_the_first_step_and_says_so(frames, checkpoint, events):
    code, _, stderr = reconstruct_cli(frames, checkpoint, "--precision", "bf16", "--no-progress", "-v")
    assert code == 0, stderr
    # The warm-up's own throwaway step comes first (0 frames before), then the stream's two frames.
    assert events == [("step", 0), ("warm_up", HEIGHT, WIDTH, True), ("step", 0), ("step", 1)]
    assert f"warmed up bf16 kernels for {WIDTH}x{HEIGHT} frames" in stderr


def test_fp32_on_cpu_streams_without_a_warm_up_frame(frames, checkpoint, events):
    code, _, stderr = reconstruct_cli(frames, checkpoint, "--precision", "fp32", "--no-progress")
    assert code == 0, stderr
    assert events == [("step", 0), ("step", 1)]


def test_a_model_warms_up_once_per_frame_size():
    model = tiny_model()
    apply_precision(model, "bf16", torch.device("cpu"))
    assert [warm_up(model, 28, 42), warm_up(model, 28, 42), warm_up(model, 42, 42)] == [True, False, True]
    assert warm_up(tiny_model(), 28, 42)  # another model: its own kernels state


def test_compile_reaches_the_session(frames, checkpoint, monkeypatch):
    sessions: list[StreamSession] = []
    init = StreamSession.__init__

    def recording_init(session, *args, **kwargs) -> None:
        init(session, *args, **kwargs)
        sessions.append(session)

    monkeypatch.setattr(StreamSession, "__init__", recording_init)
    # One frame: the full cache compiles from the second frame on, so nothing is compiled and the test stays fast.
    code, _, stderr = reconstruct_cli(frames, checkpoint, "--compile", "--max-frames", 1, "--no-progress")
    assert code == 0, stderr
    assert [session.compile for session in sessions] == ["step"]


def test_compile_regions_reaches_the_model(frames, checkpoint, monkeypatch):
    compiled: list[StreamVGGT] = []
    monkeypatch.setattr(
        "streamvggt.streaming.session.compile_regions", compiled.append
    )  # the compiling itself: test_compile
    code, _, stderr = reconstruct_cli(frames, checkpoint, "--compile", "regions", "--max-frames", 1, "--no-progress")
    assert code == 0, stderr
    assert len(compiled) == 1 and isinstance(compiled[0], StreamVGGT)


def test_an_unknown_compile_mode_is_a_usage_error(frames, checkpoint):
    with pytest.raises(SystemExit) as exit_info:
        reconstruct_cli(frames, checkpoint, "--compile", "graph")
    assert exit_info.value.code == 2
    assert not (frames.parent / "out").exists()


@pytest.mark.parametrize("value", ["fp8", "BF16", "int4"])
def test_an_unknown_precision_is_one_line_and_nothing_is_written(frames, checkpoint, value):
    code, stdout, stderr = reconstruct_cli(frames, checkpoint, "--precision", value)
    assert code == 1 and stdout == ""
    assert stderr.strip().splitlines() == [
        f"streamvggt reconstruct: error: unknown precision '{value}'; choose one of auto, fp32, bf16, fp16, int8"
    ]
    assert not (frames.parent / "out").exists()


def test_int8_on_a_gpu_is_one_line(frames, checkpoint, monkeypatch):
    monkeypatch.setattr("streamvggt.runtime.device.select_device", lambda name: torch.device("cuda"))
    code, _, stderr = reconstruct_cli(frames, checkpoint, "--precision", "int8", "--device", "cuda")
    assert code == 1
    assert stderr.strip().splitlines() == [
        "streamvggt reconstruct: error: precision 'int8' runs on the CPU only, not on cuda"
    ]


def test_view_passes_precision_and_compile_to_the_viewer(monkeypatch, tmp_path):
    given: dict = {}

    def fake_view(source, options, **rest):
        given.update(precision=options.model.precision, compile=options.model.compile)
        raise ValueError("stop here")

    monkeypatch.setattr("streamvggt.viewer.view", fake_view)
    code, _, _ = run_cli("view", tmp_path, "--precision", "int8", "--compile")
    assert code == 1
    assert (given["precision"], given["compile"]) == ("int8", "step")


def test_reconstruct_many_loads_the_model_in_the_given_precision(monkeypatch, frames, checkpoint, tmp_path):
    given: dict = {}

    def fake_load(source, **options):
        given.update(options)
        raise ValueError("stop here")

    monkeypatch.setattr("streamvggt.collection.runner.load_model", fake_load)
    manifest = tmp_path / "inputs.txt"
    manifest.write_text(f"{frames}\n", encoding="utf-8")
    code, _, _ = run_cli(
        "reconstruct-many", manifest, "-o", tmp_path / "many", "--checkpoint", checkpoint, "--precision", "bf16"
    )
    assert code == 1
    assert given["precision"] == "bf16"


def test_demo_passes_the_precision_on(monkeypatch, tmp_path):
    given: list = []

    def fake_run_demo(output, checkpoint, frames, device, precision, progress):
        given.append(precision)
        raise ValueError("stop here")

    monkeypatch.setattr("streamvggt.demo.run_demo", fake_run_demo)
    code, _, _ = run_cli("demo", "-o", tmp_path / "demo", "--precision", "fp32")
    assert code == 1
    assert given == ["fp32"]


def test_the_library_call_takes_precision_and_logs_the_warm_up(frames, checkpoint, caplog):
    with caplog.at_level(logging.INFO, logger="streamvggt.pipeline.reconstructor"):
        summary = reconstruct(frames, frames.parent / "lib", checkpoint, size=WIDTH, precision="bf16")
    assert summary.frames == 2
    assert [r.getMessage().split(" in ")[0] for r in caplog.records if "warmed up" in r.getMessage()] == [
        f"warmed up bf16 kernels for {WIDTH}x{HEIGHT} frames"
    ]


def test_a_reconstructor_warms_up_on_its_first_frame_when_nobody_did(events):
    model = tiny_model()
    apply_precision(model, "bf16", torch.device("cpu"))
    reconstructor = Reconstructor(model, size=WIDTH)
    reconstructor.step(Frame(frame_pixels(0), "0.png"))
    reconstructor.step(Frame(frame_pixels(1), "1.png"))
    assert events == [("step", 0), ("warm_up", HEIGHT, WIDTH, True), ("step", 0), ("step", 1)]


def test_fp32_on_cpu_warms_up_when_the_models_regions_are_compiled(monkeypatch):
    """Compiled regions compile at their first call, so even fp32 on a CPU takes the warm-up frame; what counts is
    the model's state, however it was compiled (here by hand, before the reconstructor existed)."""
    model = tiny_model()
    warmed: list[tuple[int, int]] = []
    monkeypatch.setattr(reconstruction, "warm_up", lambda model, h, w, device=None: warmed.append((h, w)) or True)
    Reconstructor(model, size=WIDTH).warm_up((HEIGHT, WIDTH))
    assert warmed == []
    for module in model.modules():
        if hasattr(module, "compiled_regions"):
            module.compiled_regions = True
    Reconstructor(model, size=WIDTH).warm_up((HEIGHT, WIDTH))
    assert warmed == [(HEIGHT, WIDTH)]


def test_cameras_json_and_the_printed_summary_say_the_requested_and_resolved_precision(frames, checkpoint):
    code, stdout, stderr = reconstruct_cli(frames, checkpoint, "--no-progress")
    assert code == 0, stderr
    cameras = json.loads((frames.parent / "out" / "cameras.json").read_text(encoding="utf-8"))
    assert cameras["precision"] == {"requested": "auto", "resolved": "fp32"}
    assert "frames/s streaming, precision fp32 (auto))" in stdout.splitlines()[0]


def test_the_library_summary_carries_the_precision_of_the_model_it_ran(frames, checkpoint):
    summary = reconstruct(frames, frames.parent / "lib", checkpoint, size=WIDTH, precision="bf16")
    assert summary.precision.to_json() == {"requested": "bf16", "resolved": "bf16"}
    cameras = json.loads((frames.parent / "lib" / "cameras.json").read_text(encoding="utf-8"))
    assert cameras["precision"] == {"requested": "bf16", "resolved": "bf16"}
    given = tiny_model()  # a model passed in runs as it is: fp32 unless someone converted it
    assert reconstruct(frames, frames.parent / "given", given, size=WIDTH).precision.resolved == "fp32"
