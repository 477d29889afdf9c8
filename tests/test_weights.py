"""Loading weights from every supported source, and the errors for checkpoints that do not fit."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from streamvggt import CheckpointError, ModelConfig, StreamVGGT, load_model
from streamvggt import weights as weights_module
from streamvggt.weights import read_state_dict

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"  # a commit hash, as the Hugging Face cache names snapshots


class Opaque:
    """A class that a weights-only load must refuse to rebuild."""


@dataclasses.dataclass
class Reference:
    """A seeded tiny model's state dict, its input, and its outputs with causal and full attention."""

    state: dict[str, torch.Tensor]
    images: torch.Tensor
    queries: torch.Tensor
    outputs: dict[bool, dict[str, torch.Tensor]]


def tiny(causal: bool = True) -> ModelConfig:
    return dataclasses.replace(ModelConfig.preset("tiny"), causal=causal)


def run(model: StreamVGGT, ref: Reference) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model(ref.images, ref.queries)


@pytest.fixture(scope="module")
def ref() -> Reference:
    torch.manual_seed(0)
    model = StreamVGGT(tiny(causal=True)).eval()
    state = {name: t.detach().clone() for name, t in model.state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(1, 2, 3, 28, 28, generator=generator)  # two frames: causal and full attention differ
    queries = torch.rand(1, 3, 2, generator=generator) * 27
    full = StreamVGGT(tiny(causal=False)).eval()
    full.load_state_dict(state)
    reference = Reference(state, images, queries, {})
    reference.outputs = {True: run(model, reference), False: run(full, reference)}
    return reference


@pytest.fixture(scope="module")
def raw_pt(ref: Reference, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference state dict saved once as a raw .pt file; tests copy it where they need it."""
    path = tmp_path_factory.mktemp("raw") / "weights.pt"
    torch.save(ref.state, path)
    return path


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Offline mode and an empty Hugging Face cache in tmp_path; no test may reach the network.

    huggingface_hub reads its environment at import, so its constants are patched along with the variables.
    """
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def cache_repo(cache: Path, repo_id: str, files: dict[str, Path]) -> None:
    """Lay ``files`` out as the Hugging Face cache does: one snapshot per commit, refs/main naming it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / SNAPSHOT
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        (snapshot / name).write_bytes(source.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)


def assert_same_state(model: StreamVGGT, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        assert loaded[name].dtype == torch.float32, name
        assert torch.equal(loaded[name], tensor), name


def assert_same_outputs(model: StreamVGGT, ref: Reference, causal: bool) -> None:
    outputs = run(model, ref)
    assert outputs.keys() == ref.outputs[causal].keys()
    for name, expected in ref.outputs[causal].items():
        torch.testing.assert_close(outputs[name], expected, msg=lambda m, name=name: f"{name}: {m}")


def load(source: object, **kwargs: object) -> StreamVGGT:
    kwargs.setdefault("device", "cpu")
    return load_model(source, **kwargs)


# ----------------------------------------------------------------------------------------------------- formats


def write_raw(state: dict[str, torch.Tensor], folder: Path) -> Path:
    torch.save(state, folder / "weights.pt")
    return folder / "weights.pt"


def write_training_checkpoint(state: dict[str, torch.Tensor], folder: Path) -> Path:
    """What the reference training loop saves: the DDP-wrapped model's state dict beside optimizer and args."""
    checkpoint = {
        "model": {f"module.{name}": t for name, t in state.items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5}]},
        "args": argparse.Namespace(lr=1e-5, epochs=10),
        "epoch": 3,
    }
    torch.save(checkpoint, folder / "checkpoint-last.pth")
    return folder / "checkpoint-last.pth"


def write_safetensors(state: dict[str, torch.Tensor], folder: Path) -> Path:
    save_file(state, folder / "weights.safetensors")
    return folder / "weights.safetensors"


@pytest.mark.parametrize("write", [write_raw, write_training_checkpoint, write_safetensors])
def test_checkpoint_file_loads_tensor_for_tensor(ref: Reference, tmp_path: Path, write: Callable) -> None:
    model = load(write(ref.state, tmp_path), preset="tiny")
    assert not model.training
    assert model.config.causal is True
    assert_same_state(model, ref.state)
    assert_same_outputs(model, ref, causal=True)


@pytest.mark.parametrize(
    ("wrapper", "prefix"), [("model", "module."), ("state_dict", "_orig_mod."), ("module", "module._orig_mod.")]
)
def test_training_wrappers_and_key_prefixes_are_removed(
    ref: Reference, tmp_path: Path, wrapper: str, prefix: str
) -> None:
    path = tmp_path / "checkpoint.pth"
    torch.save({wrapper: {prefix + name: t for name, t in ref.state.items()}, "epoch": 1}, path)
    state = read_state_dict(path)
    assert state.keys() == ref.state.keys()
    assert all(torch.equal(state[name], t) for name, t in ref.state.items())


