"""The training configuration: dataclasses read from YAML, with ``section.key=value`` overrides.

Relative paths in a config file (weights, dataset roots, the output folder) are relative to the file's folder, so a
config means the same from any working directory; overrides on the command line are relative to the shell's.

Values are data only: YAML is read with ``safe_load`` and checked field by field against the dataclasses
(unknown keys and wrong types are errors that name the key). Dataset mixes are lists of entries, not expressions.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamvggt.config import ModelConfig
from streamvggt.extras import require

yaml = require("yaml", "train")


@dataclass
class ModelSection:
    """The student (and, for distillation, the teacher)."""

    preset: str = "tiny"  # architecture: a ModelConfig preset
    overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields changed from the preset
    causal: bool = True  # the student's attention: True trains StreamVGGT, False VGGT
    init: str | None = None  # weights the student starts from (file, folder or repo id); None: random
    teacher: str | None = None  # distillation teacher weights; it runs with full attention (VGGT)
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes kept fixed
    activation_checkpointing: bool = False  # recompute trunk blocks in the backward pass (less memory)

    def architecture(self, causal: bool | None = None) -> ModelConfig:
        """The preset with ``overrides`` applied, and ``causal`` (the student's unless given)."""
        base = ModelConfig.preset(self.preset).to_dict()
        for key, value in self.overrides.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        base["causal"] = self.causal if causal is None else causal
        return ModelConfig.from_dict(base)


@dataclass
class DatasetEntry:
    """One dataset of the mix and how many clips it contributes per epoch."""

    type: str  # reader: a key of streamvggt.train.data.mix.READERS (docs/training.md lists the datasets)
    samples: int  # clips per epoch (the reference's "N @ Dataset")
    root: str | None = None
    split: str = "train"
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the reader
    # The data check's lowest accepted reprojection consistency for this dataset (None: the check's 0.5). Lower it
    # to accept weaker labels knowingly (a model's pseudo-labels, sparse COLMAP depth); the check's report records it.
    min_consistency: float | None = None


@dataclass
class DataSection:
    num_views: int = 10  # frames per clip
    resolutions: list[tuple[int, int]] = field(default_factory=lambda: [(518, 392)])  # (W, H), multiples of 14
    resolution_weights: list[float] | None = None  # relative odds of each resolution per batch (None: equal)
    batch_size: int = 1  # clips per process and micro-batch
    num_workers: int = 0  # data loader processes per training process
    aug_crop: int = 16  # views are scaled to cover (W + k, H + k), k uniform in [0, aug_crop), then centre-cropped
    color_jitter: bool = True  # one random colour change per clip
    datasets: list[DatasetEntry] = field(default_factory=list)


@dataclass
class LossSection:
    kind: str = "distill"  # "distill" (match a teacher) or "gt" (ground-truth depth and poses)
    camera: float = 20.0  # weight of each term in the total
    depth: float = 20.0
    points: float = 10.0
    track: float = 0.5
    camera_components: tuple[float, float, float] = (1.0, 1.0, 0.5)  # translation, rotation, field of view
    huber_delta: float = 0.1
    iteration_gamma: float | None = None  # camera iterations weighted gamma^(last - i); None: only the last
    conf_alpha: float = 0.1  # weight of the -log(confidence) regulariser of depth and point terms
    track_conf_alpha: float = 0.2  # the same for track confidence
    query_points: int = 64  # tracked points per clip (0: no track term)
    track_visibility_tolerance: float = 0.05  # gt tracks: relative depth mismatch that marks a point occluded
    normalization: str = "clip"  # gt: scale set by all views ("clip", VGGT) or by view 0 ("first_view", causal)


@dataclass
class OptimSection:
    lr: float = 1e-5
    min_lr: float = 1e-7
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05  # not applied to biases and 1-D parameters (norms, layer scales)
    warmup_epochs: float = 0.5  # linear warm-up from 0, then half-cosine to min_lr at the end
    epochs: float = 10.0
    grad_clip: float | None = 1.0  # max global gradient norm
    accumulation_steps: int = 1  # micro-batches per optimizer step


@dataclass
class RunSection:
    output_dir: str = "outputs/train"  # in a config file: relative to its folder; the default: to the working directory
    seed: int = 0
    mixed_precision: str = "auto"  # auto (bf16 on GPUs that support it, else fp16 on GPU, none on CPU), no, bf16, fp16
    cpu: bool = False  # train on the CPU even if a GPU is present
    threads: int | None = None  # CPU threads per process (None: PyTorch's default, all cores)
    max_steps: int | None = None  # stop after this step (the schedule still spans optim.epochs); None: at the end
    save_every: int = 1000  # optimizer steps between checkpoints (one is also written at the end)
    keep_checkpoints: int = 3  # most recent checkpoints kept
    log_every: int = 10  # steps between TensorBoard writes
    progress: bool = True  # progress bar on the main process
    plot: bool = True  # write loss_curve.png at the end


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)

    def validate(self) -> None:
        """Cross-field checks; raises ValueError naming the key."""
        data, loss, optim = self.data, self.loss, self.optim
        if loss.kind not in ("distill", "gt"):
            raise ValueError(f"loss.kind must be 'distill' or 'gt', got '{loss.kind}'")
        if loss.kind == "distill" and self.model.teacher is None:
            raise ValueError("loss.kind 'distill' needs model.teacher (the weights of the full-attention teacher)")
        if loss.normalization not in ("clip", "first_view"):
            raise ValueError(f"loss.normalization must be 'clip' or 'first_view', got '{loss.normalization}'")
        if not data.resolutions:
            raise ValueError("data.resolutions is empty")
        if data.resolution_weights is not None and len(data.resolution_weights) != len(data.resolutions):
            raise ValueError("data.resolution_weights needs one weight per resolution")
        if data.num_views < 1 or data.batch_size < 1 or optim.accumulation_steps < 1:
            raise ValueError("data.num_views, data.batch_size and optim.accumulation_steps must be positive")
        for number, entry in enumerate(data.datasets):
            if entry.min_consistency is not None and not 0.0 <= entry.min_consistency <= 1.0:
                raise ValueError(
                    f"data.datasets.{number}.min_consistency must be in [0, 1], got {entry.min_consistency}"
                )
        if self.run.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ValueError(f"run.mixed_precision must be auto, no, bf16 or fp16, got '{self.run.mixed_precision}'")
        if self.run.max_steps is not None and self.run.max_steps < 1:
            raise ValueError("run.max_steps must be positive")
        if self.run.threads is not None and self.run.threads < 1:
            raise ValueError("run.threads must be positive")
        if self.run.save_every < 1 or self.run.log_every < 1 or self.run.keep_checkpoints < 1:
            raise ValueError("run.save_every, run.log_every and run.keep_checkpoints must be positive")
        if optim.epochs <= 0 or not 0 <= optim.warmup_epochs < optim.epochs:
            raise ValueError("need optim.epochs > 0 and 0 <= optim.warmup_epochs < optim.epochs")
        self.model.architecture()  # the preset and overrides must make a valid model

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config and apply ``section.key=value`` overrides (values in YAML syntax)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {_one_line(error)}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the config must be a mapping of sections")
    resolve_relative_paths(data, Path(path).resolve().parent)
    for item in overrides:
        apply_override(data, item)
    return from_dict(data)


