"""LMDB values on their way from the shard tasks to the driver, through files under ``_build/values``.

A file on the build's own storage costs a write and a read, where returning hundreds of MB through Dask costs a
serialisation and a copy through the network stack on both sides. The driver reads each file into a buffer it
reuses (a new one per shard cost it fresh pages for every byte), then deletes the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eoshard.pipeline.errors import ShardWriteError
from eoshard.pipeline.shards.layout import BUILD_DIR, VALUES_DIR


def spool_dir(out: Path) -> Path:
    """Where shard tasks leave their LMDB values for the driver (see ``spool_values``)."""
    return out / BUILD_DIR / VALUES_DIR


def spool_path(out: Path, shard: int) -> Path:
    return spool_dir(out) / f"shard-{shard:06d}.bin"


def spool_values(out: Path, shard: int, records: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """Write the shard's LMDB values one after another to ``spool_path`` and return the keys and lengths. A file
    left by a killed task is written again by the rerun."""
    path = spool_path(out, shard)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            for _, value in records:
                f.write(value)
    except OSError as err:
        raise ShardWriteError(
            f"could not write the LMDB values of shard {shard} to {path}: {err}; the shards committed so far stay "
            "valid: fix the cause (e.g. free disk space) and rerun the same build"
        ) from err
    return {"path": str(path), "keys": [key for key, _ in records], "lengths": [len(v) for _, v in records]}


class SpoolReader:
    """Reads spooled values into one buffer of its own, reused from shard to shard (one reader per thread)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def read(self, spool: Mapping[str, Any]) -> list[tuple[str, memoryview]]:
        """The ``(key, value)`` records ``spool_values`` wrote (views into the buffer, valid until the next
        ``read``)."""
        path = Path(spool["path"])
        total = sum(int(n) for n in spool["lengths"])
        if len(self._buffer) < total:
            self._buffer = bytearray(total)
        data = memoryview(self._buffer)[:total]
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == total:
                f.readinto(data)
        if size != total:
            raise ShardWriteError(f"{path} holds {size} bytes where {total} were written: rerun the build")
        records, start = [], 0
        for key, length in zip(spool["keys"], spool["lengths"], strict=True):
            records.append((str(key), data[start : start + length]))
            start += length
        return records

    @staticmethod
    def release(spool: Mapping[str, Any]) -> None:
        """Delete the file (its values are committed)."""
        Path(spool["path"]).unlink(missing_ok=True)
