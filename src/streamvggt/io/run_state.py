"""A long run's saved state: what ``--resume`` continues from after a kill, a reboot or a pre-empted job.

A state is a folder of files: tensor groups (safetensors, one file per group, torch or numpy), a small
``meta.json``, and ``manifest.json`` with the size and SHA-256 of every other file. States live in a state root
(by default ``OUT/.streamvggt-state``) as generation folders ``state-NNNNNN``; the file ``CURRENT`` names the
complete one and the SHA-256 of its manifest. Saving writes a new generation beside the current one (every file
and the folder fsynced), then replaces ``CURRENT`` atomically (temporary name, fsync, rename, fsync of the root):
a kill at any instant leaves either the previous complete state or the new one, never a mix, because a folder is
never renamed over another (Linux cannot rename over a non-empty folder) and nothing reads a generation that
``CURRENT`` does not name. Older generations are removed only after the switch.

Loading verifies every checksum before anything is used, and reports a damaged state in one line
(:class:`StateError`).

The fingerprint (:func:`make_fingerprint`) records what the saved outputs depend on: the input, the checkpoint,
the precision and every option that changes the result; :func:`fingerprint_difference` names what differs.
:func:`estimate_state_size` says how large a state gets, per frame, for a cache policy.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from streamvggt.config import ModelConfig
from streamvggt.io.errors import InputError
from streamvggt.io.inputs.sources import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

STATE_DIR = ".streamvggt-state"  # inside the output folder; hidden, and no name an output uses
FORMAT = "streamvggt-run-state"
VERSION = 1
POINTER = "CURRENT"
MANIFEST = "manifest.json"
META = "meta.json"
SPOOL = "points.spool"  # the writer's point spool: append-only, so it is kept beside the states, not copied
LOCK = "lock"
_GENERATION = re.compile(r"state-(\d{6,})")
_GROUP = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_CHUNK = 1 << 20
SAMPLE_BYTES = 1 << 20  # a file's fingerprint hashes its first and last MiB


class StateError(InputError):
    """A saved state cannot be used: damaged, of another format, locked by another run, or for other inputs."""


Tensors = Mapping[str, "np.ndarray | torch.Tensor"]


@dataclass(frozen=True)
class SavedState:
    """A verified state: its folder, its metadata, and its tensor groups (read on request)."""

    path: Path
    meta: dict[str, Any]
    groups: dict[str, str]  # group name -> "numpy" or "torch"

    def arrays(self, group: str) -> dict[str, np.ndarray]:
        """The numpy arrays of ``group`` (a torch group is read as numpy where its dtypes allow)."""
        from safetensors.numpy import load_file

        return load_file(self._file(group))

    def tensors(self, group: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The tensors of ``group`` on ``device``."""
        from safetensors.torch import load_file

        return load_file(self._file(group), device=str(device))

    def _file(self, group: str) -> Path:
        if group not in self.groups:
            raise StateError(f"the saved state in {self.path} has no '{group}' part (saved by another version?)")
        return self.path / f"{group}.safetensors"


