"""Readers of the depth benchmarks in their standard preprocessed layouts (SPEC §5)."""

from __future__ import annotations

from pathlib import Path

from streamvggt.evaluate.datasets.base import DepthDataset, DepthFrame, DepthSequence
from streamvggt.evaluate.datasets.bonn import BonnDataset
from streamvggt.evaluate.datasets.kitti import KittiDataset
from streamvggt.evaluate.datasets.nyu import NyuDataset
from streamvggt.evaluate.datasets.sintel import SintelDataset

DEPTH_DATASETS: dict[str, type[DepthDataset]] = {
    "sintel": SintelDataset,
    "bonn": BonnDataset,
    "kitti": KittiDataset,
    "nyu": NyuDataset,
}


def open_depth_dataset(name: str, root: str | Path) -> DepthDataset:
    """The depth dataset ``name`` at ``root``; ValueError for an unknown name, InputError for a wrong folder."""
    if name not in DEPTH_DATASETS:
        raise ValueError(f"unknown depth dataset '{name}': choose one of {', '.join(DEPTH_DATASETS)}")
    return DEPTH_DATASETS[name](root)


__all__ = [
    "DEPTH_DATASETS",
    "BonnDataset",
    "DepthDataset",
    "DepthFrame",
    "DepthSequence",
    "KittiDataset",
    "NyuDataset",
    "SintelDataset",
    "open_depth_dataset",
]
