"""Training StreamVGGT: distillation from VGGT and ground-truth fine-tuning, on Accelerate.

``python -m streamvggt.train --config FILE [section.key=value ...] [--resume]`` (also under ``torchrun`` or
``accelerate launch``); :func:`main` is that command, :func:`train` the same from Python.
"""

from streamvggt.train.command import main
from streamvggt.train.config import TrainConfig, load_config
from streamvggt.train.loop import train

__all__ = ["TrainConfig", "load_config", "main", "train"]