class RunStateStore:
    """The saved states of one run, in the folder ``root`` (created on the first save).

    ``save(meta, groups)`` writes a new complete state; ``load()`` returns the current one verified, or None when
    none was completed; ``clear()`` removes everything (a run started without ``--resume``).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock_file: Any = None

    @classmethod
    def in_output(cls, output_dir: str | Path) -> RunStateStore:
        """The store of the run writing into ``output_dir``."""
        return cls(Path(output_dir) / STATE_DIR)

    @property
    def spool_path(self) -> Path:
        """Where the writer keeps its point spool for this run (see ``ReconstructionWriter(spool_path=...)``)."""
        return self.root / SPOOL

    # ------------------------------------------------------------------------------------------------ locking

    def lock(self) -> None:
        """Hold this run's lock until :meth:`unlock` (or the process ends, a kill included): a second run on the
        same output folder fails at once instead of interleaving its states with this one's."""
        import fcntl

        if self._lock_file is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / LOCK, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            message = f"another run is writing {self.root.parent}: wait for it to end or use another output"
            raise StateError(message) from None
        self._lock_file = handle

    def unlock(self) -> None:
        """Release the lock; a store that holds nothing else (a run that ended before its first save) is removed."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
            with contextlib.suppress(OSError):
                if [entry.name for entry in self.root.iterdir()] == [LOCK]:
                    (self.root / LOCK).unlink()
                    self.root.rmdir()

    # --------------------------------------------------------------------------------------------------- save

    def save(self, meta: Mapping[str, Any], groups: Mapping[str, Tensors] | None = None) -> Path:
        """Write ``meta`` (JSON-able) and the tensor ``groups`` as the new current state; returns its folder.

        Each group's values are all torch tensors or all numpy arrays (saved as such). The previous state stays
        complete until the new one is, and is removed after.
        """
        groups = dict(groups or {})
        for name in groups:
            if not _GROUP.fullmatch(name) or name in ("meta", "manifest"):
                raise ValueError(f"state group name '{name}' must be lowercase letters, digits, '_', '.' or '-'")
        self.root.mkdir(parents=True, exist_ok=True)
        current = self._pointer_or_none()
        number = int(_GENERATION.fullmatch(current["state"]).group(1)) + 1 if current else 1
        folder = self.root / f"state-{number:06d}"
        if folder.exists():  # a save killed before its switch left it: never current, safe to remove
            shutil.rmtree(folder)
        folder.mkdir()
        files: dict[str, dict[str, Any]] = {}
        meta_bytes = (json.dumps(meta, indent=1, allow_nan=True) + "\n").encode("utf-8")
        files[META] = _write_file(folder / META, meta_bytes)
        for name, values in groups.items():
            path = folder / f"{name}.safetensors"
            kind = _save_group(path, values)
            files[path.name] = {**_describe(path), "kind": kind}
        manifest = {"format": FORMAT, "version": VERSION, "files": files}
        manifest_bytes = (json.dumps(manifest, indent=1) + "\n").encode("utf-8")
        _write_file(folder / MANIFEST, manifest_bytes)
        _fsync_dir(folder)
        _fsync_dir(self.root)  # the new folder's entry, before the pointer may name it
        pointer = {"format": FORMAT, "version": VERSION, "state": folder.name}
        pointer["manifest_sha256"] = hashlib.sha256(manifest_bytes).hexdigest()
        _replace_file(self.root / POINTER, (json.dumps(pointer) + "\n").encode("utf-8"))
        self._remove_other_generations(folder.name)
        log.debug("saved run state %s (%d bytes)", folder, sum(f["bytes"] for f in files.values()))
        return folder

    def mark_finished(self, meta: Mapping[str, Any]) -> Path:
        """Record that the run finished (``meta`` with ``"finished": true``, no tensors) and drop the point spool:
        resuming it again says so and changes nothing."""
        folder = self.save({**meta, "finished": True})
        with contextlib.suppress(FileNotFoundError):
            self.spool_path.unlink()
        return folder

    def retire(self) -> None:
        """Stop naming a current state (the spool and the generation files stay until the next save or clear): a
        run about to change files that its saved state relies on (a loop-closed finish rescales per-frame depth)
        must not be resumed from that state if killed midway."""
        with contextlib.suppress(FileNotFoundError):
            (self.root / POINTER).unlink()
            _fsync_dir(self.root)

    def clear(self) -> None:
        """Remove every saved state and the spool (a rerun without ``--resume``). The lock, if held, stays."""
        if not self.root.exists():
            return
        for entry in self.root.iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        if self._lock_file is None:
            with contextlib.suppress(OSError):
                (self.root / LOCK).unlink()
            with contextlib.suppress(OSError):
                self.root.rmdir()

    # --------------------------------------------------------------------------------------------------- load

    def load(self) -> SavedState | None:
        """The current state with every checksum verified; None when no state was completed.

        Raises StateError (one line) when the state is damaged or of another format.
        """
        pointer = self._pointer_or_none()
        if pointer is None:
            return None
        folder = self.root / pointer["state"]
        manifest_path = folder / MANIFEST
        try:
            manifest_bytes = manifest_path.read_bytes()
        except OSError as error:
            raise self._damaged(f"{manifest_path.name} cannot be read ({error.strerror or error})") from None
        if hashlib.sha256(manifest_bytes).hexdigest() != pointer.get("manifest_sha256"):
            raise self._damaged(f"{manifest_path.name} does not match its checksum")
        try:
            manifest = json.loads(manifest_bytes)
            files = manifest["files"]
            _check_format(manifest, self.root)
        except (ValueError, KeyError, TypeError) as error:
            if isinstance(error, StateError):
                raise
            raise self._damaged(f"{manifest_path.name} is not a state manifest") from None
        for name, expected in files.items():
            path = folder / name
            if not path.is_file():
                raise self._damaged(f"{name} is missing")
            actual = _describe(path)
            if actual["bytes"] != expected.get("bytes"):
                raise self._damaged(f"{name} has {actual['bytes']} bytes, {expected.get('bytes')} were saved")
            if actual["sha256"] != expected.get("sha256"):
                raise self._damaged(f"{name} does not match its checksum")
        try:
            meta = json.loads((folder / META).read_bytes())
        except (OSError, ValueError):
            raise self._damaged(f"{META} cannot be read") from None
        groups = {
            name.removesuffix(".safetensors"): info.get("kind", "numpy")
            for name, info in files.items()
            if name.endswith(".safetensors")
        }
        return SavedState(folder, meta, groups)

    def _pointer_or_none(self) -> dict[str, Any] | None:
        path = self.root / POINTER
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise self._damaged(f"{POINTER} cannot be read ({error.strerror or error})") from None
        try:
            pointer = json.loads(text)
            _check_format(pointer, self.root)
            if not isinstance(pointer["state"], str) or not _GENERATION.fullmatch(pointer["state"]):
                raise KeyError("state")
        except (ValueError, KeyError, TypeError) as error:
            if isinstance(error, StateError):
                raise
            raise self._damaged(f"{POINTER} is not a state pointer") from None
        return pointer

    def _damaged(self, what: str) -> StateError:
        return StateError(
            f"the saved state in {self.root} is damaged: {what}; run again without --resume to start over"
        )

    def _remove_other_generations(self, keep: str) -> None:
        for entry in self.root.iterdir():
            stale_temp = entry.name.startswith(".") and entry.name.endswith(".tmp")
            if not ((_GENERATION.fullmatch(entry.name) and entry.name != keep) or stale_temp):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


def _check_format(document: Mapping[str, Any], root: Path) -> None:
    if document.get("format") != FORMAT:
        raise KeyError("format")
    if document.get("version") != VERSION:
        raise StateError(
            f"the saved state in {root} has format version {document.get('version')}, this version reads "
            f"{VERSION}: resume with the version that saved it, or run again without --resume"
        )


def _save_group(path: Path, values: Tensors) -> str:
    """Write one group as safetensors (fsynced); returns "torch" or "numpy"."""
    kinds = {"torch" if isinstance(v, torch.Tensor) else "numpy" for v in values.values()}
    if len(kinds) > 1:
        raise ValueError(f"state group {path.stem} mixes torch tensors and numpy arrays")
    kind = kinds.pop() if kinds else "numpy"
    if kind == "torch":
        from safetensors.torch import save_file

        tensors = {}
        seen: set[tuple[int, int]] = set()
        for key, tensor in values.items():
            tensor = tensor.detach().to("cpu").contiguous()
            storage = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
            if storage in seen or tensor.storage_offset() or tensor.numel() * tensor.element_size() != storage[1]:
                tensor = tensor.clone()  # safetensors refuses views that share storage; copy only those
            seen.add((tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes()))
            tensors[key] = tensor
        save_file(tensors, str(path))
    else:
        from safetensors.numpy import save_file

        arrays = {}
        for key, array in values.items():
            array = np.asarray(array)
            if array.dtype.fields is not None:
                raise ValueError(f"state array {key} is a structured array: save its fields one by one")
            arrays[key] = np.ascontiguousarray(array)
        save_file(arrays, str(path))
    _fsync_path(path)
    return kind


def _describe(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def _write_file(path: Path, data: bytes) -> dict[str, Any]:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` by a file holding ``data``, atomically and durably (temporary name, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_path(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_files(paths: list[Path], folders: tuple[Path, ...] = ()) -> None:
    """Make ``paths``, their folders' entries and ``folders`` durable (a state must not name files a power cut
    could lose)."""
    for path in paths:
        _fsync_path(path)
    for folder in {p.parent for p in paths} | set(folders):
        _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a folder; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------------- fingerprint


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """A file's identity without reading all of it: resolved path, size, mtime_ns and the SHA-256 of its first and
    last MiB (a long video or a 5 GB checkpoint costs two reads)."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(SAMPLE_BYTES))
        if stat.st_size > SAMPLE_BYTES:
            f.seek(max(SAMPLE_BYTES, stat.st_size - SAMPLE_BYTES))
            digest.update(f.read(SAMPLE_BYTES))
    return {
        "kind": "file",
        "path": str(path),
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256_head_tail": digest.hexdigest(),
    }


