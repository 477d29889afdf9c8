"""Writing a protocol's results: per-sequence and averaged metrics as JSON and as a markdown table."""

from __future__ import annotations

import datetime
import json
import math
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamvggt.io.atomic import atomic_output
from streamvggt.io.errors import OutputError

if TYPE_CHECKING:  # the eval command's parser imports this module, and --help must not load torch
    from streamvggt.model.execution import ExecutionPrecision


def write_results(
    outdir: Path,
    name: str,
    per_sequence: dict[str, dict[str, float]],
    summary: dict[str, float],
    meta: dict[str, Any],
    *,
    precision: ExecutionPrecision,
) -> dict[str, Any]:
    """Write ``{outdir}/{name}.json`` and ``{outdir}/{name}.md`` atomically; returns what the JSON holds.

    meta: protocol, dataset, checkpoint, cache, image size and the like; ``machine`` and ``date`` (UTC, ISO 8601)
    are added unless given. precision: what the model ran in (``model.execution``), recorded as ``precision``
    (requested and resolved mode): the same command resolves ``auto`` differently on different machines.
    Non-finite numbers become JSON null (strict JSON has no NaN) and "nan" in the table.
    """
    outdir = prepare_output_dir(outdir)
    full_meta = {
        "machine": f"{platform.node()} ({platform.system()} {platform.machine()})",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **meta,
        "precision": precision.to_json(),
    }
    document = {"meta": full_meta, "summary": summary, "per_sequence": per_sequence}
    _write_text(outdir / f"{name}.json", json.dumps(_strict(document), indent=2) + "\n")
    _write_text(outdir / f"{name}.md", markdown_table(name, per_sequence, summary, full_meta))
    return document


def prepare_output_dir(outdir: str | Path) -> Path:
    """Create the output folder ``outdir`` (parents too) and return it; OutputError with a one-line message when it
    is a file or cannot be created. The commands call it before loading a model, so no compute is spent first."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise OutputError(f"cannot write to {outdir}: it is a file, not a folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the output folder {outdir}: {error.strerror or error}") from error
    return outdir


def markdown_table(
    title: str, per_sequence: dict[str, dict[str, float]], summary: dict[str, float], meta: dict[str, Any]
) -> str:
    """A markdown document: the run's settings, then one row per sequence and a last row with the average."""
    columns = list(summary) or list(dict.fromkeys(k for row in per_sequence.values() for k in row))
    lines = [f"# {title}", ""]
    lines += [f"- {key}: {_setting(value)}" for key, value in meta.items()]
    lines += ["", "| sequence | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for sequence, row in per_sequence.items():
        lines.append(f"| {sequence} | " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    lines.append("| **mean** | " + " | ".join(_cell(summary.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _setting(value: Any) -> str:
    """A setting for the table's header: a mapping as ``key value, key value``."""
    if isinstance(value, dict):
        return ", ".join(f"{key} {item}" for key, item in value.items())
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return "nan" if not math.isfinite(value) else f"{value:.4f}"


def _strict(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def _write_text(path: Path, text: str) -> None:
    try:
        with atomic_output(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error
