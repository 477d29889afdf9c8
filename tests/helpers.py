"""Helpers for tests: building the fixture model and small presets, comparing outputs at the fixture tolerances,
and loading the repository's scripts as modules."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
from pathlib import Path
from types import ModuleType

import torch

from streamvggt import ModelConfig, StreamVGGT
from streamvggt.cli import main

# Tolerances from tests/fixtures/README.md.
RTOL, ATOL = 1e-4, 1e-5
TRACK_ATOL = 1e-3


def tiny_model(weights: dict[str, torch.Tensor], causal: bool) -> StreamVGGT:
    """The fixture architecture with its weights, in eval mode on the CPU."""
    from tests.conftest import fixtures_dir

    config = ModelConfig.from_json(fixtures_dir() / "parity" / "tiny.json")
    config.causal = causal
    model = StreamVGGT(config).eval()
    model.load_state_dict(weights, strict=True)
    return model


def cut_tiny_model(depth: int) -> StreamVGGT:
    """The tiny preset cut to ``depth`` block pairs (the DPT heads read layers 0..depth-1) and a 1-block camera
    trunk, seeded and in eval mode: small enough for dynamo and inductor to compile in seconds."""
    tiny = ModelConfig.preset("tiny")
    layers = [min(index, depth - 1) for index in range(4)]
    config = dataclasses.replace(
        tiny,
        depth=depth,
        dpt_head=dataclasses.replace(tiny.dpt_head, intermediate_layer_idx=layers),
        camera_head=dataclasses.replace(tiny.camera_head, trunk_depth=1),
    )
    torch.manual_seed(0)
    return StreamVGGT(config).eval()


def load_script(path: Path) -> ModuleType:
    """A script of the repository (a benchmark, a CI helper) imported as a module, so tests can call its main."""
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_") + "_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str, atol: float = ATOL) -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=atol, msg=lambda m: f"{name}: {m}")


def run_cli(*args: object) -> tuple[int, str, str]:
    """Run ``streamvggt ARGS`` in this process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()
