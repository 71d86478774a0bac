"""The one LMDB writer (builds and converters): one writer per environment, keys never overwritten.

Its map grows between transactions to fit what comes (used pages + twice the incoming bytes + 1 MiB), so an
environment never reserves terabytes and the same puts give the same pages.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import lmdb

from eoshard.pipeline.errors import ShardWriteError, full_disk_note
from eoshard.pipeline.shards.direct_io import BYPASS

_MIN_MAP_SIZE = 16 * 2**20
_SLACK = 2**20
_DROP_COMMITTED = BYPASS and hasattr(os, "posix_fadvise")  # EOSHARD_DIRECT_WRITES=0 keeps them
_MAX_MAP_SIZE = 2**40  # 1 TiB: far beyond any one part, far below "reserve 100 TiB"


def part_name(index: int) -> str:
    return f"part-{index:02d}"


class _KeyPresentError(Exception):
    def __init__(self, position: int) -> None:
        self.position = position


class LmdbWriter:
    """Puts ``key -> bytes`` into one environment, one transaction per call, growing the map to fit."""

    def __init__(self, path: Path, map_size: int = _MIN_MAP_SIZE) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
            self.env = lmdb.open(str(path), map_size=map_size, subdir=True, lock=True)
        except (OSError, lmdb.Error) as err:
            raise ShardWriteError(f"could not open LMDB {path}: {err}") from err
        self.path = path
        self._new = 0
        self._data = os.open(path / "data.mdb", os.O_RDONLY) if _DROP_COMMITTED else None

    def put_many(self, items: Iterable[tuple[str, bytes | memoryview]]) -> int:
        """Write the items in one transaction; keys already present are kept. Returns how many were new."""
        batch = list(items)
        self._write(batch, strict=False)
        return self._new

    def put_new(self, items: Iterable[tuple[str, bytes]]) -> int | None:
        """Write the items in one transaction unless a key is already there: then write none of them and
        return the position of the first such item (None when all were written)."""
        return self._write(list(items), strict=True)

    def _write(self, batch: list[tuple[str, bytes | memoryview]], *, strict: bool) -> int | None:
        incoming = sum(len(k) + len(v) for k, v in batch)
        self._ensure_room(incoming)
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    self._new = 0
                    for i, (key, value) in enumerate(batch):
                        if txn.put(key.encode(), value, overwrite=False):
                            self._new += 1
                        elif strict:
                            raise _KeyPresentError(i)
                self._drop_committed()
                return None
            except _KeyPresentError as present:  # the transaction is aborted
                return present.position
            except lmdb.MapFullError:  # more page overhead than foreseen: double and retry
                self._grow(self.env.info()["map_size"] * 2)
            except lmdb.Error as err:
                raise ShardWriteError(
                    f"could not write to LMDB {self.path}: {err}{full_disk_note(self.path, incoming + _SLACK)}; "
                    "what was committed before stays valid, fix the cause (e.g. free disk space) and rerun the "
                    "same build"
                ) from err

    def _ensure_room(self, incoming: int) -> None:
        info = self.env.info()
        used = (info["last_pgno"] + 1) * self.env.stat()["psize"]
        needed = used + 2 * incoming + _SLACK
        if needed > info["map_size"]:
            self._grow(needed)

    def _grow(self, size: int) -> None:
        if size > _MAX_MAP_SIZE:
            raise ShardWriteError(f"LMDB {self.path} would need more than 1 TiB: split it into more parts")
        self.env.set_mapsize(size)

    def _drop_committed(self) -> None:
        """Let the page cache drop the pages this environment's commits wrote (LMDB synced them to the disk):
        the next commit's writes then take freed pages, where new page-cache pages cost the kernel about 2.8 CPU s
        per GB on the development VM (see design record 0012). Pages LMDB's map holds (its B-tree) stay."""
        if self._data is not None:
            os.posix_fadvise(self._data, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        self.env.close()
        if self._data is not None:
            os.close(self._data)
            self._data = None

    def __enter__(self) -> LmdbWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