@pytest.mark.parametrize("causal", [True, False])
def test_save_pretrained_round_trips_weights_and_config(ref: Reference, tmp_path: Path, causal: bool) -> None:
    original = StreamVGGT(tiny(causal)).eval()
    original.load_state_dict(ref.state)
    folder = original.save_pretrained(tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]  # no temp files left
    model = StreamVGGT.from_pretrained(folder, device="cpu")  # no preset: config.json says everything
    assert model.config.to_dict() == tiny(causal).to_dict()
    assert_same_state(model, ref.state)
    assert_same_outputs(model, ref, causal=causal)


def test_save_pretrained_keeps_old_files_when_writing_fails(
    ref: Reference, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = StreamVGGT(tiny()).eval()
    model.load_state_dict(ref.state)
    folder = model.save_pretrained(tmp_path / "out")
    before = (folder / "model.safetensors").read_bytes()

    def fail(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(folder)
    assert (folder / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_reference_outputs_tell_the_attention_patterns_apart(ref: Reference) -> None:
    """Otherwise the causal checks below could not fail."""
    assert not torch.allclose(ref.outputs[True]["pose_enc"], ref.outputs[False]["pose_enc"])


@pytest.mark.parametrize(("filename", "causal"), [("model.pt", False), ("checkpoints.pth", True)])
def test_official_snapshot_folder_sets_attention_from_the_file(
    ref: Reference, raw_pt: Path, tmp_path: Path, filename: str, causal: bool
) -> None:
    """VGGT-1B's model.pt runs full attention, StreamVGGT's checkpoints.pth causal; the preset only sizes it."""
    folder = tmp_path / "snapshot"
    folder.mkdir()
    shutil.copy(raw_pt, folder / filename)
    model = load(folder, preset="tiny")
    assert model.config.causal is causal
    assert model.aggregator.causal is causal
    assert_same_outputs(model, ref, causal=causal)


def test_vggt_snapshot_ignores_the_hub_mixin_config(ref: Reference, raw_pt: Path, tmp_path: Path) -> None:
    """facebook/VGGT-1B also holds PyTorchModelHubMixin's config.json and model.safetensors: not our format."""
    folder = tmp_path / "snapshot"
    folder.mkdir()
    shutil.copy(raw_pt, folder / "model.pt")
    save_file(ref.state, folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps({"img_size": 518, "patch_size": 14, "embed_dim": 1024}))
    model = load(folder, preset="tiny")
    assert model.config.causal is False


def test_model_config_preset_overrides_the_official_attention(ref: Reference, raw_pt: Path, tmp_path: Path) -> None:
    folder = tmp_path / "snapshot"
    folder.mkdir()
    shutil.copy(raw_pt, folder / "model.pt")
    model = load(folder, preset=tiny(causal=True))
    assert model.config.causal is True
    assert_same_outputs(model, ref, causal=True)


def test_official_repo_id_resolves_from_the_offline_cache(ref: Reference, raw_pt: Path, hub_offline: Path) -> None:
    cache_repo(hub_offline, "facebook/VGGT-1B", {"model.pt": raw_pt})
    model = load("facebook/VGGT-1B", preset="tiny")
    assert model.config.causal is False
    assert_same_state(model, ref.state)


def test_other_repo_id_reads_config_and_safetensors(ref: Reference, tmp_path: Path, hub_offline: Path) -> None:
    original = StreamVGGT(tiny(causal=False)).eval()
    original.load_state_dict(ref.state)
    folder = original.save_pretrained(tmp_path / "out")
    cache_repo(hub_offline, "someone/tiny-vggt", {p.name: p for p in folder.iterdir()})
    model = load("someone/tiny-vggt")
    assert model.config.to_dict() == tiny(causal=False).to_dict()
    assert_same_state(model, ref.state)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_are_cast_to_float32(ref: Reference, tmp_path: Path, dtype: torch.dtype) -> None:
    stored = {name: t.to(dtype) for name, t in ref.state.items()}
    path = tmp_path / "half.safetensors"
    save_file(stored, path)
    model = load(path, preset="tiny")
    assert_same_state(model, {name: t.float() for name, t in stored.items()})


# ----------------------------------------------------------------------------------------- building the model


def test_meta_built_model_matches_a_normally_built_one(raw_pt: Path) -> None:
    """Buffers outside the state dict (image normalisation) and requires_grad flags survive the meta build."""
    model = load(raw_pt, preset="tiny")
    normal = StreamVGGT(tiny())
    buffers = dict(model.named_buffers())
    assert buffers.keys() == dict(normal.named_buffers()).keys()
    for name, buffer in normal.named_buffers():
        assert torch.equal(buffers[name], buffer), name
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    assert flags == {name: p.requires_grad for name, p in normal.named_parameters()}
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def test_precision_is_set_and_checked_before_loading(raw_pt: Path, tmp_path: Path) -> None:
    assert load(raw_pt, preset="tiny", precision="fp32").execution.to_json() == {
        "requested": "fp32",
        "resolved": "fp32",
    }
    with pytest.raises(ValueError, match="precision"):
        load(tmp_path / "missing.pt", precision="fp8")


def test_torch_load_runs_weights_only(raw_pt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_load = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load(raw_pt, preset="tiny")
    assert calls == [True]


# ------------------------------------------------------------------------------------------------------ errors


def test_other_architecture_names_missing_unexpected_and_misshapen_tensors(tmp_path: Path) -> None:
    base = ModelConfig.preset("tiny")
    other = dataclasses.replace(
        base,
        patch_embed=dataclasses.replace(base.patch_embed, depth=3),  # extra blocks: unexpected tensors
        camera_head=dataclasses.replace(base.camera_head, trunk_depth=1),  # fewer blocks: missing tensors
        dpt_head=dataclasses.replace(base.dpt_head, features=8),  # narrower: wrong shapes
    )
    path = tmp_path / "other.pt"
    torch.save(StreamVGGT(other).state_dict(), path)
    with pytest.raises(CheckpointError) as caught:
        load(path, preset="tiny")
    message = str(caught.value)
    assert "tensors missing" in message and "camera_head.trunk.1." in message
    assert "tensors unexpected" in message and "aggregator.patch_embed.blocks.2." in message
    assert "with the wrong shape" in message and "more)" in message  # long lists are cut, with a count
    assert "\n" not in message


def test_raw_file_without_preset_is_checked_against_streamvggt_1b(raw_pt: Path) -> None:
    with pytest.raises(CheckpointError, match=r"default preset 'streamvggt-1b'.*wrong shape"):
        load(raw_pt)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_tensor_is_named(ref: Reference, tmp_path: Path, bad: float) -> None:
    state = {name: t.clone() for name, t in ref.state.items()}
    name = "aggregator.frame_blocks.3.attn.qkv.weight"
    state[name][0, 0] = bad
    path = tmp_path / "weights.safetensors"
    save_file(state, path)
    with pytest.raises(CheckpointError, match=f"{name} holds"):
        load(path, preset="tiny")


@pytest.mark.parametrize("name", ["weights.pt", "weights.safetensors", "empty.pth"])
def test_unreadable_file_raises_checkpoint_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("" if name.startswith("empty") else "this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="cannot read") as caught:
        load(path, preset="tiny")
    assert caught.value.__cause__ is None and "\n" not in str(caught.value)


def test_checkpoint_needing_arbitrary_classes_is_refused(ref: Reference, tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"model": ref.state, "extra": Opaque()}, path)
    with pytest.raises(CheckpointError, match="Opaque") as caught:
        load(path, preset="tiny")
    assert "weights_only" not in str(caught.value)  # no advice that would run a hostile file's code


def test_file_without_a_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "numbers.pt"
    torch.save({"epoch": 3, "step": 10}, path)
    with pytest.raises(CheckpointError, match="no state dict"):
        load(path, preset="tiny")


def test_official_repo_missing_offline_says_what_to_do() -> None:
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE") as caught:
        load("lch01/StreamVGGT")
    assert "checkpoints.pth" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("source", ["ckpt/model.pt", "no/such/folder", "missing.safetensors"])
def test_missing_path_is_not_sent_to_the_hub(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weights_module, "_hub_file", pytest.fail)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load(source)


def test_folder_without_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint in folder"):
        load(tmp_path)


def test_missing_bundled_model_asks_for_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamvggt.weights as weights

    monkeypatch.setattr(weights, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    with pytest.raises(CheckpointError, match="checkpoint is needed"):
        load(None)


def test_no_source_loads_the_bundled_model_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamvggt.weights as weights

    torch.manual_seed(0)
    bundled = StreamVGGT(ModelConfig.preset("tiny"))
    bundled.save_pretrained(tmp_path / "default_model")
    monkeypatch.setattr(weights, "DEFAULT_MODEL_DIR", tmp_path / "default_model")
    loaded = load(None)
    assert loaded.config == bundled.config
    for name, tensor in bundled.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
