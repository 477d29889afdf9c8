"""Shared test fixtures: the parity data in tests/fixtures (see its README) and small models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Test models are tiny: thread start-up and contention cost more than the parallel kernels save (measured 5x
# slower per stream step with 2 threads on a busy 2-core machine).
torch.set_num_threads(1)


def fixtures_dir() -> Path:
    """The repository's fixtures folder; fails (not skips) with a clear message when it is missing."""
    if not (FIXTURES / "parity" / "tiny.safetensors").is_file():
        pytest.fail(f"test fixtures not found in {FIXTURES}: see tests/fixtures/README.md")
    return FIXTURES


@pytest.fixture(scope="session")
def parity() -> dict[str, torch.Tensor]:
    """Every tensor of parity/tiny.safetensors: weights.*, input.*, causal.*, full.*, refstream.*."""
    from safetensors.torch import load_file

    return load_file(fixtures_dir() / "parity" / "tiny.safetensors")


@pytest.fixture(scope="session")
def parity_weights(parity: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name.removeprefix("weights."): t for name, t in parity.items() if name.startswith("weights.")}


@pytest.fixture(scope="session")
def layout_1b() -> dict[str, list[int]]:
    import json

    with open(fixtures_dir() / "checkpoint_layout_1b.json", encoding="utf-8") as f:
        return json.load(f)
