"""Shard writers: Zarr v3 (sharded) and LMDB + safetensors, described by ``docs/format.md``."""
