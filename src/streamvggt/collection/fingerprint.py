"""The options an input's outputs depend on, recorded in its completion marker.

A rerun of a collection compares them with the run's own: an input made with other options is done again, and
the log says which options changed. Every option counts except those known not to change the outputs (device,
compilation, progress, the viewer), so an option added later redoes inputs rather than keeping stale ones. The
checkpoint counts by the identity a saved run state records (:func:`streamvggt.pipeline.resume.checkpoint_record`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from streamvggt.io.outputs.interchange import ExportOptions
from streamvggt.mapping.options import MapOptions
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.pipeline.options import ReconstructOptions
from streamvggt.pipeline.resume import checkpoint_record

# Options that do not change what is written: where and how fast the model runs, and what is shown meanwhile.
IGNORED = {"model": ("checkpoint", "device", "compile"), "stream": ("query_points",)}
# Image inputs have no frame times: --fps samples the videos only, so it does not change an image folder's outputs.
IMAGE_IGNORED = ("stream.fps",)


def run_fingerprint(options: ReconstructOptions, model: StreamVGGT | str | os.PathLike | None) -> dict[str, Any]:
    """The options of a collection run that an input's outputs depend on (JSON-able, the same for every input).

    model: the model given to the run (a StreamVGGT, a checkpoint source, or None for ``options.model.checkpoint``).
    """
    sections: dict[str, Any] = {"checkpoint": checkpoint_record(options.model.checkpoint if model is None else model)}
    for name in ("model", "stream", "output"):
        section = getattr(options, name)
        values = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
        sections[name] = {k: v for k, v in values.items() if k not in IGNORED.get(name, ())}
    sections["output"]["exports"] = sections["output"]["exports"] or ExportOptions()  # None: the defaults
    settings = options.map
    sections["map"] = {"loop_closure": settings.loop_closure}
    if settings.loop_closure:  # the map's settings change nothing without it
        sections["map"] |= dataclasses.asdict(dataclasses.replace(settings, map_options=None))
        sections["map"]["map_options"] = settings.map_options or MapOptions()
    return _plain(sections)


def options_digest(fingerprint: dict[str, Any]) -> str:
    """A short name for a fingerprint (summary.json lists each distinct one once, under it)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]


def changed_options(recorded: dict[str, Any], current: dict[str, Any], image_input: bool = False) -> list[str]:
    """The options that differ, as "section.name: old -> new" (empty when the outputs would be the same)."""
    old, new = _flatten(recorded), _flatten(current)
    ignored = IMAGE_IGNORED if image_input else ()
    keys = sorted(k for k in old.keys() | new.keys() if not k.startswith(ignored) and old.get(k) != new.get(k))
    return [f"{k}: {_show(old.get(k))} -> {_show(new.get(k))}" for k in keys]


def _plain(value: Any) -> Any:
    """JSON types only (tuples become lists, dataclasses dicts), as a marker read back holds them."""

    def default(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        return str(obj)  # paths

    return json.loads(json.dumps(value, default=default))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    items: dict[str, Any] = {}
    for key, inner in value.items():
        items |= _flatten(inner, f"{prefix}.{key}" if prefix else key)
    return items


def _show(value: Any) -> str:
    return "unset" if value is None else json.dumps(value)
