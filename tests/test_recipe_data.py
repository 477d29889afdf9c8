"""The published recipe (configs/distill_reference.yaml) on tiny datasets in all 15 on-disk layouts, written at
the recipe's own relative paths: every entry reads its folder, an epoch draws each by its count, the splits are
the reference's, and a two-process distillation run (gloo) trains on clips of every dataset with finite losses.

The tree mirrors the recipe's working directory: ``top/work`` is the current directory, the data are at
``top/data/train/...`` (the recipe's ``../data/train/...``) and a tiny VGGT is the recipe's ``../ckpt/model.pt``
(student init and teacher). Only sizes are overridden (model, views, resolutions, threads); every dataset entry
keeps its type, root and split, and contributes one clip per epoch instead of thousands.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from streamvggt import StreamVGGT
from streamvggt.train.config import ModelSection, load_config
from streamvggt.train.data.mix import DatasetMix
from streamvggt.train.data.sampling import ItemKey
from streamvggt.train.loop import build_mix
from tests.layout_helpers import render_sequence
from tests.test_data_arkitscenes_highres import write_split as write_arkitscenes_highres
from tests.test_data_blendedmvs import write_blendedmvs
from tests.test_data_hypersim import write_hypersim
from tests.test_data_layouts import write_arkitscenes, write_co3d, write_scannet
from tests.test_data_megadepth import write_megadepth
from tests.test_data_mvs_synth import write_mvs_synth
from tests.test_data_omniobject3d import write_omniobject3d
from tests.test_data_pointodyssey import write_pointodyssey
from tests.test_data_scannetpp import write_scannetpp
from tests.test_data_spring import write_spring
from tests.test_data_vkitti2 import write_vkitti2
from tests.test_data_waymo import write_waymo

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "distill_reference.yaml"

# The reference's mix (wzzheng/StreamVGGT config/train.yaml, "N @ Dataset"): clips per epoch of each dataset.
REFERENCE_SAMPLES = {
    "co3d": 4500,
    "wildrgbd": 4500,
    "arkitscenes": 4500,
    "arkitscenes_highres": 2250,
    "scannetpp": 2250,
    "scannet": 4500,
    "hypersim": 1200,
    "blendedmvs": 2250,
    "megadepth": 2250,
    "waymo": 2250,
    "vkitti2": 2250,
    "omniobject3d": 1800,
    "spring": 1800,
    "mvs_synth": 450,
    "pointodyssey": 2250,
}

# A low-res ARKitScenes scene that the high-res folder also holds: the recipe's pair of roots must make the
# low-res reader leave it out (it looks for "{root}_highres").
SHARED_ARKIT_SCENE = "41580001"

# Each dataset's writer (from its reader's tests) with the number of rendered sequences it takes.
WRITERS = {
    "co3d": lambda root, seqs: write_co3d(root, seqs[:2]),
    "wildrgbd": lambda root, seqs: write_co3d(root, seqs[:2], wild=True),
    "arkitscenes": lambda root, seqs: write_arkitscenes(root, seqs[:2]),
    "arkitscenes_highres": lambda root, seqs: write_arkitscenes_highres(
        root, "Training", seqs[:2], scenes=(SHARED_ARKIT_SCENE, "41069025")
    ),
    "scannetpp": lambda root, seqs: write_scannetpp(root, seqs[:2]),
    "scannet": lambda root, seqs: write_scannet(root, seqs[:2]),
    "hypersim": lambda root, seqs: write_hypersim(root, seqs[:2]),
    "blendedmvs": lambda root, seqs: write_blendedmvs(root, seqs[:3]),
    "megadepth": lambda root, seqs: write_megadepth(root, seqs[:3]),
    "waymo": lambda root, seqs: write_waymo(root, seqs[:3]),
    "vkitti2": lambda root, seqs: write_vkitti2(root, seqs[:2], scenes=("Scene01", "Scene02"), variations=("clone",)),
    "omniobject3d": lambda root, seqs: write_omniobject3d(root, seqs[:2]),
    "spring": lambda root, seqs: write_spring(root, seqs[:2]),
    "mvs_synth": lambda root, seqs: write_mvs_synth(root, seqs[:2]),
    "pointodyssey": lambda root, seqs: write_pointodyssey(root, seqs[:2]),
}

# Four trunk layers of the tiny preset, 3-view clips at two small shapes, one thread, no loader workers.
OVERRIDES = {"depth": 4, "dpt_head": {"intermediate_layer_idx": [0, 1, 2, 3]}}
SMALL = [
    "model.preset=tiny",
    f"model.overrides={json.dumps(OVERRIDES)}",
    "data.num_views=3",
    "data.resolutions=[[28, 28], [28, 42]]",
    "data.resolution_weights=[2, 1]",
    "data.num_workers=0",
    "loss.query_points=8",
    "run.threads=1",
    "run.progress=false",
    "run.plot=false",
]

# Records which dataset each clip the training run loads comes from, one file per process, then trains.
RECORDING_TRAINER = """\
import os, sys
from streamvggt.cli import main
from streamvggt.train.data.mix import DatasetMix

load = DatasetMix.__getitem__

def recording(mix, key):
    clip = load(mix, key)
    with open(f"clips.rank{os.environ.get('RANK', '0')}.txt", "a", encoding="utf-8") as log:
        log.write(clip["dataset"] + "\\n")
    return clip

