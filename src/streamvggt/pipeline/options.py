"""What a reconstruction run is asked to do, in one checked object.

:class:`ReconstructOptions` groups the options of ``reconstruct``, ``view``, ``reconstruct-many`` and the
model-running part of ``eval`` into sections (model, stream, outputs, viewer). :meth:`ReconstructOptions.check`
validates all of them at once, before anything slow (loading a model, opening a source, starting a server), and
raises one ValueError with a one-line message naming the command-line flag.

This module imports neither torch nor the writers at import time: the command line builds its parser from these
defaults (``streamvggt --help`` must start fast).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamvggt.io.inputs.preprocess import DEFAULT_SIZE

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import torch

    from streamvggt.io.outputs.interchange import ExportOptions
    from streamvggt.mapping.options import MapOptions

COMPILE_MODES = (False, True, "step", "regions")


@dataclass(frozen=True)
class ModelOptions:
    """Which model runs where.

    checkpoint: a checkpoint source for :func:`streamvggt.load_model` (None: the bundled model).
    device: "auto"/None (under a launcher the GPU ``LOCAL_RANK`` names, else CUDA, MPS, CPU), "cpu", "cuda:1", ...
    precision: the trunk precision (auto, fp32, bf16, fp16, int8; see :mod:`streamvggt.runtime.precision`).
    compile: False; True or "step" (each streaming step compiled whole); "regions" (blocks and heads compiled).
    """

    checkpoint: str | os.PathLike | None = None
    device: str | None = None
    precision: str = "auto"
    compile: bool | str = False


@dataclass(frozen=True)
class StreamOptions:
    """How frames are sampled and prepared, and what the session keeps.

    cache: the session's cache policy ("full", "window:K", "budget:N", each with an optional "+int8").
    preprocess, size: "crop" or "pad" to ``size`` pixels (a multiple of 14).
    stride / fps: keep every stride-th frame, or fps frames per second (default: every image; 1 fps of video).
    max_frames: stop after this many frames.
    query_points: pixels (x, y) [N, 2] of the first processed frame to track, or a function of that frame's size
    (H, W) returning them (see :class:`streamvggt.Reconstructor`).
    """

    cache: str = "full"
    preprocess: str = "crop"
    size: int = DEFAULT_SIZE
    stride: int | None = None
    fps: float | None = None
    max_frames: int | None = None
    query_points: np.ndarray | Callable[[tuple[int, int]], np.ndarray] | None = None


@dataclass(frozen=True)
class OutputOptions:
    """What is kept of each frame and which files are written (the writer), and what the viewer starts with.

    points: "depth" (depth unprojected with the predicted camera) or "pointmap" (the point head).
    conf_threshold: percentile in [0, 100) of each frame's confidence below which its pixels are dropped.
    voxel_size: merge points into voxels of this size (model units); None keeps every point.
    depth_png, pointmaps: also write a colour PNG of each depth map, each frame's point map.
    exports: the COLMAP, transforms.json and RGB-D options (None: the defaults).
    """

    points: str = "depth"
    conf_threshold: float = 50.0
    voxel_size: float | None = None
    depth_png: bool = False
    pointmaps: bool = False
    exports: ExportOptions | None = None


@dataclass(frozen=True)
class ViewerOptions:
    """The browser viewer's server.

    host, port: where it listens (port 0: any free one). wait: keep serving after the stream ends, until Ctrl-C.
    allow_remote_export: keep Export PLY on with a host beyond this machine. export_dir: an existing folder where
    Export PLY writes (None: the output folder, or the working folder). max_points_per_frame: points shown per frame
    (None: the viewer's default).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    wait: bool = True
    allow_remote_export: bool = False
    export_dir: str | os.PathLike | None = None
    max_points_per_frame: int | None = None


MAP_DESCRIPTORS = ("auto", "tokens", "image")


@dataclass(frozen=True)
class MapSettings:
    """The long-video map beside the stream (:mod:`streamvggt.mapping`, docs/long_videos.md).

    loop_closure: keep a keyframe map, close loops on revisits and write every output with the corrected cameras
    and scaled depth, plus loops.json. reanchor_every: restart the stream every N frames with the last
    ``reanchor_replay`` keyframes replayed (0: never; None: ``map_options``' value). map_descriptor: the revisit
    descriptor, "tokens" (the model's patch tokens), "image" (a thumbnail) or "auto" (tokens when the stream
    exposes them). map_options: every other setting of the map (:class:`~streamvggt.mapping.MapOptions`; its
    ``cache_window`` is taken from the cache policy when left at 0).
    """

    loop_closure: bool = False
    reanchor_every: int | None = None
    reanchor_replay: int | None = None
    map_descriptor: str = "auto"
    map_options: MapOptions | None = None


SECTIONS: dict[str, type] = {
    "model": ModelOptions,
    "stream": StreamOptions,
    "output": OutputOptions,
    "viewer": ViewerOptions,
    "map": MapSettings,
}


@dataclass(frozen=True)
class ReconstructOptions:
    """Every option of a reconstruction run, by section; ``progress`` shows a progress bar (tqdm, stderr).

    resume: continue the interrupted run saved in the output folder (``reconstruct --resume``; see
    :mod:`streamvggt.pipeline.resume`). state_every: save the run's state every N frames; None (the default):
    about every minute of work; 0: never (the run cannot be resumed). Neither changes the outputs.
    """

    model: ModelOptions = field(default_factory=ModelOptions)
    stream: StreamOptions = field(default_factory=StreamOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    viewer: ViewerOptions = field(default_factory=ViewerOptions)
    map: MapSettings = field(default_factory=MapSettings)
    progress: bool = False
    resume: bool = False
    state_every: int | None = None

    @classmethod
    def from_keywords(cls, function: str = "reconstruct", **keywords: Any) -> ReconstructOptions:
        """The options from flat keyword names (``cache="window:8"``, ``size=224``, ``port=0`` ...), each the
        field of one section; ``function`` names the caller in the TypeError for an unknown keyword."""
        sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        top: dict[str, Any] = {}
        for key, value in keywords.items():
            if key in TOP_LEVEL:
                top[key] = value
                continue
            section = _SECTION_OF.get(key)
            if section is None:
                raise TypeError(f"{function}() got an unexpected keyword argument '{key}'")
            sections[section][key] = value
        return cls(**{name: SECTIONS[name](**values) for name, values in sections.items()}, **top)

    def replace(self, **keywords: Any) -> ReconstructOptions:
        """A copy with the given flat keyword fields changed (see :meth:`from_keywords`)."""
        changed = {}
        for key, value in keywords.items():
            if key in TOP_LEVEL:
                changed[key] = value
                continue
            section = _SECTION_OF.get(key)
            if section is None:
                raise TypeError(f"replace() got an unexpected keyword argument '{key}'")
            current = changed.get(section, getattr(self, section))
            changed[section] = dataclasses.replace(current, **{key: value})
        return dataclasses.replace(self, **changed)

    def check(self, loads_model: bool = True, viewer: bool = False) -> torch.device | None:
        """Validate every option before anything slow; returns the device the model will load on (None when the
        caller brings a loaded model, ``loads_model=False``: its device and precision are the model's own).
        ``viewer``: also check the viewer's server options. Raises ValueError (or MissingExtraError) with one line.
        """
        from streamvggt.io.inputs.preprocess import Preprocessor
        from streamvggt.io.inputs.sources import check_sampling
        from streamvggt.io.outputs.writer import check_writer_options
        from streamvggt.streaming.cache import parse_policy

        model, stream, output = self.model, self.stream, self.output
        if model.compile not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {model.compile!r}: use step or regions")
        parse_policy(stream.cache)
        Preprocessor(stream.preprocess, stream.size)
        check_sampling(stream.stride, stream.fps, stream.max_frames)
        check_writer_options(output.points, output.conf_threshold, output.voxel_size)
        if self.state_every is not None and (isinstance(self.state_every, bool) or self.state_every < 0):
            raise ValueError(
                f"--state-every must be a number of frames >= 0 (0: no saved state), got {self.state_every}"
            )
        self.check_map()
        if viewer:
            self.check_viewer()
        if not loads_model:
            return None
        from streamvggt.runtime.device import select_device
        from streamvggt.runtime.precision import resolve_precision

        device = select_device(model.device)
        resolve_precision(device, model.precision)
        return device

    def check_map(self) -> None:
        """The map section: its options valid, GTSAM installed (loop closure needs it), re-anchoring only where a
        stream can restart (not with query points, whose tracks start at the first frame)."""
        settings = self.map
        flags = [
            flag
            for flag, given in (
                ("--reanchor-every", settings.reanchor_every is not None),
                ("--reanchor-replay", settings.reanchor_replay is not None),
                ("--map-descriptor", settings.map_descriptor != "auto"),
                ("map_options", settings.map_options is not None),
            )
            if given
        ]
        if not settings.loop_closure:
            if flags:
                raise ValueError(f"{flags[0]} applies only with --loop-closure")
            return
        if settings.map_descriptor not in MAP_DESCRIPTORS:
            raise ValueError(f"unknown map descriptor '{settings.map_descriptor}': use {', '.join(MAP_DESCRIPTORS)}")
        map_options = self.map_options()
        if map_options.reanchor_every and self.stream.query_points is not None:
            raise ValueError("--reanchor-every cannot be used with query points: their tracks start at the first frame")
        if map_options.reanchor_every and map_options.reanchor_every <= map_options.replay:
            raise ValueError(
                f"--reanchor-every ({map_options.reanchor_every}) must exceed the replayed keyframes "
                f"({map_options.replay}): each segment would only replay"
            )
        from streamvggt.extras import require

        require("gtsam", "mapping", purpose="--loop-closure")

    def map_options(self) -> MapOptions:
        """The :class:`~streamvggt.mapping.MapOptions` of the map section (ValueError for an invalid value); the
        cache window is filled in by the frame loop once the frame size is known."""
        import dataclasses as dc

        from streamvggt.mapping.options import MapOptions

        settings = self.map
        changes: dict[str, Any] = {}
        if settings.reanchor_every is not None:
            changes["reanchor_every"] = settings.reanchor_every
        if settings.reanchor_replay is not None:
            changes["replay"] = settings.reanchor_replay
        base = settings.map_options if settings.map_options is not None else MapOptions()
        options = dc.replace(base, **changes)  # MapOptions checks its values
        if options.reanchor_every and options.replay < 1:
            raise ValueError("re-anchoring needs at least one replayed keyframe (--reanchor-replay)")
        return options

    def check_viewer(self) -> None:
        """The viewer's options: a port number, a positive point count, an export folder this process can write to."""
        options = self.viewer
        if not 0 <= options.port <= 65535:
            raise ValueError(f"port must be in 0-65535, got {options.port}")
        if options.max_points_per_frame is not None and options.max_points_per_frame < 1:
            raise ValueError(f"the viewer's points per frame must be at least 1, got {options.max_points_per_frame}")
        if options.export_dir is not None:  # at start-up: Export PLY would only fail at the click
            check_export_dir(options.export_dir)


TOP_LEVEL = ("progress", "resume", "state_every")  # options of the run itself, in no section
_SECTION_OF = {f.name: section for section, kind in SECTIONS.items() for f in dataclasses.fields(kind)}
_SECTION_OF.pop("checkpoint")  # the model source is its own argument of reconstruct and view


def check_export_dir(path: str | os.PathLike) -> None:
    """ValueError with one line unless ``path`` is a folder this process can write to (Export PLY's target)."""
    if not os.path.isdir(path):
        why = "it is not a folder" if os.path.exists(path) else "no such folder"
        raise ValueError(f"cannot export to {path}: {why} (--export-dir)")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"cannot export to {path}: the folder is not writable (--export-dir)")
