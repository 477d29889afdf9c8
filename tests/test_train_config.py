"""Training configs (YAML into dataclasses, overrides, the shipped recipes) and the optimiser set-up."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamvggt import ModelConfig, StreamVGGT
from streamvggt.train.config import TrainConfig, from_dict, load_config
from streamvggt.train.optim import (
    build_optimizer,
    enable_activation_checkpointing,
    freeze,
    lr_factor,
    parameter_groups,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def minimal(**sections) -> dict:
    data = {
        "loss": {"kind": "gt"},
        "data": {"datasets": [{"type": "synthetic", "samples": 8}]},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def test_reference_recipe_matches_the_published_numbers() -> None:
    config = load_config(CONFIGS / "distill_reference.yaml")
    model, data, loss, optim = config.model, config.data, config.loss, config.optim
    assert model.preset == "streamvggt-1b" and model.causal
    # The reference's paths, relative to the config's folder: ckpt/ beside configs/, from any working directory.
    assert model.init == model.teacher == str(CONFIGS.parent / "ckpt" / "model.pt")
    assert model.freeze == ["aggregator.patch_embed", "aggregator.camera_token", "aggregator.register_token"]
    assert data.num_views == 10 and data.batch_size == 1 and data.aug_crop == 16
    assert data.resolutions == [
        (518, 392), (518, 336), (518, 294), (518, 266), (518, 210),
        (518, 154), (392, 518), (336, 518), (294, 518), (266, 518),
    ]  # fmt: skip
    weights = torch.tensor(data.resolution_weights)
    assert torch.allclose(weights / weights.sum(), torch.tensor([2 / 15] * 5 + [1 / 15] * 5))
    assert len(data.datasets) == 15 and sum(d.samples for d in data.datasets) == 39_000
    assert sorted(d.samples for d in data.datasets) == sorted([4500] * 4 + [2250] * 7 + [1800] * 2 + [1200, 450])
    assert (loss.kind, loss.camera, loss.depth, loss.points, loss.track) == ("distill", 20, 20, 10, 0.5)
    assert (loss.huber_delta, loss.camera_components, loss.query_points) == (0.1, (1.0, 1.0, 0.5), 64)
    assert (optim.lr, optim.min_lr, optim.betas, optim.weight_decay) == (1e-5, 1e-7, (0.9, 0.95), 0.05)
    assert (optim.warmup_epochs, optim.epochs, optim.grad_clip) == (0.5, 10, 1.0)
    assert config.model.architecture() == ModelConfig.preset("streamvggt-1b")


def test_shipped_synthetic_config_loads() -> None:
    config = load_config(CONFIGS / "synthetic_tiny.yaml")
    assert config.loss.kind == "gt" and config.data.datasets[0].type == "synthetic"


def test_overrides_are_yaml_values_on_dotted_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("loss: {kind: gt}\ndata: {datasets: [{type: synthetic, samples: 4}]}\n", encoding="utf-8")
    config = load_config(path, ["optim.lr=1e-4", "data.resolutions=[[70, 56]]", "model.init=null", "run.cpu=true"])
    assert config.optim.lr == 1e-4  # YAML 1.1 reads 1e-4 as a string: floats accept numeric strings
    assert config.data.resolutions == [(70, 56)] and config.model.init is None and config.run.cpu is True
    with pytest.raises(ValueError, match=r"section\.key=value"):
        load_config(path, ["optim.lr"])


def test_unreadable_config_files_are_one_line_errors_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("run: [unclosed\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.yaml: not valid YAML: .* at line 2, column 1$"):
        load_config(broken)
    with pytest.raises(FileNotFoundError, match=r"^config file not found: .*missing\.yaml$"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path)  # a folder


def test_override_with_invalid_yaml_names_the_override() -> None:
    with pytest.raises(ValueError, match=r"^override 'optim\.lr=\[1': the value is not valid YAML: .* column 3$"):
        load_config(CONFIGS / "synthetic_tiny.yaml", ["optim.lr=[1"])


@pytest.mark.parametrize("under", ["a_file", "a_file/run"])
def test_train_refuses_an_output_dir_under_a_file_before_loading_anything(
    tmp_path: Path, under: str, monkeypatch, capsys
) -> None:
    import streamvggt.train.loop
    from streamvggt.cli import main

    calls = []
    monkeypatch.setattr(streamvggt.train.loop, "train", lambda config, resume: calls.append(config) or tmp_path)
    (tmp_path / "a_file").write_text("", encoding="utf-8")
    status = main(["train", "--config", str(CONFIGS / "synthetic_tiny.yaml"), f"run.output_dir={tmp_path / under}"])
    assert status == 2 and calls == []
    message = f"run.output_dir {tmp_path / under} cannot be created: {tmp_path / 'a_file'} is not a folder"
    assert capsys.readouterr().err == f"streamvggt train: error: {message}\n"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optim": {"learning_rate": 1.0}}, r"optim: unknown keys \['learning_rate'\]"),
        ({"optim": {"epochs": "ten"}}, "optim.epochs: expected a number"),
        ({"data": {"num_views": 2.5}}, "data.num_views: expected an integer"),
        ({"run": {"cpu": "yes"}}, "run.cpu: expected true or false"),
        ({"loss": {"kind": "distill"}}, "needs model.teacher"),
        ({"loss": {"kind": "mse"}}, "loss.kind"),
        ({"data": {"resolution_weights": [1.0, 2.0]}}, "one weight per resolution"),
        ({"model": {"overrides": {"depth": 2}}}, "intermediate_layer_idx"),
    ],
)
def test_bad_configs_are_errors_that_name_the_key(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_dict(minimal(**change))


def test_model_overrides_merge_into_the_preset() -> None:
    config = from_dict(minimal(model={"overrides": {"depth": 2, "dpt_head": {"intermediate_layer_idx": [0, 1, 1, 1]}}}))
    architecture = config.model.architecture()
    assert architecture.depth == 2 and architecture.dpt_head.features == ModelConfig.preset("tiny").dpt_head.features
    assert config.model.architecture(causal=False).causal is False


def test_config_round_trips_through_a_dict() -> None:
    config = from_dict(minimal(optim={"betas": [0.8, 0.9]}))
    assert from_dict(config.to_dict()) == config
    assert isinstance(TrainConfig().to_dict()["optim"]["betas"], list)


# ---------------------------------------------------------------------------------------------------- optimiser


def test_schedule_warms_up_linearly_then_follows_a_half_cosine() -> None:
    factors = [lr_factor(s, warmup_steps=4, total_steps=12, min_ratio=0.01) for s in range(13)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[8] == pytest.approx(0.01 + 0.99 * 0.5)  # half-way down the cosine
    assert factors[12] == pytest.approx(0.01)
    assert lr_factor(0, warmup_steps=0, total_steps=10, min_ratio=0.0) == 1.0


@pytest.fixture
def tiny() -> StreamVGGT:
    torch.manual_seed(0)
    return StreamVGGT(ModelConfig.preset("tiny"))


def test_no_weight_decay_on_biases_and_one_dimensional_parameters(tiny: StreamVGGT) -> None:
    decay, no_decay = parameter_groups(tiny, 0.05)
    names = {id(p): n for n, p in tiny.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 and not names[id(p)].endswith(".bias") for p in decay["params"])
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert "aggregator.frame_blocks.0.norm1.weight" in undecayed and "aggregator.frame_blocks.0.ls1.gamma" in undecayed


def test_freezing_by_prefix_and_typos_are_errors(tiny: StreamVGGT) -> None:
    frozen = freeze(tiny, ["aggregator.patch_embed", "aggregator.camera_token"])
    expected = sum(p.numel() for p in tiny.aggregator.patch_embed.parameters()) + tiny.aggregator.camera_token.numel()
    assert frozen == expected
    assert not tiny.aggregator.camera_token.requires_grad and tiny.aggregator.register_token.requires_grad
    decay, no_decay = parameter_groups(tiny, 0.05)
    assert all(p.requires_grad for p in decay["params"] + no_decay["params"])
    with pytest.raises(ValueError, match=r"aggregator\.patch_embd"):
        freeze(tiny, ["aggregator.patch_embd"])


def test_optimizer_is_adamw_with_the_configured_schedule(tiny: StreamVGGT) -> None:
    section = from_dict(minimal(optim={"lr": 1e-3, "min_lr": 1e-5, "epochs": 2, "warmup_epochs": 0.5})).optim
    optimizer, scheduler = build_optimizer(tiny, section, steps_per_epoch=10)  # 5 warm-up, 20 steps
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["betas"] == (0.9, 0.95)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / 5)
    for _ in range(20):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_activation_checkpointing_keeps_outputs_gradients_and_names(tiny: StreamVGGT) -> None:
    images = torch.rand(1, 2, 3, 28, 28, generator=torch.Generator().manual_seed(0))

    def gradients(model: StreamVGGT) -> dict[str, torch.Tensor]:
        model.zero_grad()
        out = model(images)
        (out["depth"].mean() + out["pose_enc"].square().mean()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    names = list(tiny.state_dict())
    plain = gradients(tiny)
    assert enable_activation_checkpointing(tiny) == 2 * tiny.config.depth
    checkpointed = gradients(tiny)
    assert list(tiny.state_dict()) == names
    assert plain.keys() == checkpointed.keys()
    assert all(torch.allclose(plain[n], checkpointed[n], atol=1e-6) for n in plain)


REPOSITORY = CONFIGS.parent


def test_the_own_capture_config_resolves_its_paths_against_its_folder_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(CONFIGS / "finetune_own_capture.yaml")
    assert config.model.init == str(REPOSITORY / "src" / "streamvggt" / "assets" / "default_model")
    assert (Path(config.model.init) / "model.safetensors").is_file()
    assert config.data.datasets[0].root == str(REPOSITORY / "data" / "own")
    assert config.run.output_dir == str(REPOSITORY / "outputs" / "finetune_own_capture")


def test_relative_paths_in_a_config_file_are_relative_to_it_and_overrides_to_the_shell(tmp_path, monkeypatch):
    import yaml

    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "weights").mkdir()
    own = {"type": "generic", "root": "../data/own", "samples": 2}
    generated = {"type": "synthetic", "samples": 2}
    data = minimal(
        model={"init": "weights", "teacher": "someone/some-model"},
        data={"datasets": [own, generated]},
        run={"output_dir": "~/runs/x"},
    )
    (folder / "c.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_config(Path("configs") / "c.yaml")
    assert config.model.init == str(folder / "weights")
    assert config.model.teacher == "someone/some-model"  # a Hugging Face repo id: no such path beside the config
    assert [d.root for d in config.data.datasets] == [str(tmp_path / "data" / "own"), None]
    assert config.run.output_dir == str(tmp_path / "home" / "runs" / "x")
    changed = load_config(Path("configs") / "c.yaml", ["data.datasets.0.root=elsewhere", "data.datasets[1].samples=5"])
    assert changed.data.datasets[0].root == "elsewhere" and changed.data.datasets[1].samples == 5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.datasets.3.root=x", r"'data.datasets' has 1 entries \(0 to 0\)"),
        ("data.datasets.first.root=x", r"'data.datasets' is a list: pick an entry by number"),
        ("data..root=x", "empty key part"),
    ],
)
def test_a_list_override_that_names_no_entry_is_one_line(tmp_path, override, message):
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(minimal()))
    with pytest.raises(ValueError, match=message):
        load_config(tmp_path / "c.yaml", [override])


def test_overrides_stand_on_both_sides_of_a_flag(tmp_path, capsys):
    import yaml

    from streamvggt.cli import main

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(minimal()))
    status = main(["train", "--config", str(tmp_path / "c.yaml"), "optim.lr=0.5", "--print-config", "data.num_views=3"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert status == 0 and printed["optim"]["lr"] == 0.5 and printed["data"]["num_views"] == 3


def test_check_only_checks_the_config_and_data_and_never_trains(tmp_path, monkeypatch, caplog):
    import json
    import logging

    import streamvggt.train.loop
    from streamvggt.cli import main

    monkeypatch.setattr(streamvggt.train.loop, "train", lambda *a, **k: pytest.fail("check-only trained"))
    small = ["data.num_views=3", "data.resolutions=[[56, 42]]", f"run.output_dir={tmp_path / 'run'}"]
    caplog.set_level(logging.INFO, logger="streamvggt.train")
    assert main(["train", "--config", str(CONFIGS / "synthetic_tiny.yaml"), "--check-only", *small]) == 0
    report = json.loads((tmp_path / "run" / "data_check" / "00_synthetic" / "report.json").read_text())
    assert report["passed"] and "nothing was trained" in caplog.text
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["data_check"]


def test_check_only_lists_every_problem_and_fails(tmp_path, monkeypatch, caplog):
    from streamvggt.cli import main
    from streamvggt.train.config import load_config
    from streamvggt.train.preflight import check_run

    overrides = [
        f"model.init={tmp_path / 'no_such_model'}",
        f"data.datasets=[{{type: spring, root: '{tmp_path / 'absent'}', samples: 2}}]",
        f"run.output_dir={tmp_path / 'run'}",
    ]
    outcome = check_run(load_config(CONFIGS / "synthetic_tiny.yaml", overrides))
    assert not outcome.passed
    assert outcome.problems[0] == f"model.init: checkpoint not found: {tmp_path / 'no_such_model'}"
    assert "cannot open the dataset" in outcome.problems[1] and len(outcome.problems) == 2
    assert main(["train", "--config", str(CONFIGS / "synthetic_tiny.yaml"), "--check-only", *overrides]) == 1
    assert "check: 2 problem(s)" in caplog.text
