"""A training mix: clips drawn from several datasets by sample counts (the reference's ``N @ Dataset + ...``)."""

from __future__ import annotations

import bisect
import inspect
from collections.abc import Sequence
from itertools import accumulate
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from streamvggt.train.data.arkitscenes_highres import ARKitScenesHighResDataset
from streamvggt.train.data.base import MultiViewDataset
from streamvggt.train.data.blendedmvs import BlendedMVSDataset
from streamvggt.train.data.hypersim import HypersimDataset
from streamvggt.train.data.layouts import (
    ARKitScenesDataset,
    Co3dDataset,
    GenericDataset,
    ScanNetDataset,
    WildRGBDDataset,
)
from streamvggt.train.data.megadepth import MegaDepthDataset
from streamvggt.train.data.sampling import ItemKey, item_rng
from streamvggt.train.data.scannetpp import ScanNetppDataset
from streamvggt.train.data.synthetic import SyntheticDataset
from streamvggt.train.data.synthetic_layouts import (
    MVSSynthDataset,
    OmniObject3DDataset,
    PointOdysseyDataset,
    SpringDataset,
)
from streamvggt.train.data.vkitti2 import VirtualKitti2Dataset
from streamvggt.train.data.waymo import WaymoDataset

READERS: dict[str, type[MultiViewDataset]] = {
    "generic": GenericDataset,
    "scannet": ScanNetDataset,
    "arkitscenes": ARKitScenesDataset,
    "co3d": Co3dDataset,
    "wildrgbd": WildRGBDDataset,
    "synthetic": SyntheticDataset,
    "blendedmvs": BlendedMVSDataset,
    "megadepth": MegaDepthDataset,
    "waymo": WaymoDataset,
    "vkitti2": VirtualKitti2Dataset,
    "spring": SpringDataset,
    "mvs_synth": MVSSynthDataset,
    "pointodyssey": PointOdysseyDataset,
    "omniobject3d": OmniObject3DDataset,
    "arkitscenes_highres": ARKitScenesHighResDataset,
    "scannetpp": ScanNetppDataset,
    "hypersim": HypersimDataset,
}


def build_reader(kind: str, **arguments: Any) -> MultiViewDataset:
    """The reader of dataset type ``kind`` with its constructor ``arguments``; unknown types and options are
    ValueErrors that name what is accepted."""
    try:
        reader = READERS[kind]
    except KeyError:
        raise ValueError(f"unknown dataset type '{kind}'; readers exist for: {', '.join(sorted(READERS))}") from None
    parameters = inspect.signature(reader).parameters
    try:
        inspect.signature(reader).bind(**arguments)
    except TypeError as error:
        raise ValueError(f"dataset type '{kind}': {error} (it accepts: {', '.join(parameters)})") from None
    unset = [n for n, p in parameters.items() if p.default is inspect.Parameter.empty and arguments.get(n) is None]
    if unset:
        raise ValueError(f"dataset type '{kind}' needs {', '.join(unset)} (e.g. root: the dataset folder)")
    for name, value in arguments.items():
        # A flag given as text ('maybe', 'yes' from YAML 1.2 habits) would fail only when a clip is read.
        if parameters[name].annotation in (bool, "bool") and not isinstance(value, bool):
            raise ValueError(f"dataset type '{kind}': {name} must be true or false, got {value!r}")
    return reader(**arguments)


class DatasetMix(Dataset):
    """``samples[i]`` clips of ``datasets[i]`` per epoch, at the resolution each batch chose.

    Indexed by :class:`ItemKey`. Each epoch every dataset contributes a fresh random selection of its clips
    (a permutation, repeated when the count exceeds the dataset); all randomness of an item comes from
    (seed, epoch, index), so items do not depend on workers, processes or resumption.
    """

    def __init__(
        self,
        datasets: Sequence[MultiViewDataset],
        samples: Sequence[int],
        resolutions: Sequence[tuple[int, int]],
        seed: int = 0,
    ) -> None:
        if len(datasets) != len(samples) or not datasets:
            raise ValueError("need one sample count per dataset, and at least one dataset")
        if any(n < 1 for n in samples):
            raise ValueError(f"sample counts must be positive, got {list(samples)}")
        self.datasets = list(datasets)
        self.samples = list(samples)
        self.resolutions = [tuple(r) for r in resolutions]
        self.seed = seed
        self._ends = list(accumulate(self.samples))
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return self._ends[-1]

    def locate(self, epoch: int, index: int) -> tuple[int, int]:
        """(dataset number, clip index in that dataset) of item ``index`` of ``epoch``."""
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for a mix of {len(self)}")
        entry = bisect.bisect_right(self._ends, index)
        local = index - (self._ends[entry - 1] if entry else 0)
        key = (entry, epoch)
        if key not in self._orders:
            # Only the current epoch's orders are kept (a worker moves through epochs in order).
            self._orders = {k: v for k, v in self._orders.items() if k[1] == epoch}
            self._orders[key] = item_rng(self.seed, epoch, entry, 0x313).permutation(len(self.datasets[entry]))
        order = self._orders[key]
        return entry, int(order[local % len(order)])

    def __getitem__(self, key: ItemKey) -> dict:
        entry, clip = self.locate(key.epoch, key.index)
        rng = item_rng(self.seed, key.epoch, key.index, 0xC11)
        return self.datasets[entry].clip(clip, self.resolutions[key.resolution], rng)
