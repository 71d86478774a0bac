"""LMDB + safetensors shards: one writer per environment, keys never overwritten."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import lmdb

from eoshard.pipeline.errors import ShardWriteError

_INITIAL_MAP_SIZE = 64 * 2**20
_MAX_MAP_SIZE = 2**40  # 1 TiB: far beyond any one part, far below "reserve 100 TiB"


def part_name(index: int) -> str:
    return f"part-{index:02d}"


class LmdbWriter:
    """Puts ``key -> bytes`` into one environment, doubling the map when full (never reserving terabytes)."""

    def __init__(self, path: Path, map_size: int = _INITIAL_MAP_SIZE) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
            self.env = lmdb.open(str(path), map_size=map_size, subdir=True, lock=True)
        except (OSError, lmdb.Error) as err:
            raise ShardWriteError(f"could not open LMDB {path}: {err}") from err
        self.path = path

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> int:
        """Write the items in one transaction; keys already present are kept. Returns how many were new."""
        batch = list(items)
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    return sum(txn.put(k.encode(), v, overwrite=False) for k, v in batch)
            except lmdb.MapFullError:
                size = self.env.info()["map_size"] * 2
                if size > _MAX_MAP_SIZE:
                    raise ShardWriteError(f"LMDB {self.path} would need more than 1 TiB: split it") from None
                self.env.set_mapsize(size)
            except lmdb.Error as err:
                raise ShardWriteError(
                    f"could not write to LMDB {self.path}: {err}; what was committed before stays valid, "
                    "fix the cause (e.g. free disk space) and rerun the same build"
                ) from err

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> LmdbWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
