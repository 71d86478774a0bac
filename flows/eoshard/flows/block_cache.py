"""Whether the workers' block cache holds what the build's sweep reads again.

A worker walks down a stripe of patches; the blocks of the block row it is in are read again by the next shards.
The cache must hold that row: every file of every date and band, across the stripe (plus the block that the
stripe's last patches reach into). When it does not, blocks are decoded (and fetched) again for every shard.
"""

from __future__ import annotations

import math

import numpy as np

from eoshard.pipeline.direct import GroupSource, blocks
from eoshard.pipeline.shards.reads import ShardSources

BLOCK_PX = 1024  # the internal blocks of Sentinel-2 COGs (Earth Search, Planetary Computer, CDSE)


def stripe_row_bytes(sources: ShardSources, grid_width: int, block_px: int = BLOCK_PX) -> int:
    """Decoded bytes of one block row of a stripe: every file of the resolution groups and masks, ``block_px``
    blocks assumed."""
    width = sources.order.width if sources.order is not None and sources.order.width else grid_width
    groups: list[tuple[GroupSource, int]] = [(g, sources.factors[n]) for n, g in sources.groups.items()]
    groups += [(g, f) for g, f in ((sources.scl, sources.scl_factor), (sources.qa, sources.qa_factor)) if g]
    total = 0
    for group, factor in groups:
        files = sum(len(step) for step in group.steps) * len(group.bands)
        per_file = min(math.ceil(width / factor / block_px) + 1, math.ceil(grid_width / factor / block_px))
        total += files * per_file * block_px * block_px * np.dtype(group.dtype).itemsize
    return total


def block_cache_note(sources: ShardSources | None, grid_width: int, cache_bytes: int | None = None) -> str | None:
    """A warning when one block row of a stripe of the build is more than the block cache holds (this process's
    ``EOSHARD_BLOCK_CACHE_MB``), else None."""
    if sources is None:
        return None
    cache_bytes = blocks.CACHE_BYTES if cache_bytes is None else cache_bytes
    need = stripe_row_bytes(sources, grid_width)
    if need <= cache_bytes:
        return None
    suggest = math.ceil(need * 1.25 / 2**30) * 1024
    return (
        f"warning: the block cache holds {cache_bytes / 2**20:.0f} MB per worker (EOSHARD_BLOCK_CACHE_MB), less "
        f"than a block row of this build's stripes needs (about {need / 2**20:.0f} MB for its dates and bands, "
        f"{BLOCK_PX} px blocks): source blocks would be decoded and fetched again for every shard. Set "
        f"EOSHARD_BLOCK_CACHE_MB={suggest} where the workers start (the local cluster's workers take it from this "
        "shell), or build fewer dates or bands at a time"
    )