# Hugging Face repo ids look like relative paths (owner/name): one with no such path beside the config stays an id.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".json")


def resolve_relative_paths(data: dict[str, Any], base: Path) -> None:
    """Make the relative paths of a config file's ``data`` relative to ``base`` (the file's folder), in place.

    A config then means the same from any working directory, as a compose file or a CMake list does:
    ``model.init``, ``model.teacher``, ``data.datasets[].root`` and ``run.output_dir``. Overrides given on the
    command line are not changed: they are typed in the shell, relative to its directory. ``~`` is expanded.
    """

    def resolved(value: Any, weights: bool = False) -> Any:
        if not isinstance(value, str) or not value:
            return value
        path = Path(value).expanduser()
        if path.is_absolute():
            return str(path)
        candidate = Path(os.path.normpath(base / path))
        if weights and not candidate.exists() and _REPO_ID.fullmatch(value) and not value.endswith(_WEIGHT_SUFFIXES):
            return value  # a Hugging Face repo id
        return str(candidate)

    model, section, run = data.get("model"), data.get("data"), data.get("run")
    if isinstance(model, dict):
        for key in ("init", "teacher"):
            if key in model:
                model[key] = resolved(model[key], weights=True)
    if isinstance(section, dict) and isinstance(section.get("datasets"), list):
        for entry in section["datasets"]:
            if isinstance(entry, dict) and "root" in entry:
                entry["root"] = resolved(entry["root"])
    if isinstance(run, dict) and "output_dir" in run:
        run["output_dir"] = resolved(run["output_dir"])


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """A checked config from plain data (as read from YAML)."""
    config = _build(TrainConfig, data, "")
    config.validate()
    return config


