"""The one LMDB writer: groups in turn, sorted patches, 512 puts per transaction, never overwriting a key.

This order and these transactions are rico-hdl's, so the same input gives the same ``data.mdb`` pages (apart from
the map size LMDB records in its meta pages, which here is sized to the data instead of reserving a terabyte).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import lmdb

from eoshard.pipeline.converters.datasets import SourceGroup
from eoshard.pipeline.converters.errors import ConversionError

PUTS_PER_TRANSACTION = 512
_MIN_MAP_SIZE = 16 * 2**20

# (group, patches) -> encoded (key, value) in the same order; may read in parallel
Encoder = Callable[[SourceGroup, Sequence[Path]], Iterator[tuple[str, bytes]]]


def _chunks(paths: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def _ensure_room(env: lmdb.Environment, incoming: int) -> None:
    """Grow the map (between transactions) so the next one fits, with room for page overhead."""
    info = env.info()
    used = (info["last_pgno"] + 1) * env.stat()["psize"]
    needed = used + 2 * incoming + _MIN_MAP_SIZE
    if needed > info["map_size"]:
        env.set_mapsize(needed)


def write_lmdb(
    target: Path,
    groups: Sequence[tuple[SourceGroup, Sequence[Path]]],
    encode: Encoder,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write every group's patches into one environment at ``target``; returns the number of samples."""
    target.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(target), map_size=_MIN_MAP_SIZE, subdir=True)
    written = 0
    try:
        for group, patches in groups:
            for chunk in _chunks(patches, PUTS_PER_TRANSACTION):
                records = list(encode(group, chunk))
                _ensure_room(env, sum(len(k) + len(v) for k, v in records))
                with env.begin(write=True) as txn:
                    for (key, value), patch in zip(records, chunk, strict=True):
                        if not txn.put(key.encode(), value, overwrite=False):
                            raise ConversionError(
                                f"key {key} (from {patch}) is already in {target}: two patches share a name, "
                                "or the target holds an earlier conversion; use an empty target folder"
                            )
                written += len(records)
                if on_progress is not None:
                    on_progress(len(records))
    finally:
        env.close()
    return written
