"""The command pattern and the shared frame loop: one module per command, options checked once before anything
slow, view and reconstruct through the same loop, one message style, frame-level progress, a quiet closed pipe,
and the checkpoint export as a visible subcommand."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import streamvggt.pipeline.reconstructor as reconstructor
import streamvggt.pipeline.run as frame_loop
import streamvggt.viewer.command as viewer_command
from streamvggt import ReconstructOptions
from streamvggt.cli import COMMANDS, build_parser, main
from streamvggt.pipeline.options import ModelOptions, OutputOptions, StreamOptions, ViewerOptions
from streamvggt.pipeline.reconstructor import reconstruct
from tests.helpers import run_cli
from tests.reconstruct_helpers import WIDTH, tiny_checkpoint, write_images


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("checkpoint"))


# ------------------------------------------------------------------------------------------- the command pattern


def test_every_command_is_one_module_with_add_parser_and_run():
    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(commands.choices) == [module.NAME for module in COMMANDS]
    assert set(commands.choices) == {
        "reconstruct",
        "reconstruct-many",
        "demo",
        "eval",
        "view",
        "train",
        "data",
        "export",
    }
    for module in COMMANDS:
        assert callable(module.add_parser) and callable(module.run), module.__name__
        assert module.__name__.startswith("streamvggt.cli.")


def test_train_data_and_export_parse_their_own_options():
    parser = build_parser()
    train = parser.parse_args(["train", "--config", "c.yaml", "a=1", "--resume"])
    assert (train.config, train.overrides, train.resume, train.prog) == ("c.yaml", ["a=1"], True, "streamvggt train")
    check = parser.parse_args(["data", "check", "--type", "spring", "root"])
    assert (check.data_command, check.root, check.prog) == ("check", "root", "streamvggt data check")
    export = parser.parse_args(["export", "run", "out", "--dtype", "fp16"])
    assert (export.source, export.folder, export.dtype, export.prog) == ("run", "out", "fp16", "streamvggt export")


def test_the_old_module_entry_points_are_gone():
    import importlib.util

    for name in ("streamvggt.train.__main__", "streamvggt.train.data.__main__"):
        assert importlib.util.find_spec(name) is None
    from streamvggt.train import export

    assert not hasattr(export, "main")


# ------------------------------------------------------------------------------------------------------ export


def test_export_subcommand_writes_a_model_folder_that_loads(tmp_path, checkpoint):
    from streamvggt import load_model

    code, _, stderr = run_cli("export", checkpoint, tmp_path / "exported", "--dtype", "fp16")
    assert code == 0, stderr
    assert sorted(p.name for p in (tmp_path / "exported").iterdir()) == ["config.json", "model.safetensors"]
    original, exported = load_model(checkpoint, device="cpu"), load_model(tmp_path / "exported", device="cpu")
    for (name, a), (_, b) in zip(original.state_dict().items(), exported.state_dict().items(), strict=True):
        assert (a.float() - b.float()).abs().max() <= 1e-2 * max(1.0, a.abs().max().item()), name


def test_export_of_a_run_without_checkpoints_is_one_line_in_the_command_style(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    code, _, stderr = run_cli("export", tmp_path / "run", tmp_path / "out")
    assert code == 2
    assert stderr == f"streamvggt export: error: {tmp_path / 'run'} has no complete checkpoint\n"


def test_train_and_data_errors_take_the_command_prefix(tmp_path):
    code, _, stderr = run_cli("train", "--config", tmp_path / "missing.yaml")
    assert code == 2 and stderr.startswith("streamvggt train: error: ") and stderr.count("\n") == 1
    (tmp_path / "file").write_text("x")
    code, _, stderr = run_cli("data", "import", "--from", "reconstruct", tmp_path / "nowhere", "-o", tmp_path / "s")
    assert code == 1 and stderr.startswith("streamvggt data import: error: ") and stderr.count("\n") == 1


# ------------------------------------------------------------------------------------------------------ options


def test_flat_keywords_land_in_their_sections():
    options = ReconstructOptions.from_keywords(
        cache="window:4", size=224, precision="fp32", voxel_size=0.1, port=0, progress=True
    )
    assert options.stream == StreamOptions(cache="window:4", size=224)
    assert options.model == ModelOptions(precision="fp32")
    assert options.output == OutputOptions(voxel_size=0.1)
    assert options.viewer == ViewerOptions(port=0)
    assert options.progress is True
    assert options.replace(size=112, wait=False).stream.size == 112
    with pytest.raises(TypeError, match="reconstruct\\(\\) got an unexpected keyword argument 'sise'"):
        ReconstructOptions.from_keywords(sise=224)


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"cache": "lru:3"}, "cache"),
        ({"size": 100}, "multiple of 14"),
        ({"stride": 0}, "--stride must be at least 1"),
        ({"conf_threshold": 100.0}, "percentile in [0, 100)"),
        ({"points": "mesh"}, "unknown point source 'mesh'"),
        ({"voxel_size": 0.0}, "voxel size must be positive"),
        ({"precision": "fp8"}, "unknown precision 'fp8'"),
        ({"device": "gpu"}, "unknown device 'gpu'"),
        ({"compile": "graph"}, "unknown compile mode 'graph'"),
    ],
)
def test_a_bad_option_fails_the_one_check_with_one_line(keywords, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        ReconstructOptions.from_keywords(**keywords).check()
    assert "\n" not in str(error.value)


def test_the_viewer_options_are_checked_with_the_others(tmp_path):
    with pytest.raises(ValueError, match="port must be in 0-65535, got 70000"):
        ReconstructOptions.from_keywords(port=70000).check(viewer=True)
    with pytest.raises(ValueError, match="no such folder"):
        ReconstructOptions.from_keywords(export_dir=tmp_path / "absent").check(viewer=True)


def test_options_and_keywords_together_are_refused(tmp_path):
    with pytest.raises(TypeError, match="options or keyword options, not both"):
        reconstruct(tmp_path, tmp_path / "out", options=ReconstructOptions(), size=70)


@pytest.fixture
def nothing_slow(monkeypatch):
    """Loading a model or opening a source fails the test."""
    monkeypatch.setattr(reconstructor, "load_model", lambda *a, **k: pytest.fail("loaded a model"))
    monkeypatch.setattr("streamvggt.collection.runner.load_model", lambda *a, **k: pytest.fail("loaded a model"))
    monkeypatch.setattr("streamvggt.weights.load_model", lambda *a, **k: pytest.fail("loaded a model"))
    monkeypatch.setattr(frame_loop, "open_source", lambda *a, **k: pytest.fail("opened the source"))
    monkeypatch.setattr("streamvggt.collection.runner.read_manifest", lambda *a, **k: pytest.fail("read inputs"))


@pytest.mark.parametrize(
    "argv",
    [
        ["reconstruct", "frames", "-o", "out"],
        ["view", "frames", "--port", "0"],
        ["reconstruct-many", "manifest.txt", "-o", "out"],
        ["eval", "synthetic", "-o", "out", "--no-plots"],
    ],
    ids=["reconstruct", "view", "reconstruct-many", "eval"],
)
def test_a_bad_option_fails_before_a_model_loads_or_a_source_opens(tmp_path, monkeypatch, nothing_slow, argv):
    monkeypatch.chdir(tmp_path)
    if argv[0] == "view":
        pytest.importorskip("viser")
    code, stdout, stderr = run_cli(*argv, "--cache", "lru:3")
    assert code == 1 and stdout == ""
    assert stderr.startswith(f"streamvggt {argv[0]}: error: ") and "cache" in stderr and stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------- the frame loop


def test_reconstruct_view_and_the_collection_share_one_frame_loop():
    assert reconstructor.run_frames is frame_loop.run_frames
    assert viewer_command.run_frames is frame_loop.run_frames
    assert reconstructor.open_input is viewer_command.open_input is frame_loop.open_input


class Recorder:
    def __init__(self) -> None:
        self.frames: list[tuple[int, str]] = []
        self.finished: list[tuple[int, bool]] = []

    def on_frame(self, result, frame) -> None:
        self.frames.append((result.index, frame.name))

    def on_finish(self, frames: int, interrupted: bool) -> None:
        self.finished.append((frames, interrupted))


def test_a_consumer_follows_every_frame_and_the_end(tmp_path, checkpoint):
    write_images(tmp_path / "frames", ["0.png", "1.png", "2.png"])
    recorder = Recorder()
    summary = reconstruct(tmp_path / "frames", tmp_path / "out", checkpoint, size=WIDTH, consumers=[recorder])
    assert summary.frames == 3
    assert recorder.frames == [(0, "0.png"), (1, "1.png"), (2, "2.png")]
    assert recorder.finished == [(3, False)]


def test_view_streams_through_the_loop_without_a_writer(tmp_path, checkpoint, monkeypatch):
    pytest.importorskip("viser")
    from streamvggt.viewer import view

    seen = []
    run_frames = frame_loop.run_frames

    def recording(stepper, frames, consumers, **options):
        seen.append([type(c).__name__ for c in consumers])
        return run_frames(stepper, frames, consumers, **options)

    monkeypatch.setattr(viewer_command, "run_frames", recording)
    write_images(tmp_path / "frames", ["0.png", "1.png"])
    summary = view(tmp_path / "frames", checkpoint, port=0, size=WIDTH, wait=False, export_dir=tmp_path)
    assert (summary.frames, summary.reopened) == (2, False)
    assert seen == [["FrameCallback"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]  # the viewer writes nothing


# --------------------------------------------------------------------------------------- progress and the pipe


def test_reconstruct_many_progress_counts_frames_not_inputs(tmp_path, checkpoint):
    write_images(tmp_path / "a", ["0.png", "1.png"])
    write_images(tmp_path / "b", ["0.png", "1.png", "2.png"])
    (tmp_path / "m.txt").write_text("a\nb\n")
    args = ["reconstruct-many", tmp_path / "m.txt", "-o", tmp_path / "out", "--checkpoint", checkpoint]
    code, _, stderr = run_cli(*args, "--device", "cpu", "--size", WIDTH)
    assert code == 0, stderr
    final = stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert re.match(r"^5frame \[.*2/2 inputs\]$", final), final


def test_a_closed_pipe_ends_the_command_quietly(tmp_path, checkpoint):
    """``streamvggt reconstruct ... | head -1``: the reader leaves before the summary is printed."""
    write_images(tmp_path / "frames", ["0.png", "1.png"])
    argv = ["reconstruct", str(tmp_path / "frames"), "-o", str(tmp_path / "out"), "--checkpoint", str(checkpoint)]
    argv += ["--size", str(WIDTH), "--no-progress"]
    process = subprocess.Popen(
        [sys.executable, "-m", "streamvggt", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process.stdout.close()  # nobody reads: the first write to stdout meets a closed pipe
    stderr = process.stderr.read()
    process.wait(timeout=300)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert stderr == ""
    assert process.returncode == 141
    assert json.loads((tmp_path / "out" / "cameras.json").read_text())["frames"]


def test_an_unknown_argument_is_reported_by_its_command(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["reconstruct", "frames", "-o", "out", "--bogus", "1"])
    assert caught.value.code == 2
    assert (
        capsys.readouterr().err.splitlines()[-1] == "streamvggt reconstruct: error: unrecognized arguments: --bogus 1"
    )
