"""Helpers for tests: building the fixture model and comparing outputs at the fixture tolerances."""

from __future__ import annotations

import torch

from streamvggt import ModelConfig, StreamVGGT

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


def assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str, atol: float = ATOL) -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=atol, msg=lambda m: f"{name}: {m}")
