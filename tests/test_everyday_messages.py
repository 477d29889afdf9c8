"""Messages a new user meets on everyday mistakes: one complete line that says what to do, never advice that lowers
safety, and no long wait before it (issue 24, item 10)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from streamvggt.weights import CheckpointError, read_state_dict, resolve_checkpoint


@pytest.mark.parametrize(
    "content",
    [b"not a checkpoint at all" * 10, pickle.dumps({"a": 1.5j}, protocol=2)],
    ids=["garbage", "plain-pickle"],
)
def test_a_corrupt_checkpoint_is_named_without_pytorchs_advice_to_turn_off_weights_only(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert message.startswith(f"cannot read {path}: not a PyTorch checkpoint, or truncated")
    assert "weights_only" not in message and "\n" not in message


def test_a_truncated_checkpoint_is_one_line(tmp_path):
    whole = tmp_path / "whole.pt"
    torch.save({"a": torch.zeros(64)}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint, or truncated") as caught:
        read_state_dict(cut)
    assert "\n" not in str(caught.value) and "weights_only" not in str(caught.value)


@pytest.fixture
def empty_hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Online mode, an empty Hugging Face cache and a Hub endpoint where nothing listens (a refused connection)."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")


def test_a_hub_id_without_a_connection_fails_at_once_with_a_complete_sentence(empty_hub_cache, monkeypatch):
    import huggingface_hub

    real = huggingface_hub.hf_hub_download
    requests = []

    def download(*args, **kwargs):
        requests.append(kwargs.get("local_files_only", False))
        if not kwargs.get("local_files_only"):
            pytest.fail("a download was attempted: huggingface_hub retries an unreachable host for about 25 s")
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint("lch01/StreamVGGT")
    message = str(caught.value)
    assert requests == [True]
    assert message == (
        "cannot download 'checkpoints.pth' from Hugging Face repo lch01/StreamVGGT: http://127.0.0.1:9 cannot be "
        "reached and the file is not in the Hugging Face cache; connect to the internet and retry, or download "
        "checkpoints.pth and pass its path"
    )


def test_the_no_connection_message_of_the_hub_is_a_complete_sentence():
    from huggingface_hub import errors

    from streamvggt.weights import _hub_error_message

    error = errors.LocalEntryNotFoundError("no connection")
    message = _hub_error_message("a/b", "model.pt", error, "download model.pt and pass its path", errors, False)
    assert ": or" not in message
    assert message.endswith("not in the Hugging Face cache: retry online, or download model.pt and pass its path")