DatasetMix.__getitem__ = recording
sys.exit(main(["train", *sys.argv[1:]]))
"""


def recipe_entries() -> list[dict]:
    return yaml.safe_load(RECIPE.read_text(encoding="utf-8"))["data"]["datasets"]


def clips_per_epoch(kind: str) -> int:
    """One clip of each dataset per epoch; co3d two, so that the 16 clips split evenly over two processes."""
    return 2 if kind == "co3d" else 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working directory of a tree holding every dataset of the recipe at its root, a tiny VGGT at
    ``../ckpt/model.pt`` and ``recipe.yaml``: the recipe with the small per-epoch counts."""
    top = tmp_path_factory.mktemp("recipe")
    work = top / "work"
    work.mkdir()
    sequences = [render_sequence(seed) for seed in (61, 62, 63)]
    for entry in recipe_entries():
        WRITERS[entry["type"]](work / entry["root"], sequences)
    torch.manual_seed(3)
    teacher = StreamVGGT(ModelSection(preset="tiny", overrides=OVERRIDES).architecture(causal=False))
    (top / "ckpt").mkdir()
    torch.save(teacher.state_dict(), top / "ckpt" / "model.pt")  # a raw state dict, as VGGT-1B's model.pt
    recipe = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
    for entry in recipe["data"]["datasets"]:
        entry["samples"] = clips_per_epoch(entry["type"])
    (work / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return work


@pytest.fixture
def mix(work: Path, monkeypatch: pytest.MonkeyPatch) -> DatasetMix:
    """The small recipe's mix, read from ``work`` (which stays the current directory: its paths are relative)."""
    monkeypatch.chdir(work)
    return build_mix(load_config(work / "recipe.yaml", SMALL))


def test_recipe_mix_is_the_reference_mix_of_39000_clips() -> None:
    config = load_config(RECIPE)
    assert {e.type: e.samples for e in config.data.datasets} == REFERENCE_SAMPLES
    assert len(config.data.datasets) == 15 and sum(e.samples for e in config.data.datasets) == 39_000
    assert set(WRITERS) == set(REFERENCE_SAMPLES)  # this test tree covers every entry


def test_an_epoch_of_the_recipe_draws_every_dataset_by_its_count(mix: DatasetMix) -> None:
    entries = recipe_entries()
    assert [reader.name for reader in mix.datasets] == [e["type"] for e in entries]
    drawn: Counter[str] = Counter()
    for index in range(len(mix)):
        clip = mix[ItemKey(epoch=0, index=index, resolution=index % 2)]
        width, height = mix.resolutions[index % 2]
        assert clip["images"].shape == (3, 3, height, width), clip["dataset"]
        assert clip["valid_mask"].any(dim=(1, 2)).all(), clip["dataset"]  # every view has depth
        for name in ("images", "depth", "intrinsics", "extrinsics"):
            assert torch.isfinite(clip[name]).all(), (clip["dataset"], name)
        drawn[clip["dataset"]] += 1
    assert drawn == {e["type"]: clips_per_epoch(e["type"]) for e in entries}


def test_recipe_reads_every_virtual_kitti_2_scene(mix: DatasetMix) -> None:
    """The reference reads Virtual KITTI 2 with split=None (all scenes); the reader's "train" would hold out the
    last one."""
    (vkitti2,) = [reader for reader in mix.datasets if reader.name == "vkitti2"]
    assert sorted({name.split("/")[0] for name, _ in vkitti2.sequences}) == ["Scene01", "Scene02"]


def test_recipe_arkitscenes_leaves_out_the_scenes_of_its_highres_folder(mix: DatasetMix) -> None:
    (arkit,) = [reader for reader in mix.datasets if reader.name == "arkitscenes"]
    assert sorted({scene.name for scene, *_ in arkit.frames}) == ["41580000"]  # not the shared 41580001


def test_two_process_distillation_run_trains_on_every_dataset_with_finite_losses(work: Path) -> None:
    (work / "recorder.py").write_text(RECORDING_TRAINER, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        "recorder.py", "--config", "recipe.yaml", *SMALL, "run.max_steps=8",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    output = work / "../checkpoints/StreamVGGT"  # the recipe's run.output_dir
    with open(output / "metrics.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["step"] for r in records] == list(range(1, 9))  # 16 clips / 2 processes: one epoch
    for record in records:
        losses = {k: v for k, v in record.items() if k == "loss" or k.startswith("loss/")}
        assert set(losses) == {"loss", "loss/camera", "loss/depth", "loss/points", "loss/track"}
        assert all(math.isfinite(v) for v in losses.values()), record
        assert losses["loss"] == pytest.approx(sum(v for k, v in losses.items() if k != "loss"), rel=1e-5)
        assert 0 < record["grad_norm"] < math.inf  # the student learned from the batch
    per_rank = [(work / f"clips.rank{r}.txt").read_text(encoding="utf-8").split() for r in (0, 1)]
    assert [len(names) for names in per_rank] == [8, 8]
    assert Counter(per_rank[0] + per_rank[1]) == {t: clips_per_epoch(t) for t in REFERENCE_SAMPLES}
    assert (output / "model" / "model.safetensors").is_file()
