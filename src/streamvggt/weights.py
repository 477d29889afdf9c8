"""Loading and saving model weights: official checkpoints, training checkpoints, safetensors, Hugging Face repos.

Sources that :func:`load_model` accepts:

- a file: a raw state dict (``.pt``/``.pth``, e.g. VGGT-1B ``model.pt``), a training checkpoint wrapping one
  (``{"model": ...}``, ``"state_dict"`` or ``"module"``; ``module.`` and ``_orig_mod.`` key prefixes are stripped),
  or a ``.safetensors`` file;
- a folder: ``config.json`` + ``model.safetensors`` (what :func:`save_pretrained` writes), or a Hugging Face snapshot
  of an official repo holding ``model.pt`` (VGGT-1B) or ``checkpoints.pth`` (StreamVGGT);
- a Hugging Face repo id ``owner/name`` (only when no such path exists): the official repos by their file, any
  other repo in this project's format. Downloads honour ``HF_HUB_OFFLINE`` and the Hugging Face cache.

Which architecture is built (first that applies):

1. ``preset`` as a :class:`ModelConfig`: used exactly as given, ``causal`` included.
2. ``preset`` as a name: gives the architecture; ``causal`` still comes from the source when the source knows it
   (an official file: VGGT-1B is full attention, StreamVGGT is causal; or our ``config.json``). To run weights
   with the other attention pattern, pass a ``ModelConfig``.
3. the source's own config: our ``config.json``, or the preset of an official file.
4. otherwise the ``streamvggt-1b`` preset.

A ``config.json`` counts as ours only when it names ``causal``: the one in facebook/VGGT-1B, written by
``PyTorchModelHubMixin``, lists constructor arguments only and is ignored.

Checkpoints never execute code: ``torch.load`` always runs with ``weights_only=True``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from streamvggt.config import ModelConfig
from streamvggt.io.atomic import atomic_output
from streamvggt.model import conveniences
from streamvggt.model.streamvggt import StreamVGGT
from streamvggt.runtime.device import select_device
from streamvggt.runtime.precision import apply_precision, cast_trunk_linears, resolve_model_precision, resolve_precision

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DEFAULT_PRESET = "streamvggt-1b"
# A small model trained by this project on synthetic scenes, shipped so that everything works offline.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "default_model"
# Values sampled per parameter tensor by parameter_digest: evenly spaced, so any training step changes some.
DIGEST_SAMPLES = 1024


@dataclass(frozen=True)
class OfficialCheckpoint:
    """A released checkpoint: its Hugging Face repo, file name, preset, and whether it was trained causal."""

    repo_id: str
    filename: str
    preset: str
    causal: bool


OFFICIAL_CHECKPOINTS = (
    OfficialCheckpoint("facebook/VGGT-1B", "model.pt", "vggt-1b", causal=False),
    OfficialCheckpoint("lch01/StreamVGGT", "checkpoints.pth", "streamvggt-1b", causal=True),
)

# Keys under which training code nests the state dict, and key prefixes added by DDP and torch.compile.
_WRAPPER_KEYS = ("model", "state_dict", "module")
_KEY_PREFIXES = ("module.", "_orig_mod.")
# Objects that training checkpoints carry beside the tensors and that are safe to rebuild (plain attribute bags).
_SAFE_GLOBALS = [argparse.Namespace]
# A missing path like "ckpt/model.pt" is a typo, not a repo id: never send it to the Hub.
_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".json")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")
_LISTED = 5  # names shown per category in a mismatch message


class CheckpointError(ValueError):
    """A checkpoint cannot be found, read, or does not fit the model; the message says what to do."""


# --------------------------------------------------------------------------------------------------------- public


def load_model(
    source: str | os.PathLike | None = None,
    preset: str | ModelConfig | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
) -> StreamVGGT:
    """Build the model for ``source`` with its weights, in eval mode on ``select_device(device)``.

    source: a checkpoint file, a folder, or a Hugging Face repo id (see the module docstring).
    preset: overrides the architecture: a preset name (``causal`` still from the source) or a full ModelConfig.
    precision: trunk precision, ``auto``/``fp32``/``bf16``/``fp16``/``int8``, resolved for ``device`` and recorded
        in ``model.execution`` (see :mod:`streamvggt.runtime.precision`). On CPU, bf16 loads the trunk's Linear
        weights straight into bf16 and int8 quantises them layer by layer, so neither holds the model twice (the
        file itself is memory-mapped).
    Raises CheckpointError when the source is missing, unreadable, or does not match the architecture.
    """
    target = select_device(device)
    resolve_precision(target, precision)  # reject a bad precision before a slow load
    checkpoint = resolve_checkpoint(source)
    config, described = _choose_config(checkpoint, preset)
    mode = resolve_model_precision(config, precision, target)
    # No reference kept here to the file's tensors, so casting fp16/bf16 weights frees each original as it goes.
    label = f"{checkpoint.label} ({described})"
    bf16_trunk = target.type == "cpu" and mode == "bf16"
    model = build_from_state_dict(config, read_state_dict(checkpoint.path), label, bf16_trunk=bf16_trunk)
    model = model.to(target).eval()
    execution = apply_precision(model, precision, target, resolved=mode)
    logger.info(
        "loaded %s as %s (causal=%s) on %s, precision %s",
        checkpoint.label,
        described,
        config.causal,
        target,
        execution.describe(),
    )
    return model


def save_pretrained(model: StreamVGGT, folder: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder`` (created), each atomically; returns it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    with atomic_output(folder / WEIGHTS_NAME) as tmp:
        save_file(state, tmp, metadata={"format": "pt"})
    with atomic_output(folder / CONFIG_NAME) as tmp:
        model.config.to_json(tmp)
    logger.info("saved %d tensors and the config to %s", len(state), folder)
    return folder


# ------------------------------------------------------------------------------------------ finding the checkpoint


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """A weights file on disk and the config its source implies (None when the file alone says nothing)."""

    path: Path
    config: ModelConfig | None
    label: str  # names the checkpoint in messages


def resolve_checkpoint(source: str | os.PathLike | None) -> ResolvedCheckpoint:
    """Find the weights file for ``source``, downloading from the Hub only for a repo id."""
    if source is None:
        return default_checkpoint()
    path = Path(source).expanduser()
    if path.is_dir():
        return _resolve_folder(path)
    if path.is_file():
        return ResolvedCheckpoint(path, None, str(path))
    if isinstance(source, str) and _looks_like_repo_id(source):
        return _resolve_repo(source)
    raise CheckpointError(
        f"checkpoint not found: '{source}' is neither a file, a folder, nor a Hugging Face repo id (owner/name)"
    )


def default_checkpoint() -> ResolvedCheckpoint:
    """The bundled default model (see its model card, ``assets/default_model/README.md``)."""
    if (DEFAULT_MODEL_DIR / WEIGHTS_NAME).is_file():
        resolved = _resolve_folder(DEFAULT_MODEL_DIR)
        return dataclasses.replace(resolved, label="the bundled default model")
    raise CheckpointError(
        f"a checkpoint is needed (the bundled default model is missing from {DEFAULT_MODEL_DIR}): pass a "
        ".pt/.pth/.safetensors file, a folder, or a Hugging Face repo id such as 'lch01/StreamVGGT'"
    )


def _looks_like_repo_id(source: str) -> bool:
    return bool(_REPO_ID.fullmatch(source)) and not source.lower().endswith(_FILE_SUFFIXES)


def _official_by_repo(repo_id: str) -> OfficialCheckpoint | None:
    # Hub repo ids are case-insensitive in practice; users type "facebook/vggt-1b" too.
    return next((o for o in OFFICIAL_CHECKPOINTS if o.repo_id.lower() == repo_id.lower()), None)


def _official_resolved(path: Path, official: OfficialCheckpoint) -> ResolvedCheckpoint:
    config = dataclasses.replace(ModelConfig.preset(official.preset), causal=official.causal)
    return ResolvedCheckpoint(path, config, f"{official.repo_id} checkpoint {path}")


def _resolve_folder(folder: Path) -> ResolvedCheckpoint:
    """Our save_pretrained layout first, then an official snapshot, then a lone model.safetensors."""
    config = _read_config(folder / CONFIG_NAME)
    weights = folder / WEIGHTS_NAME
    if config is not None and weights.is_file():
        return ResolvedCheckpoint(weights, config, str(folder))
    for official in OFFICIAL_CHECKPOINTS:
        if (folder / official.filename).is_file():
            return _official_resolved(folder / official.filename, official)
    if weights.is_file():
        return ResolvedCheckpoint(weights, None, str(weights))
    names = ", ".join(o.filename for o in OFFICIAL_CHECKPOINTS)
    raise CheckpointError(
        f"no checkpoint in folder {folder}: expected {CONFIG_NAME} + {WEIGHTS_NAME} (save_pretrained) or one of {names}"
    )


def _resolve_repo(repo_id: str) -> ResolvedCheckpoint:
    official = _official_by_repo(repo_id)
    if official is not None:
        path = _hub_file(official.repo_id, official.filename, f"download {official.filename} and pass its path")
        return _official_resolved(path, official)
    hint = f"download {CONFIG_NAME} and {WEIGHTS_NAME} into a folder and pass the folder"
    config_path = _hub_file(repo_id, CONFIG_NAME, hint)
    weights = _hub_file(repo_id, WEIGHTS_NAME, hint)
    return ResolvedCheckpoint(weights, _read_config(config_path), f"Hugging Face repo {repo_id}")


def _hub_file(repo_id: str, filename: str, hint: str) -> Path:
    """Local path of ``filename`` in ``repo_id``: from the cache, or downloaded unless offline."""
    # What the error messages need is imported here too, before the download: a hub older than the declared floor
    # stops with this message instead of an ImportError replacing the download's own error.
    try:
        from huggingface_hub import constants, errors, hf_hub_download
    except ImportError as error:
        raise CheckpointError(
            f"Hugging Face downloads need a newer huggingface_hub ({_one_line(error)}): pip install -U huggingface_hub"
        ) from None
    try:
        # The cache first, without a request: a cached file loads offline with no wait.
        return Path(hf_hub_download(repo_id, filename, library_name="streamvggt", local_files_only=True))
    except errors.LocalEntryNotFoundError:
        pass
    except Exception as error:  # a cache entry that cannot be read: the download below replaces it
        logger.debug("hf_hub_download(%s, %s, local_files_only=True) failed: %s", repo_id, filename, error)
    offline = constants.HF_HUB_OFFLINE
    if not offline and not _hub_reachable(constants.ENDPOINT):
        # huggingface_hub retries an unreachable host for about 25 s before giving up: fail at once instead.
        where = f"'{filename}' from Hugging Face repo {repo_id}"
        raise CheckpointError(
            f"cannot download {where}: {constants.ENDPOINT} cannot be reached and the file is not in the Hugging Face "
            f"cache; connect to the internet and retry, or {hint}"
        )
    try:
        return Path(hf_hub_download(repo_id, filename, library_name="streamvggt"))
    except Exception as error:  # the hub raises many types (HTTP, OS, validation); each becomes one line
        logger.debug("hf_hub_download(%s, %s) failed", repo_id, filename, exc_info=True)
        message = _hub_error_message(repo_id, filename, error, hint, errors, offline=offline)
        raise CheckpointError(message) from None


# Proxy settings that route Hub requests through another host: a direct probe would say nothing about them.
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``endpoint``'s host opens within ``timeout`` s (True behind a proxy: untested)."""
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(name) for name in _PROXY_VARIABLES):
        return True
    url = urlsplit(endpoint)
    if not url.hostname:
        return True
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _hub_error_message(
    repo_id: str, filename: str, error: Exception, hint: str, errors: ModuleType, offline: bool
) -> str:
    """One line: what failed and what to do (``hint``: how to get the files without this call; ``errors``:
    ``huggingface_hub.errors``; ``offline``: HF_HUB_OFFLINE is set)."""
    where = f"'{filename}' from Hugging Face repo {repo_id}"
    fallback = f"or {hint}"
    if isinstance(error, errors.GatedRepoError):
        return f"cannot get {where}: the repo is gated; accept its terms and log in (hf auth login), {fallback}"
    if isinstance(error, errors.RepositoryNotFoundError):
        return f"cannot get {where}: no such repo (or it is private; log in with hf auth login)"
    if isinstance(error, errors.RevisionNotFoundError):
        return f"cannot get {where}: revision not found"
    if isinstance(error, errors.LocalEntryNotFoundError):
        if offline:
            return f"{where} is not in the Hugging Face cache and offline mode is on: unset HF_HUB_OFFLINE, {fallback}"
        return (
            f"cannot download {where} (no connection?) and it is not in the Hugging Face cache: "
            f"retry online, {fallback}"
        )
    if isinstance(error, errors.EntryNotFoundError):
        return f"cannot get {where}: the repo has no such file (expected {CONFIG_NAME} + {WEIGHTS_NAME})"
    return f"cannot get {where}: {_one_line(error)}; {fallback}"


