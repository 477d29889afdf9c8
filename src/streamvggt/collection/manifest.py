"""What a collection holds: the inputs of a manifest file or a folder, each with the name of its output folder.

A manifest file has one input per line: a folder of images, a video or image file, a glob, or a stream URL,
optionally followed by a tab and the output folder's name. Relative paths are relative to the manifest's folder;
blank lines and lines starting with ``#`` are ignored. A folder given as the manifest holds the inputs: its
sub-folders (image folders) and video files, in natural order.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from streamvggt.io.errors import InputError
from streamvggt.io.inputs.sources import IMAGE_EXTENSIONS, natural_key

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts")
# Names the collection itself uses inside the output root.
RESERVED_NAMES = ("summary.json",)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:(//|/)")  # as streamvggt.io.inputs.sources: rtsp://..., file:/path


@dataclass(frozen=True)
class Entry:
    """One input of a collection. ``index`` is its position in the manifest: shards split by it."""

    index: int
    input: str  # what reconstruct is given: a path (absolute when the manifest gave it relative), glob or URL
    name: str  # the output folder's name inside the output root
    where: str  # the manifest line (or folder entry) it came from, for messages


def read_manifest(path: str | os.PathLike) -> list[Entry]:
    """The entries of a manifest file or folder; InputError (naming the file and line) when one is unusable."""
    manifest = Path(path).expanduser()
    if manifest.is_dir():
        entries = _folder_entries(manifest)
    elif manifest.suffix.lower() in (*VIDEO_EXTENSIONS, *IMAGE_EXTENSIONS):  # not a text file: say what to do
        raise InputError(
            f"{manifest} is one input, not a manifest: reconstruct it with streamvggt reconstruct, or list it in a "
            "manifest file or put it in a folder of inputs"
        )
    elif manifest.is_file():
        entries = _file_entries(manifest)
    else:
        raise InputError(f"manifest not found: {manifest}")
    if not entries:
        raise InputError(f"manifest {manifest} lists no inputs")
    _check_unique(entries)
    return entries


def _file_entries(manifest: Path) -> list[Entry]:
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read manifest {manifest}: {getattr(error, 'strerror', None) or error}") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{manifest} line {number}"
        spec, sep, name = (part.strip() for part in text.partition("\t"))
        if not spec:
            raise InputError(f"{where}: no input before the tab")
        source = _resolved(spec, manifest.parent)
        if not sep:
            _check_spaces_for_a_tab(spec, source, manifest.parent, where)
        entries.append(
            Entry(
                index=len(entries),
                input=source,
                name=_checked_name(name or _default_name(spec, where), where),
                where=where,
            )
        )
    return entries


def _check_spaces_for_a_tab(spec: str, source: str, base: Path, where: str) -> None:
    """InputError when a line reads as "input<spaces>name": the whole line is no path, but the text before its last
    spaces is one (an editor that turns tabs into spaces makes this; paths with spaces still work)."""
    head, space, tail = spec.rpartition(" ")
    head = head.rstrip()
    if not space or not head or _URL.match(spec) or Path(source).exists() or any(c in spec for c in "*?["):
        return
    if Path(_resolved(head, base)).exists():
        raise InputError(
            f"{where}: '{spec}' is no input, but '{head}' is: separate the output name '{tail}' with a tab, not spaces"
        )


def _folder_entries(folder: Path) -> list[Entry]:
    children = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    inputs = [p for p in children if p.is_dir() or p.suffix.lower() in VIDEO_EXTENSIONS]
    if not inputs and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in children):
        raise InputError(
            f"folder {folder} holds images, not videos or image folders: it is one input (streamvggt reconstruct), "
            "or list its inputs in a manifest file"
        )
    ignored = len(children) - len(inputs)
    if ignored:
        log.info("%s: %d entries are neither folders nor videos and are left out", folder, ignored)
    return [
        Entry(index=i, input=str(p), name=_checked_name(p.name if p.is_dir() else p.stem, f"{p}"), where=f"{p}")
        for i, p in enumerate(inputs)
    ]


def _resolved(spec: str, base: Path) -> str:
    """A manifest's input as reconstruct takes it: URLs as written, paths relative to the manifest's folder."""
    if _URL.match(spec):
        return spec
    path = Path(spec).expanduser()
    return str(path if path.is_absolute() else base / path)


def _default_name(spec: str, where: str) -> str:
    """The output name of an input without one: its file name without the extension, or its folder's name."""
    if _URL.match(spec) or any(c in spec for c in "*?["):
        raise InputError(f"{where}: a URL or glob needs an output name after a tab")
    path = Path(spec)
    return path.stem if path.suffix.lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS else path.name


def _checked_name(name: str, where: str) -> str:
    """``name`` if it can be one folder inside the output root; InputError saying why not otherwise."""
    if not name or name in (".", "..") or name.startswith(".") or any(c in name for c in "/\\\t\n\r\0"):
        raise InputError(f"{where}: '{name}' cannot be an output folder name (one plain name, not hidden)")
    if name in RESERVED_NAMES:
        raise InputError(f"{where}: '{name}' is the collection's own file; choose another output name")
    return name


def _check_unique(entries: list[Entry]) -> None:
    seen: dict[str, Entry] = {}
    for entry in entries:
        key = entry.name.casefold()  # "Clip" and "clip" are one folder on macOS and Windows
        if key in seen:
            raise InputError(
                f"{entry.where}: output name '{entry.name}' is also the name of {seen[key].where}; "
                "give one of them another name (after a tab)"
            )
        seen[key] = entry
