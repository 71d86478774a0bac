"""LMDB values on their way from the shard tasks to the driver, through files under ``_build/values``.

A file on the build's own storage costs a write and a read, where returning hundreds of MB through Dask costs a
serialisation and a copy through the network stack on both sides. The driver maps each file and hands LMDB views of
the page cache's own pages (reading the quarter tile's 3.5 GB into a buffer cost a copy of every byte), then
deletes the file.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eoshard.pipeline.errors import ShardWriteError
from eoshard.pipeline.shards.commits import partial_path
from eoshard.pipeline.shards.layout import BUILD_DIR, VALUES_DIR


def spool_dir(out: Path) -> Path:
    """Where shard tasks leave their LMDB values for the driver (see ``spool_values``)."""
    return out / BUILD_DIR / VALUES_DIR


def spool_path(out: Path, shard: int) -> Path:
    return spool_dir(out) / f"shard-{shard:06d}.bin"


def spool_values(out: Path, shard: int, records: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """Write the shard's LMDB values one after another to ``spool_path`` and return the keys and lengths.

    The file is written under a name of its own, then renamed: the driver maps it (``read_spooled``), and a second
    run of the same task (a rerun, or a worker presumed lost that was not) replaces it instead of rewriting the
    pages the driver reads."""
    path = spool_path(out, shard)
    partial = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as f:
            for _, value in records:
                f.write(value)
        partial.replace(path)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise ShardWriteError(
            f"could not write the LMDB values of shard {shard} to {path}: {err}; the shards committed so far stay "
            "valid: fix the cause (e.g. free disk space) and rerun the same build"
        ) from err
    return {"path": str(path), "keys": [key for key, _ in records], "lengths": [len(v) for _, v in records]}


def read_spooled(spool: Mapping[str, Any]) -> list[tuple[str, memoryview]]:
    """The ``(key, value)`` records ``spool_values`` wrote: views of the file mapped read-only, valid while any is
    held (deleting the file meanwhile is safe)."""
    path = Path(spool["path"])
    total = sum(int(n) for n in spool["lengths"])
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size != total:
            raise ShardWriteError(f"{path} holds {size} bytes where {total} were written: rerun the build")
        data = memoryview(_mapped(f.fileno(), total))
    records, start = [], 0
    for key, length in zip(spool["keys"], spool["lengths"], strict=True):
        records.append((str(key), data[start : start + length]))
        start += length
    return records


def release_spooled(spool: Mapping[str, Any]) -> None:
    """Delete the file (its values are committed)."""
    Path(spool["path"]).unlink(missing_ok=True)


def _mapped(fd: int, size: int) -> mmap.mmap | bytes:
    """The file's ``size`` bytes mapped read-only, its pages mapped at once (it was just written, so they are in
    the page cache); unmapped when the last view of it goes."""
    if size == 0:
        return b""  # mmap refuses an empty length
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ)