def input_fingerprint(spec: str | os.PathLike, files: list[Path] | None = None) -> dict[str, Any]:
    """The input's identity: a file (see :func:`file_fingerprint`); a folder or glob: the sorted list of its image
    files with sizes (``files``: the source's own list, ``ImageFiles.paths``; default the folder's or the pattern's
    image files, as :func:`streamvggt.io.inputs.sources.open_source` finds them); a camera or stream: its spec
    (such inputs are never resumed)."""
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_file():
        return file_fingerprint(path)
    if files is None and path.is_dir():
        files = [p for p in path.iterdir() if _is_image(p) and not p.name.startswith(".")]
    elif files is None and not path.exists() and any(c in text for c in "*?["):
        files = [Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if _is_image(Path(p))]
    if files is not None:
        root = path.resolve() if path.is_dir() else None
        names = sorted((_relative(p, root), p.stat().st_size) for p in files)
        return {"kind": "files", "spec": str(root) if root else text, "files": [list(item) for item in names]}
    return {"kind": "stream", "spec": text}


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def _relative(path: Path, root: Path | None) -> str:
    resolved = path.resolve()
    if root is not None:
        with contextlib.suppress(ValueError):
            return resolved.relative_to(root).as_posix()
    return str(resolved)


def checkpoint_fingerprint(checkpoint: str | os.PathLike, revision: str | None = None) -> dict[str, Any]:
    """The checkpoint's identity: a local file (see :func:`file_fingerprint`), a folder (its files' fingerprints),
    or a Hugging Face repo id with its revision (resolve the revision to a commit where possible)."""
    path = Path(os.fspath(checkpoint)).expanduser()
    if path.is_file():
        return file_fingerprint(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return {
            "kind": "folder",
            "path": str(path.resolve()),
            "files": {p.relative_to(path).as_posix(): file_fingerprint(p)["sha256_head_tail"] for p in files},
        }
    return {"kind": "repo", "repo": os.fspath(checkpoint), "revision": revision}


def make_fingerprint(
    input_record: Mapping[str, Any], checkpoint_record: Mapping[str, Any], precision: str, options: Mapping[str, Any]
) -> dict[str, Any]:
    """The fingerprint saved with each state. ``options``: every option that changes the result (cache policy,
    sampling, sizes, thresholds, exports...), JSON-able; tuples become lists, as they will when read back."""
    record = {
        "input": dict(input_record),
        "checkpoint": dict(checkpoint_record),
        "precision": str(precision),
        "options": dict(options),
    }
    return json.loads(json.dumps(record, allow_nan=True))  # the form it will have when read back


def fingerprint_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """One line naming the first thing that differs between a saved fingerprint and the current run's, or None."""
    saved_input, current_input = saved.get("input", {}), current.get("input", {})
    if saved_input != current_input:
        return _input_difference(saved_input, current_input)
    saved_ckpt, current_ckpt = saved.get("checkpoint", {}), current.get("checkpoint", {})
    if saved_ckpt != current_ckpt:
        before, now = _checkpoint_name(saved_ckpt), _checkpoint_name(current_ckpt)
        if before == now:
            return f"the checkpoint {now} changed since the state was saved"
        return f"the checkpoint differs: {before} was saved, {now} given"
    if saved.get("precision") != current.get("precision"):
        return f"the precision differs: {saved.get('precision')} was saved, {current.get('precision')} given"
    saved_opts, current_opts = saved.get("options", {}), current.get("options", {})
    for key in sorted(set(saved_opts) | set(current_opts)):
        before, now = saved_opts.get(key, _UNSET), current_opts.get(key, _UNSET)
        if before != now:
            return f"the option {key} differs: {_show(before)} was saved, {_show(now)} given"
    return None


_UNSET = object()


def _show(value: Any) -> str:
    if value is _UNSET:
        return "(not set)"
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _checkpoint_name(record: Mapping[str, Any]) -> str:
    if record.get("kind") == "repo":
        revision = record.get("revision")
        return f"{record.get('repo')}" + (f"@{revision}" if revision else "")
    return str(record.get("path", "?"))


def _input_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    before = saved.get("path") or saved.get("spec")
    now = current.get("path") or current.get("spec")
    if before != now or saved.get("kind") != current.get("kind"):
        return f"the input differs: {before} was saved, {now} given"
    if saved.get("kind") == "files":
        old, new = dict(map(tuple, saved.get("files", []))), dict(map(tuple, current.get("files", [])))
        added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
        resized = sorted(name for name in set(old) & set(new) if old[name] != new[name])
        parts = [f"{len(added)} added ({added[0]}...)" if added else ""]
        parts += [f"{len(removed)} removed ({removed[0]}...)" if removed else ""]
        parts += [f"{len(resized)} changed size ({resized[0]}...)" if resized else ""]
        return f"the input {now} changed since the state was saved: files " + ", ".join(p for p in parts if p)
    changed = [key for key in ("bytes", "mtime_ns", "sha256_head_tail") if saved.get(key) != current.get(key)]
    what = {"bytes": "its size", "mtime_ns": "its modification time", "sha256_head_tail": "its content"}
    return f"the input {now} changed since the state was saved ({', '.join(what[k] for k in changed) or 'its kind'})"


# ------------------------------------------------------------------------------------------------ size estimate


class PolicyLike(Protocol):
    """What the estimate needs of a cache policy (:class:`streamvggt.streaming.cache.CachePolicy` has it)."""

    kind: str  # "full", "window" or "budget"
    frames: int | None
    tokens: int | None
    int8: bool


@dataclass(frozen=True)
class StateSize:
    """Bytes of a saved state's caches: ``fixed + per_frame * min(frames, frames_limit)``; ``frames_limit`` None
    means the state grows with the stream (the full cache)."""

    fixed: int
    per_frame: int
    frames_limit: int | None

    def at(self, frames: int) -> int:
        """Bytes after ``frames`` frames."""
        counted = frames if self.frames_limit is None else min(frames, self.frames_limit)
        return self.fixed + self.per_frame * counted

    def describe(self, frames: int | None = None) -> str:
        """One line for the command: how large the state gets."""
        if self.frames_limit is None:
            line = f"the saved state grows by {_mib(self.per_frame)} a frame (full cache)"
            if frames is not None:
                line += f": about {_mib(self.at(frames))} after {frames} frames"
            return line
        return f"the saved state stays under {_mib(self.at(self.frames_limit))} (bounded cache)"


def _mib(count: int) -> str:
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


def estimate_state_size(
    policy: PolicyLike,
    config: ModelConfig,
    frame_size: tuple[int, int],
    dtype: torch.dtype = torch.float32,
    camera_dtype: torch.dtype = torch.float32,
) -> StateSize:
    """Bytes a saved state's caches take for a stream of (H, W) ``frame_size`` frames (the tracker's and the
    map's few MiB not included).

    dtype: the trunk caches' dtype (the autocast dtype, else the parameters'); camera_dtype: the camera head's.
    Trunk: ``depth`` global layers, keys and values of every token of a frame ((H/p)(W/p) patches plus camera and
    register tokens), ``embed_dim`` wide. Camera head: one token of ``2 * embed_dim`` per frame, per iteration and
    trunk block. int8 stores one byte per element plus a per-token value scale per head (key scales are per
    channel: fixed). Only the valid part of each cache is saved, never preallocated room.
    """
    height, width = frame_size
    tokens = 1 + config.num_register_tokens + (height // config.patch_size) * (width // config.patch_size)
    head = config.camera_head
    camera_layers = head.num_iterations * head.trunk_depth
    camera_dim = 2 * config.embed_dim

    def layer_bytes(width_: int, heads_: int, element: int) -> tuple[int, int]:
        """(bytes per token, fixed bytes) of one layer's keys and values."""
        if policy.int8:
            return 2 * width_ + heads_ * element, width_ * element  # codes + value scales; key scales
        return 2 * width_ * element, 0

    trunk_token, trunk_fixed = layer_bytes(config.embed_dim, config.num_heads, _element(dtype))
    camera_token, camera_fixed = layer_bytes(camera_dim, head.num_heads, _element(camera_dtype))
    trunk_per_frame = config.depth * tokens * trunk_token
    camera_per_frame = camera_layers * camera_token
    fixed = config.depth * trunk_fixed + camera_layers * camera_fixed
    if policy.kind == "full":
        return StateSize(fixed, trunk_per_frame + camera_per_frame, None)
    if policy.kind == "window":
        frames = 1 + int(policy.frames or 0)  # the anchor plus the ring
        return StateSize(fixed, trunk_per_frame + camera_per_frame, frames)
    if policy.kind == "budget":
        # A frame is appended while it fits (the rest overwrite evicted slots), so the trunk keeps
        # budget // tokens frames' tokens; the camera head keeps as many frames (at least 2, as the budget holds).
        return StateSize(fixed, trunk_per_frame + camera_per_frame, max(2, int(policy.tokens or 0) // tokens))
    raise ValueError(f"unknown cache policy kind '{policy.kind}'")


def _element(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def iter_generations(root: Path) -> Iterator[Path]:
    """The generation folders in ``root`` (current and stale), for tests and diagnostics."""
    if root.is_dir():
        yield from sorted(p for p in root.iterdir() if _GENERATION.fullmatch(p.name))
