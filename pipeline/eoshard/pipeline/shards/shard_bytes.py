"""A whole Zarr v3 shard encoded in one pass, byte for byte what zarr writes for it.

zarr encodes a shard chunk by chunk through its asyncio codec pipeline, a thread hand-off per chunk: on the tile
benchmark that cost 0.29 CPU s per shard where the zstd work is 0.1. A build writes whole shards of arrays whose
layout it made itself (``create_store``: one sample per chunk, ``bytes`` then ``zstd`` inside, an index with a
CRC-32C at the end), so it encodes them by the sharding spec directly: each chunk's little-endian bytes through
numcodecs' Zstd (what zarr's ``ZstdCodec`` calls), the chunks one after another in order, then the index of
``(offset, nbytes)`` pairs (``2**64 - 1`` for chunks past the array's end) and its CRC-32C. Arrays laid out in any
other way are written by zarr. ``tests/pipeline/shards/test_shard_bytes.py`` holds the bytes to zarr's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import google_crc32c
import numcodecs
import numpy as np
import zarr

_EMPTY = np.iinfo(np.uint64).max  # the index entry of a chunk the shard does not hold


def one_pass_level(array: zarr.Array) -> int | None:
    """The zstd level of ``array``'s chunks when its shards hold one sample per chunk in the layout above, else
    None (write it with zarr)."""
    codecs: Any = json.loads(json.dumps(array.metadata.to_dict().get("codecs", [])))
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed" or array.shards is None:
        return None
    config = codecs[0]["configuration"]
    inner = config.get("codecs", [])
    if (
        config.get("chunk_shape") != [1, *array.shape[1:]]
        or array.shards[1:] != array.shape[1:]
        or config.get("index_location") != "end"
        or [c.get("name") for c in config.get("index_codecs", [])] != ["bytes", "crc32c"]
        or not _little(config["index_codecs"][0])
        or [c.get("name") for c in inner] != ["bytes", "zstd"]
        or not _little(inner[0])
        or inner[1].get("configuration", {}).get("checksum") is not False
    ):
        return None
    return int(inner[1]["configuration"]["level"])


def _little(codec: dict[str, Any]) -> bool:
    """A ``bytes`` codec that writes little-endian (one-byte types carry no endian)."""
    return codec.get("configuration", {}).get("endian", "little") == "little"


def shard_pieces(chunks: Sequence[np.ndarray], per_shard: int, level: int, dtype: Any) -> list[bytes]:
    """The bytes of a shard of ``per_shard`` chunks whose first ``len(chunks)`` are given (the others lie past the
    array's end), each chunk one sample of ``dtype``: in pieces, in order, to be written one after another (a joined
    copy of each shard cost fresh pages for every byte)."""
    zstd = numcodecs.Zstd(level=level)
    little = np.dtype(dtype).newbyteorder("<")
    index = np.full((per_shard, 2), _EMPTY, dtype="<u8")
    parts: list[bytes] = []
    start = 0
    for i, chunk in enumerate(chunks):
        raw = np.ascontiguousarray(chunk, dtype=little).reshape(-1).view(np.uint8)
        encoded = zstd.encode(raw)
        parts.append(encoded)
        index[i] = (start, len(encoded))
        start += len(encoded)
    index_bytes = index.tobytes()
    parts += [index_bytes, google_crc32c.value(index_bytes).to_bytes(4, "little")]
    return parts
