"""Reconstructing collections: many inputs, batched streams on one device, shards over processes, resumable.

See :func:`reconstruct_collection` and docs/collections.md.
"""

from streamvggt.collection.manifest import Entry, read_manifest
from streamvggt.collection.runner import CollectionResult, merge_collection, reconstruct_collection
from streamvggt.collection.sharding import Shard, parse_shard
from streamvggt.streaming.slots import BatchedStreams, SlotStream

__all__ = [
    "BatchedStreams",
    "CollectionResult",
    "Entry",
    "Shard",
    "SlotStream",
    "merge_collection",
    "parse_shard",
    "read_manifest",
    "reconstruct_collection",
]