def _read_config(path: Path) -> ModelConfig | None:
    """Our ModelConfig from ``path``, or None when the file is missing or another library's config."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path}: {_one_line(error)}") from None
    if not isinstance(data, dict) or "causal" not in data:
        logger.info("ignoring %s: not a streamvggt model config", path)
        return None
    try:
        return ModelConfig.from_dict(data)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"invalid model config {path}: {_one_line(error)}") from None


def _choose_config(checkpoint: ResolvedCheckpoint, preset: str | ModelConfig | None) -> tuple[ModelConfig, str]:
    """The config to build and a short description of where it came from (see the module docstring)."""
    if isinstance(preset, ModelConfig):
        return ModelConfig.from_dict(preset.to_dict()), "the given ModelConfig"  # a copy: the model owns its config
    if preset is not None:
        if not isinstance(preset, str):
            raise TypeError(f"preset must be a name or a ModelConfig, got {type(preset).__name__}")
        config = ModelConfig.preset(preset)
        known = checkpoint.config
        if known is None or known.causal == config.causal:
            return config, f"preset '{preset}'"
        return dataclasses.replace(config, causal=known.causal), f"preset '{preset}' with causal={known.causal}"
    if checkpoint.config is not None:
        return checkpoint.config, "its own config"
    logger.info("no config known for %s: assuming preset '%s'", checkpoint.label, DEFAULT_PRESET)
    return ModelConfig.preset(DEFAULT_PRESET), f"default preset '{DEFAULT_PRESET}'"


# ------------------------------------------------------------------------------------------------ reading tensors


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a checkpoint file by parameter name: unwrapped from a training checkpoint, prefixes stripped."""
    path = Path(path)
    raw = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    return _strip_prefixes(_unwrap(raw, path), path)


