"""``streamvggt reconstruct-many``: the collection run (or its ``--merge`` step) and the lines it prints."""

from __future__ import annotations

import os
from typing import Any

from streamvggt.collection.runner import CollectionResult, merge_collection, reconstruct_collection
from streamvggt.collection.sharding import parse_shard
from streamvggt.collection.summary import FAILED, MISSING, SUMMARY_FILE
from streamvggt.pipeline.options import ReconstructOptions


def run_collection_command(
    manifest: str | os.PathLike,
    output_root: str | os.PathLike,
    options: ReconstructOptions,
    *,
    batch_size: int = 1,
    shard: str | None = None,
    merge_only: bool = False,
    force: bool = False,
) -> CollectionResult | dict[str, Any]:
    """Run this process's share (``shard``: "I/N", or None for all) or, with ``merge_only``, only merge the
    shards' records; the model is ``options.model.checkpoint``. ``force``: redo complete inputs too."""
    if merge_only:
        return merge_collection(manifest, output_root)
    share = parse_shard(shard) if shard else None
    return reconstruct_collection(
        manifest, output_root, batch_size=batch_size, shard=share, options=options, force=force
    )


def succeeded(result: CollectionResult | dict[str, Any]) -> bool:
    """False when an input failed (or, in a merged summary, is missing): the command then exits with 1."""
    if isinstance(result, CollectionResult):
        return result.succeeded
    return result["counts"][FAILED] == 0 and result["counts"][MISSING] == 0


def describe(result: CollectionResult | dict[str, Any]) -> str:
    """Counts, throughput and the failed inputs with their reasons (the first few)."""
    if isinstance(result, dict):
        return _describe_summary(result)
    counts = {status: sum(r.status == status for r in result.records) for status in ("done", "skipped", "failed")}
    lines = [
        f"shard {result.shard}: {counts['done']} reconstructed, {counts['skipped']} complete already, "
        f"{counts['failed']} failed in {result.seconds:.1f} s"
        + (f" ({result.stream_frames / result.seconds:.2f} frames/s)" if result.stream_frames else "")
    ]
    if result.summary is None:
        lines += _failures([(r.name, r.error or "") for r in result.failed])
    else:  # the collection's failures include this share's
        lines.append(_describe_summary(result.summary))
    return "\n".join(lines)


def _describe_summary(summary: dict[str, Any]) -> str:
    counts = summary["counts"]
    lines = [
        f"collection: {counts['done']} done, {counts[FAILED]} failed, {counts[MISSING]} missing "
        f"(per input: {SUMMARY_FILE} in the output root)"
    ]
    lines += _failures([(r["name"], r["error"] or "") for r in summary["inputs"] if r["status"] == FAILED])
    return "\n".join(lines)


def _failures(failed: list[tuple[str, str]], shown: int = 5) -> list[str]:
    lines = [f"failed: {name}: {reason}" for name, reason in failed[:shown]]
    if len(failed) > shown:
        lines.append(f"... and {len(failed) - shown} more failed")
    return lines