def save_config(config: TrainConfig, path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in nested ``data``; the value is parsed as YAML (``1e-4``, ``[70, 56]``, ``null``).

    A number picks a list entry (``data.datasets.0.root=/data/own``, or ``data.datasets[0].root``), as in
    OmegaConf's dot lists; it must name an existing entry.
    """
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override '{item}' is not of the form section.key=value")
    parts = re.sub(r"\[(\d+)\]", r".\1", key.strip()).split(".")
    if not all(parts):
        raise ValueError(f"override '{item}': empty key part in '{key.strip()}'")
    *parents, leaf = parts
    node: Any = data
    where = []
    for part in parents:
        node = _child(node, part, item, ".".join(where), create=True)
        where.append(part)
        if not isinstance(node, (dict, list)):
            raise ValueError(f"override '{item}': '{'.'.join(where)}' is not a section or a list")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"override '{item}': the value is not valid YAML: {_one_line(error)}") from None
    if isinstance(node, list):
        node[_list_index(node, leaf, item, ".".join(where))] = value
    else:
        node[leaf] = value


def _child(node: dict | list, part: str, item: str, where: str, create: bool) -> Any:
    """``node[part]``: a list entry by number, or a section (created when missing and ``create``)."""
    if isinstance(node, list):
        return node[_list_index(node, part, item, where)]
    if create:
        return node.setdefault(part, {})
    return node[part]


def _list_index(node: list, part: str, item: str, where: str) -> int:
    if not part.isdigit():
        raise ValueError(f"override '{item}': '{where}' is a list: pick an entry by number ({where}.0...)")
    if int(part) >= len(node):
        raise ValueError(f"override '{item}': '{where}' has {len(node)} entries (0 to {len(node) - 1})")
    return int(part)


def _one_line(error: Exception) -> str:
    """A YAML error as one line: the problem and where (PyYAML's message spans several lines with excerpts)."""
    problem, mark = getattr(error, "problem", None), getattr(error, "problem_mark", None)
    if problem is None or mark is None:
        return " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


# ---------------------------------------------------------------------------------------------- typed building


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where or 'config'}: unknown keys {unknown}; known: {sorted(names)}")
    values = {name: _coerce(value, hints[name], f"{where}.{name}" if where else name) for name, value in data.items()}
    return cls(**values)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against (and converted to) the type ``hint``; ValueError naming ``where`` otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {args}")
    if hint is Any:
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"{where}: expected a list of {len(args)}, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        # YAML 1.1 reads "1e-5" (no dot) as a string: accept numeric strings for float fields.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported config type {hint}")


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively: what YAML and JSON write."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