def _read_torch(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return _torch_load(path)
    except Exception as error:  # pickle, zip and OS errors alike: a bad file must not surface as a traceback
        logger.debug("torch.load(%s) failed", path, exc_info=True)
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise CheckpointError(
                f"{path} holds Python objects that only running its code could load ({', '.join(unsafe[:3])}); "
                "streamvggt reads tensors only: ask its maker for the weights as safetensors or a plain state dict"
            ) from None
        raise CheckpointError(
            f"cannot read {path}: not a PyTorch checkpoint, or truncated ({_torch_load_reason(error)})"
        ) from None


def _torch_load_reason(error: BaseException) -> str:
    """The part of a ``torch.load`` error that says what is wrong with the file.

    A file the safe unpickler rejects comes with PyTorch's advice to retry with ``weights_only=False``, which would
    run whatever code a hostile file holds: only the unpickler's own finding is kept.
    """
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        finding = next((line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()), "")
        return f"the safe loader rejected it: {finding}" if finding else "the safe loader rejected it"
    if "weights_only" in text:
        return f"the safe loader rejected it ({type(error).__name__})"
    return _one_line(error)


def _torch_load(path: Path) -> Any:
    """Memory-mapped where the file allows it (zip format), so tensors cast at load never exist twice in memory."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)  # legacy (pre-zip) format


def _unsafe_globals(path: Path) -> list[str]:
    """Names of the classes a zip checkpoint would need to unpickle beyond the allowed ones (without loading it)."""
    allowed = {f"{cls.__module__}.{cls.__qualname__}" for cls in _SAFE_GLOBALS}
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: nothing to report
        return []
    return [name for name in found if name not in allowed]


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except Exception as error:  # safetensors raises its own error types for a bad header
        logger.debug("load_file(%s) failed", path, exc_info=True)
        reason = _one_line(error)
        raise CheckpointError(f"cannot read {path}: not a safetensors file, or truncated ({reason})") from None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _unwrap(obj: Any, path: Path) -> dict[str, Tensor]:
    """The state dict itself, or the one a training checkpoint nests under "model"/"state_dict"/"module"."""
    for _ in range(3):  # a wrapper may itself be wrapped, e.g. {"state_dict": {"model": ...}}
        if _is_state_dict(obj):
            return dict(obj)
        if not isinstance(obj, Mapping):
            break
        key = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        obj = obj[key]
    found = f"keys {list(obj)[:_LISTED]}" if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(
        f"{path} holds no state dict: expected tensors by name, or under one of {list(_WRAPPER_KEYS)}; found {found}"
    )


def _strip_prefixes(state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """Drop the ``module.``/``_orig_mod.`` prefixes that DDP and torch.compile add (no model key starts so)."""
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        key = name.replace("._orig_mod.", ".")  # a compiled submodule
        while key.startswith(_KEY_PREFIXES):
            key = key.split(".", 1)[1]
        if key in out:
            raise CheckpointError(f"{path}: tensor names collide once prefixes are stripped ({name} -> {key})")
        out[key] = tensor
    return out


# ----------------------------------------------------------------------------------------------- checking, building


def build_from_state_dict(
    config: ModelConfig, state: dict[str, Tensor], label: str, *, bf16_trunk: bool = False
) -> StreamVGGT:
    """A CPU model for ``config`` holding exactly ``state`` (checked, floats cast to the model's dtypes).

    The model is built on the meta device and takes the tensors by assignment, so a 1.2B model is never allocated
    twice nor randomly initialised. ``bf16_trunk``: the trunk's Linear layers are made bf16 before loading (for CPU
    bf16, see :func:`streamvggt.runtime.precision.apply_precision`), so their tensors are cast one by one as they
    are assigned.
    """
    with torch.device("meta"):
        model = StreamVGGT(config)
    if bf16_trunk:
        cast_trunk_linears(model, torch.bfloat16)
    expected = model.state_dict()
    _check_names_and_shapes(state, expected, label)
    state = dict(state)  # ours to edit: the caller's mapping stays as given
    _cast_in_place(state, expected, label)
    _check_finite(state, label)
    # The modules' load hooks redo what assignment undoes (buffers not in the state dict, conv weight layouts).
    model.load_state_dict(state, strict=True, assign=True)
    _check_materialised(model)
    return model


def _check_names_and_shapes(state: Mapping[str, Tensor], expected: Mapping[str, Tensor], label: str) -> None:
    missing = [name for name in expected if name not in state]
    unexpected = [name for name in state if name not in expected]
    mismatched = [
        f"{name} {list(state[name].shape)} vs model {list(expected[name].shape)}"
        for name in expected
        if name in state and state[name].shape != expected[name].shape
    ]
    problems = [
        _listing(items, what)
        for items, what in ((missing, "missing"), (unexpected, "unexpected"), (mismatched, "with the wrong shape"))
        if items
    ]
    if problems:
        raise CheckpointError(
            f"checkpoint {label} does not fit the model: {'; '.join(problems)}. "
            "Is it a checkpoint of this architecture? Pass preset= (a name or a ModelConfig) to choose another"
        )


def _listing(items: list[str], what: str) -> str:
    shown = ", ".join(items[:_LISTED])
    more = f", ... ({len(items) - _LISTED} more)" if len(items) > _LISTED else ""
    return f"{len(items)} tensors {what} ({shown}{more})"


def _cast_in_place(state: dict[str, Tensor], expected: Mapping[str, Tensor], label: str) -> None:
    """Cast stored floats (fp16/bf16 releases) to the model's dtypes: assign=True would keep the stored dtype.

    Entries are replaced one by one so that each original can be freed at once: peak memory stays near one copy.
    """
    cast = 0
    for name, tensor in state.items():
        want = expected[name].dtype
        if tensor.dtype != want:
            if not (tensor.is_floating_point() and want.is_floating_point):
                raise CheckpointError(f"checkpoint {label}: tensor {name} is {tensor.dtype}, the model needs {want}")
            state[name] = tensor.to(want)
            cast += 1
    if cast:
        logger.info("cast %d tensors of %s to the model's dtype", cast, label)


def _check_finite(state: Mapping[str, Tensor], label: str) -> None:
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            nans, infs = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
            raise CheckpointError(
                f"checkpoint {label} is corrupt: tensor {name} holds {nans} NaN and {infs} inf values"
            )


def _check_materialised(model: StreamVGGT) -> None:
    """Fail loudly if a module gained a non-persistent buffer that no load hook of its own re-creates."""
    left = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(
            f"tensors left on the meta device after loading: {left}; their module must re-create them in a "
            "load_state_dict post hook"
        )


# ------------------------------------------------------------------------------------------------------- helpers


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    text = text[:200] + "..." if len(text) > 200 else text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# The model's conveniences (StreamVGGT.from_pretrained, model.save_pretrained) are these functions.
conveniences.provide("load", load_model)
conveniences.provide("save", save_pretrained)


def parameter_digest(model: StreamVGGT) -> str:
    """The identity of a model held in memory (no file to point at): a digest of its configuration and of each
    parameter's name, shape, dtype and evenly spaced values."""
    digest = hashlib.sha256(repr(model.config).encode())
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if not isinstance(value, torch.Tensor):  # packed quantised weights: their type and repr
                digest.update(f"{name}:{type(value).__name__}:{value!r}".encode())
                continue
            tensor = value.dequantize() if value.is_quantized else value
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // DIGEST_SAMPLES)].double().cpu().numpy()
            digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
            digest.update(sample.tobytes())
    return digest.hexdigest()[:16]
