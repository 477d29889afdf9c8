"""The streaming session, its key/value cache container and policies, streaming tracks and batched slots."""
