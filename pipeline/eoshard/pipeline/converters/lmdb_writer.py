"""Converters' LMDB output, through the shards' ``LmdbWriter``: groups in turn, sorted patches, 512 puts per
transaction, never overwriting a key.

This order and these transactions are rico-hdl's, so the same input gives the same ``data.mdb`` pages (apart from
the map size LMDB records in its meta pages, which here is sized to the data instead of reserving a terabyte).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from eoshard.pipeline.converters.datasets import SourceGroup
from eoshard.pipeline.converters.errors import ConversionError
from eoshard.pipeline.shards.lmdb_store import LmdbWriter

PUTS_PER_TRANSACTION = 512

# (group, patches) -> encoded (key, value) in the same order; may read in parallel
Encoder = Callable[[SourceGroup, Sequence[Path]], Iterator[tuple[str, bytes]]]


def _chunks(paths: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def write_lmdb(
    target: Path,
    groups: Sequence[tuple[SourceGroup, Sequence[Path]]],
    encode: Encoder,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write every group's patches into one environment at ``target``; returns the number of samples."""
    written = 0
    with LmdbWriter(target) as writer:
        for group, patches in groups:
            for chunk in _chunks(patches, PUTS_PER_TRANSACTION):
                records = list(encode(group, chunk))
                present = writer.put_new(records)
                if present is not None:
                    raise ConversionError(
                        f"key {records[present][0]} (from {chunk[present]}) is already in {target}: two patches share a name, "
                        "or the target holds an earlier conversion; use an empty target folder"
                    )
                written += len(records)
                if on_progress is not None:
                    on_progress(len(records))
    return written
