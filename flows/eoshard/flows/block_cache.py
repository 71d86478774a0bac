"""Whether the workers' block cache holds what the build's sweep reads again.

A worker walks down a stripe of patches; the blocks of the block row it is in are read again by the next shards.
The cache must hold that row: every file of every date and band, across the stripe (plus the columns of the next
stripe's blocks that its last patches reach into). When it does not, blocks are decoded (and fetched) again for
every shard.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from eoshard.pipeline.direct import GroupSource, blocks
from eoshard.pipeline.shards.reads import PatchOrder, ShardSources, stripe_reach

BLOCK_PX = 1024  # the internal blocks of Sentinel-2 COGs (Earth Search, Planetary Computer, CDSE)
CACHE_SHARE_OF_MEMORY = 0.4  # the most of a worker's memory limit that a build raises its block cache to


def stripe_row_bytes(
    sources: ShardSources, grid_width: int, block_px: int = BLOCK_PX, patch_size: int | None = None
) -> int:
    """Decoded bytes of one block row of a stripe: every file of the resolution groups and masks, ``block_px``
    blocks assumed. A file's row is the whole blocks across the stripe and, where stripes follow, the columns that
    the stripe's last patches (``patch_size``, default the lattice step) reach into the next stripe's block: the
    cache holds only those columns of that block (its whole block waits in the machine's store)."""
    order = sources.order
    width = order.width if order is not None and order.width else grid_width
    reach = _reach(order, patch_size, grid_width, block_px)
    total = 0
    for group, factor in _groups(sources):
        files = sum(len(step) for step in group.steps) * len(group.bands)
        whole = min(math.ceil(width / factor / block_px), math.ceil(grid_width / factor / block_px))
        columns = whole * block_px + (math.ceil(reach / factor) + 1 if reach else 0)
        total += files * block_px * columns * np.dtype(group.dtype).itemsize
    return total


def stripe_edge_bytes(sources: ShardSources, block_px: int = BLOCK_PX) -> int:
    """Decoded bytes of the blocks two neighbouring stripes share, down the whole grid: the first block column of
    the next stripe, of every file (0 with a single stripe). They wait in the machine's store from the stripe that
    reaches into them until the next stripe reads them (a bound: where the next stripe decodes a block first, only
    the columns the other reads wait there)."""
    order = sources.order
    height, width = sources.grid.shape
    if order is None or not order.width or width <= order.width:
        return 0
    total = 0
    for group, factor in _groups(sources):
        files = sum(len(step) for step in group.steps) * len(group.bands)
        rows = math.ceil(height / factor / block_px)
        total += files * rows * block_px * block_px * np.dtype(group.dtype).itemsize
    return total


def store_bytes(sources: ShardSources | None, workers: int) -> int:
    """What waits in a machine's store of decoded blocks at once when ``workers`` of the build run there: each
    worker's stripe edge, one more for the edges that wait longer where the workers' runs begin mid-stripe, and a
    quarter more (0 where no stripes meet)."""
    if sources is None:
        return 0
    return math.ceil(1.25 * (workers + 1) * stripe_edge_bytes(sources))


def _groups(sources: ShardSources) -> list[tuple[GroupSource, int]]:
    groups: list[tuple[GroupSource, int]] = [(g, sources.factors[n]) for n, g in sources.groups.items()]
    return groups + [(g, f) for g, f in ((sources.scl, sources.scl_factor), (sources.qa, sources.qa_factor)) if g]


def _reach(order: PatchOrder | None, patch_size: int | None, grid_width: int, block_px: int) -> int:
    """The most pixels a stripe's last patches reach over its right edge (0 with a single stripe), as the sweep
    reckons it (``shards.reads.run_sweep``); a whole block where the patches lie off a lattice."""
    if order is None or not order.width or grid_width <= order.width:
        return 0
    size = patch_size or order.step
    if order.step is None or size is None:
        return block_px
    return max((max(0, stripe_reach(order, edge, size)) for edge in _stripe_edges(order, grid_width)), default=0)


def _stripe_edges(order: PatchOrder | None, grid_width: int) -> list[int]:
    """The columns where one stripe of ``order`` ends and the next begins (none with a single stripe)."""
    if order is None or not order.width:
        return []
    return [e for e in range(order.width - order.offset, grid_width, order.width) if e > 0]


def cache_bytes_for(
    sources: ShardSources | None, grid_width: int, memory_limit: int, patch_size: int | None = None
) -> int:
    """The block cache a build gives each worker (0: the default, ``EOSHARD_BLOCK_CACHE_MB``): a block row of its
    stripes and a quarter more, or over the network that row and the next, read ahead into three quarters of the
    cache; at most ``CACHE_SHARE_OF_MEMORY`` of the workers' ``memory_limit`` (0, none known: the default stays).
    Never below the default, and not raised where ``EOSHARD_BLOCK_CACHE_MB`` is set."""
    if sources is None or blocks.CACHE_BYTES_SET or memory_limit <= 0:
        return 0
    need = stripe_row_bytes(sources, grid_width, patch_size=patch_size)
    wanted = math.ceil(2 * need * 4 / 3) if _reads_remote_files(sources) else math.ceil(need * 1.25)
    given = min(wanted, int(memory_limit * CACHE_SHARE_OF_MEMORY))
    return given if given > blocks.CACHE_BYTES else 0


def smallest_memory_limit(workers: Mapping[str, Mapping[str, Any]]) -> int:
    """The smallest memory limit of the workers of ``scheduler_info()["workers"]`` (0: none has one)."""
    return min((int(w.get("memory_limit") or 0) for w in workers.values() if w.get("memory_limit")), default=0)


def block_cache_note(
    sources: ShardSources | None,
    grid_width: int,
    cache_bytes: int | None = None,
    patch_size: int | None = None,
    raised: int = 0,
) -> str | None:
    """A warning when one block row of a stripe of the build is more than the block cache holds (this process's
    ``EOSHARD_BLOCK_CACHE_MB``, or ``raised``, what the build gives the workers: see ``cache_bytes_for``), a note
    when a build over the network cannot read the next row ahead whole (see ``shards.reads.AHEAD_SHARDS``) or
    when the build raised the cache, else None."""
    if sources is None:
        return None
    cache_bytes = raised or (blocks.CACHE_BYTES if cache_bytes is None else cache_bytes)
    setting = (
        f"for this build, {CACHE_SHARE_OF_MEMORY:.0%} of the workers' memory limit at most; EOSHARD_BLOCK_CACHE_MB "
        "sets it"
        if raised
        else "EOSHARD_BLOCK_CACHE_MB"
    )
    need = stripe_row_bytes(sources, grid_width, patch_size=patch_size)
    if need > cache_bytes:
        suggest = math.ceil(need * 1.25 / 2**30) * 1024
        return (
            f"warning: the block cache holds {cache_bytes / 2**20:.0f} MB per worker ({setting}), less "
            f"than a block row of this build's stripes needs (about {need / 2**20:.0f} MB for its dates and bands, "
            f"{BLOCK_PX} px blocks): source blocks would be decoded and fetched again for every shard. Set "
            f"EOSHARD_BLOCK_CACHE_MB={suggest} where the workers start (the local cluster's workers take it from "
            "this shell) and give them the memory, or build fewer dates or bands at a time"
        )
    # reads ahead (remote files) fill at most three quarters of the cache: the row at hand and the next one
    if _reads_remote_files(sources) and 2 * need > cache_bytes * 3 // 4:
        suggest = math.ceil(2 * need * 4 / 3 / 2**30) * 1024
        return (
            f"note: over the network each worker fetches the next block row of its stripe while it works on this one; "
            f"both rows (about {2 * need / 2**20:.0f} MB) do not fit in three quarters of its block cache "
            f"({cache_bytes / 2**20:.0f} MB, {setting}), so it reads only part of the next row ahead and "
            f"waits for the rest. Set EOSHARD_BLOCK_CACHE_MB={suggest} where the workers start to read it all ahead"
        )
    if raised:
        return (
            f"note: each worker's block cache holds {raised / 2**20:.0f} MB for this build, to keep a block row of "
            f"its stripes (about {need / 2**20:.0f} MB for its dates and bands) decoded once "
            "(EOSHARD_BLOCK_CACHE_MB fixes it)"
        )
    return None


def open_files_for(sources: ShardSources | None, block_px: int = BLOCK_PX) -> int:
    """The files a build's workers keep open (0: the default, ``EOSHARD_MAX_OPEN_FILES``): a quarter more than the
    remote files a block row of its stripes reads, where they outnumber the default (each worker keeps within its
    limit of file descriptors, see ``direct.blocks.use_open_files``). Local files open in a millisecond: not
    raised for them, nor where ``EOSHARD_MAX_OPEN_FILES`` is set."""
    if sources is None or blocks.MAX_OPEN_FILES_SET or not _reads_remote_files(sources):
        return 0
    wanted = _files_wanted(_most_files_in_a_row(sources, block_px))
    return wanted if wanted > blocks.MAX_OPEN_FILES else 0


def _files_wanted(most: int) -> int:
    """The files to keep open for a block row that reads ``most``: a quarter more."""
    return math.ceil(most * 1.25)


def open_files_note(
    sources: ShardSources | None, max_files: int | None = None, block_px: int = BLOCK_PX
) -> str | None:
    """A warning when a block row of a stripe reads more remote files than each worker keeps open (this process's
    ``EOSHARD_MAX_OPEN_FILES``, or what the build raises it to: ``open_files_for``), else None. Past it every file
    is opened again in every block row, and its header fetched again: 264 blocks of 132 remote files read in two
    rows took 660 requests with 8 files open, 528 with all (828 and 696 with GDAL's /vsicurl/ cache at 1 MB instead
    of 16, as when the headers outgrow it). Local files open in a millisecond: no warning."""
    if sources is None or not _reads_remote_files(sources):
        return None
    most = _most_files_in_a_row(sources, block_px)
    if max_files is None:  # what the build's workers keep open (``open_files_for``, bounded on each worker)
        max_files = blocks.open_files_bound(_files_wanted(most))
    if most <= max_files:
        return None
    suggest = math.ceil(most * 1.25 / 64) * 64
    return (
        f"warning: a block row of this build's stripes reads {most} source files, more than each worker keeps open "
        f"({max_files}, EOSHARD_MAX_OPEN_FILES): every file would be opened again in every block row, its header "
        f"fetched again. Set EOSHARD_MAX_OPEN_FILES={suggest} where the workers start (within their `ulimit -n`), "
        "or build fewer dates or bands at a time"
    )


def _most_files_in_a_row(sources: ShardSources, block_px: int) -> int:
    """The most files whose footprints meet one block row of one stripe (rows of ``block_px`` px of the base grid;
    a file of unknown footprint meets every row)."""
    grid = sources.grid
    height, width = grid.shape
    edges = [0, *_stripe_edges(sources.order, width), width]
    everywhere = (-math.inf, -math.inf, math.inf, math.inf)
    bounds = np.array(
        [
            asset.bounds or everywhere
            for group, _ in _groups(sources)
            for step in group.steps
            for product in step
            for asset in product.assets.values()
        ]
    ).reshape(-1, 4)
    t = grid.transform
    xs = sorted(t.c + t.a * np.array(edges))
    most = 0
    for top in range(0, height, block_px):
        y0, y1 = sorted((t.f + t.e * top, t.f + t.e * min(top + block_px, height)))
        row = bounds[(bounds[:, 1] < y1) & (bounds[:, 3] > y0)]
        for x0, x1 in itertools.pairwise(xs):
            most = max(most, int(np.count_nonzero((row[:, 0] < x1) & (row[:, 2] > x0))))
    return most


def _reads_remote_files(sources: ShardSources) -> bool:
    groups = [*sources.groups.values(), *(g for g in (sources.scl, sources.qa, sources.hr) if g is not None)]
    return any(
        blocks.is_remote(asset.href)
        for group in groups
        for step in group.steps[:1]
        for product in step
        for asset in product.assets.values()
    )
