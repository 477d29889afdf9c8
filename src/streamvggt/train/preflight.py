"""Checking a training run before it starts: the config, the output folder, the extras, the weights it starts
from and every dataset it reads, without loading a model or taking a step (``streamvggt train --check-only``)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from streamvggt.extras import MissingExtraError, require
from streamvggt.train.config import TrainConfig

logger = logging.getLogger("streamvggt.train")

# owner/name with no file suffix: a Hugging Face repo id (weights.py accepts the same), downloaded at the start.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".json")


@dataclass
class RunCheck:
    """What a check-only run found; ``problems`` empty means training can start."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things worth knowing that are not problems

    @property
    def passed(self) -> bool:
        return not self.problems


def check_run(config: TrainConfig, check_data: bool = True, write: bool = True) -> RunCheck:
    """Check everything a training run of ``config`` needs, short of training: the output folder can be made,
    the ``train`` extras are installed, ``model.init`` and ``model.teacher`` exist (a Hugging Face id is only
    noted: it is downloaded when the run starts), and, with ``check_data``, every dataset passes the data check
    (reports under run.output_dir/data_check when ``write``). Returns the problems, each one line."""
    result = RunCheck()
    try:
        check_output_folder(config.run.output_dir)
    except ValueError as error:
        result.problems.append(str(error))
    extras = [lambda: require("accelerate", "train"), lambda: require("tensorboard", "train")]
    if config.run.plot:
        extras.append(lambda: require("matplotlib", "train"))
    for check in extras:
        try:
            check()
        except MissingExtraError as error:
            result.problems.append(str(error))
    for key, source in (("model.init", config.model.init), ("model.teacher", config.model.teacher)):
        if source is None:
            continue
        if Path(source).expanduser().exists():
            continue
        if _REPO_ID.fullmatch(source) and not source.lower().endswith(_FILE_SUFFIXES):
            result.notes.append(f"{key} {source} is a Hugging Face repo id: downloaded when training starts")
            continue
        result.problems.append(f"{key}: checkpoint not found: {source}")
    if check_data:
        writable = write and not any("run.output_dir" in p for p in result.problems)
        result.problems.extend(check_training_data(config, write=writable))
    return result


def check_training_data(config: TrainConfig, write: bool = True) -> list[str]:
    """Check every dataset of ``config`` as it will be read (its reader options, the first resolution) and
    return the problems found, each naming its dataset. ``write``: reports under run.output_dir/data_check."""
    from streamvggt.train.data.check import check_dataset

    data, problems = config.data, []
    for number, entry in enumerate(data.datasets):
        arguments = {
            **({} if entry.root is None else {"root": entry.root}),  # generated datasets take no root
            "split": entry.split,
            "num_views": data.num_views,
            "aug_crop": data.aug_crop,
            **entry.options,
            "color_jitter": False,  # the contact sheet shows the stored colours
        }
        output = Path(config.run.output_dir) / "data_check" / f"{number:02d}_{entry.type}" if write else None
        thresholds = {} if entry.min_consistency is None else {"min_consistency": entry.min_consistency}
        report = check_dataset(
            entry.type,
            arguments,
            size=tuple(data.resolutions[0]),
            output=output,
            lower_threshold=f"data.datasets.{number}.min_consistency={{value}} (in the config or on the command line)",
            **thresholds,
        )
        logger.info(
            "data check %s (%s): %s scenes, %s frames, %s clips, %d problem(s)",
            entry.type,
            entry.root,
            report.scenes,
            report.frames,
            report.clips,
            len(report.problems),
        )
        problems.extend(f"{entry.type} ({entry.root}): {problem}" for problem in report.problems)
    return problems


def check_output_folder(folder: str) -> None:
    """Fail before any data or model is loaded when ``run.output_dir`` cannot be created (e.g. under a file)."""
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"run.output_dir {folder} cannot be created: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"run.output_dir {folder} cannot be created: {existing} is not writable")
