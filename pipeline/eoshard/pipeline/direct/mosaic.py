"""A window of a resolution group, read from the source files and mosaicked in memory."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from eoshard.pipeline.direct.answers import http_answer
from eoshard.pipeline.direct.blocks import (
    CACHE,
    OpenFile,
    block_key,
    is_remote,
    open_file,
    resampling_of,
    source_block,
    warped_chunk,
)
from eoshard.pipeline.direct.sources import AssetSource, GroupSource
from eoshard.pipeline.direct.vsi import forget_remote_file
from eoshard.pipeline.errors import (
    READ_TWICE,
    AssetReadError,
    read_reason,
    shown_href,
    without_query,
    worth_reading_again,
)
from eoshard.pipeline.items import grid_epsg
from eoshard.pipeline.settings import env_count

READ_THREADS = env_count("EOSHARD_READ_THREADS", 8, minimum=1)
_pool = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="eoshard-read")
# reads ahead (``prefetch_group_window``) have threads of their own: a read needed now never queues behind them.
# Twice as many: they mostly wait for the network (remote files only), and a worker far from its object store
# fetches more blocks at once (150 ms a request: the quarter tile's build took 41.1 instead of 43.5 s)
AHEAD_THREADS = env_count("EOSHARD_AHEAD_THREADS", 2 * READ_THREADS, minimum=1)
_ahead = ThreadPoolExecutor(max_workers=AHEAD_THREADS, thread_name_prefix="eoshard-ahead")


@dataclass(frozen=True)
class Sweep:
    """Where a window lies in the build's sweep, in pixels of the group's grid (see ``shards.reads``).

    ``shared``: column ranges that patches of two stripes read; blocks reaching into them are kept in the
    machine's store for the other stripe. ``meetings``: ``(lo, hi, x0, x1)`` where two worker processes' parts of
    the sweep meet within the columns ``x0:x1``: a block there that ends below row ``lo`` and starts above row
    ``hi`` is read by both and kept in the store too. ``done_row``/``done_col``: no later read of the sweep needs a
    block that ends above ``done_row`` and left of ``done_col``; such blocks leave the memory cache first.
    """

    shared: tuple[tuple[float, float], ...] = ()
    done_row: float = -math.inf
    done_col: float = -math.inf
    meetings: tuple[tuple[float, float, float, float], ...] = ()

    def scaled(self, factor: float) -> Sweep:
        """The same sweep on a grid ``factor`` times finer (a fraction for a coarser one)."""
        meetings = tuple((lo * factor, hi * factor, x0 * factor, x1 * factor) for lo, hi, x0, x1 in self.meetings)
        return Sweep(tuple((a * factor, b * factor) for a, b in self.shared), self.done_row * factor,
                     self.done_col * factor, meetings)  # fmt: skip

    def in_reach(self, x0: float, x1: float) -> bool:
        """Whether the columns ``x0:x1`` of the grid lie where a stripe's last patches reach into the next one."""
        return any(a <= x0 and x1 <= b for a, b in self.shared)

    def is_shared(self, y0: float, y1: float, x0: float, x1: float) -> bool:
        """Whether the block over rows ``y0:y1`` and columns ``x0:x1`` of the grid is read by two parts of the sweep."""
        return any(x0 < b and x1 > a for a, b in self.shared) or self.meets(y0, y1, x0, x1)

    def meets(self, y0: float, y1: float, x0: float, x1: float) -> bool:
        """Whether two workers' parts of the sweep both read the block over rows ``y0:y1``, columns ``x0:x1``."""
        return any(y1 > lo and y0 < hi and x1 > mx0 and x0 < mx1 for lo, hi, mx0, mx1 in self.meetings)

    def reach_part(self, x0: float, x1: float) -> tuple[float, float] | None:
        """The columns of ``x0:x1`` (a block's, on the grid) that the last patches of the stripe left of it reach
        into, where the block holds part of one stripe edge's reach; else None."""
        parts = [(max(a, x0), min(b, x1)) for a, b in self.shared if x0 < b and x1 > a]
        return parts[0] if len(parts) == 1 else None


NO_SWEEP = Sweep()


def _offset(handle: OpenFile, grid_transform: Affine, epsg: int) -> tuple[int, int] | None:
    """The file's pixel offset from the grid when it lies on the grid (same CRS, size and phase), else None."""
    t = handle.dataset.transform
    if handle.epsg != epsg:
        return None
    g = grid_transform
    if (t.a, t.b, t.d, t.e) != (g.a, g.b, g.d, g.e):
        return None
    cols, rows = (g.c - t.c) / t.a, (g.f - t.f) / t.e
    if abs(cols - round(cols)) > 1e-6 or abs(rows - round(rows)) > 1e-6:
        return None
    return round(rows), round(cols)


@dataclass(frozen=True)
class BlockPiece:
    """What a window takes of one internal block: the block ``(row, col)``, its pixels ``ya:yb, xa:xb`` of the
    file, where its returned array starts (``y0, x0``: the block's or, for ``cols``, the part's first pixel), whether
    other stripes read it (``shared``), the columns kept in memory (``cols``), the columns the stripe left of it
    reads of a block this window reads whole (``lend``, see ``source_block``) and whether the sweep is ``done``
    with it.
    """

    row: int
    col: int
    ya: int
    yb: int
    xa: int
    xb: int
    y0: int
    x0: int
    shared: bool
    cols: tuple[int, int] | None
    done: bool
    lend: tuple[int, int] | None = None


def block_pieces(
    dataset: Any, offset: tuple[int, int], window: Window, sweep: Sweep = NO_SWEEP
) -> list[BlockPiece]:
    """The internal blocks of a file on the grid (``offset`` from it) that ``window`` of the grid covers, in the
    order they are read."""
    r0, c0 = window.row_off + offset[0], window.col_off + offset[1]
    r1, c1 = r0 + window.height, c0 + window.width
    bh, bw = dataset.block_shapes[0]
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r1, dataset.height), min(c1, dataset.width)
    pieces = []
    for br in range(rs // bh, math.ceil(re / bh) if re > rs else rs // bh):
        # right to left: GDAL's /vsicurl/ takes a read that starts where its last download ended for a sequential
        # read and fetches twice as much, the next block too (often not needed, or gone before it is)
        for bc in reversed(range(cs // bw, math.ceil(ce / bw) if ce > cs else cs // bw)):
            y0, x0 = br * bh, bc * bw
            # the block's extent on the grid
            gy0, gy1 = y0 - offset[0], min(y0 + bh, dataset.height) - offset[0]
            gx0, gx1 = x0 - offset[1], min(x0 + bw, dataset.width) - offset[1]
            shared = sweep.is_shared(gy0, gy1, gx0, gx1)
            ya, yb = max(rs, y0), min(re, y0 + bh, dataset.height)
            xa, xb = max(cs, x0), min(ce, x0 + bw, dataset.width)
            # the columns of the block that the last patches of the stripe left of it reach into, if any
            part = sweep.reach_part(gx0, gx1)
            lent = None
            if part is not None:
                lent = (max(math.floor(part[0]) - gx0, 0), min(math.ceil(part[1]) - gx0, gx1 - gx0))
            # only the columns the last patches reach over the stripe's edge, of a block the next stripe reads:
            # memory holds those, not the whole block, while the stripe goes down (the block itself waits in the
            # store, or the next stripe, having decoded it first, stored these columns)
            reach = sweep.in_reach(xa - offset[1], xb - offset[1]) and xb - xa < gx1 - gx0
            cols = None
            if reach:
                own = (xa - x0, xb - x0)
                # the whole reach when it holds this window's columns: the part the next stripe may have stored
                cols = lent if lent is not None and lent[0] <= own[0] and own[1] <= lent[1] else own
            # a block this window reads whole, which the stripe left of it reaches into: when this read decodes
            # it, the store keeps only those columns (none where two workers' runs meet: both read it whole)
            lend = None
            if cols is None and lent is not None and lent[1] - lent[0] < gx1 - gx0:
                lend = None if sweep.meets(gy0, gy1, gx0, gx1) else lent
            # a shared block may leave memory once above the next patch row: it waits whole in the store (a lent
            # one not: its part is there, and the patches right of this window in the row read it whole)
            done = gy1 <= sweep.done_row and (gx1 <= sweep.done_col or (shared and lend is None))
            start = x0 if cols is None else x0 + cols[0]
            pieces.append(BlockPiece(br, bc, ya, yb, xa, xb, y0, start, shared, cols, done, lend))
    return pieces


def _aligned(
    href: str,
    dataset: Any,
    offset: tuple[int, int],
    window: Window,
    fill: float,
    dtype: str,
    sweep: Sweep = NO_SWEEP,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The window of a file on the grid: its internal blocks pasted, nodata and the outside set to ``fill`` (into
    ``out`` when given)."""
    r0, c0 = window.row_off + offset[0], window.col_off + offset[1]
    r1, c1 = r0 + window.height, c0 + window.width
    inside = (max(r0, 0), max(c0, 0), min(r1, dataset.height), min(c1, dataset.width)) == (r0, c0, r1, c1)
    if out is None:
        out = np.empty((window.height, window.width), dtype=dtype)
    if not inside:  # the blocks do not paste over every pixel of the window
        out[...] = fill
    done = []
    for p in block_pieces(dataset, offset, window, sweep):
        block = source_block(href, p.row, p.col, shared=p.shared, cols=p.cols, lend=p.lend)
        out[p.ya - r0 : p.yb - r0, p.xa - c0 : p.xb - c0] = block[
            p.ya - p.y0 : p.yb - p.y0, p.xa - p.x0 : p.xb - p.x0
        ]
        if p.done:
            done.append(block_key(href, p.row, p.col, p.cols))
    if done:
        CACHE.retire(done)
    nodata = dataset.nodata
    if nodata is not None and not (np.isnan(nodata) and np.isnan(fill)) and nodata != fill:
        out[np.isnan(out) if np.isnan(nodata) else out == nodata] = fill
    return out


def _warped(href: str, source: GroupSource, window: Window, out: np.ndarray | None = None) -> np.ndarray:
    """The window of a file warped onto the grid, assembled from stackstac's chunks (same values bit for bit),
    into ``out`` when given."""
    grid = source.grid
    height, width = grid.shape
    t = grid.transform
    epsg = grid_epsg(grid)
    params = {"crs": epsg, "transform": t, "height": height, "width": width,
              "resampling": resampling_of(source.resampling)}  # fmt: skip
    grid_key = (epsg, tuple(t)[:6], height, width, source.resampling)
    size = source.chunksize
    if out is None:
        out = np.empty((window.height, window.width), dtype=source.dtype)
    r0, c0 = window.row_off, window.col_off
    r1, c1 = r0 + window.height, c0 + window.width
    for cr in range(r0 // size, math.ceil(r1 / size)):
        for cc in range(c0 // size, math.ceil(c1 / size)):
            chunk_window = Window(
                cc * size, cr * size, min(size, width - cc * size), min(size, height - cr * size)
            )
            chunk = warped_chunk(href, grid_key, params, chunk_window, source.dtype, source.nodata)
            y0, x0 = cr * size, cc * size
            ya, yb = max(r0, y0), min(r1, y0 + chunk.shape[0])
            xa, xb = max(c0, x0), min(c1, x0 + chunk.shape[1])
            out[ya - r0 : yb - r0, xa - c0 : xb - c0] = chunk[ya - y0 : yb - y0, xa - x0 : xb - x0]
    return out


def _overlaps(asset: AssetSource, source: GroupSource, window: Window) -> bool:
    if asset.bounds is None:
        return True
    t = source.grid.transform
    pad = abs(t.a)  # one pixel of slack: a footprint rounded in the metadata must not hide real pixels
    x0, x1 = t.c + window.col_off * t.a, t.c + (window.col_off + window.width) * t.a
    y1, y0 = t.f + window.row_off * t.e, t.f + (window.row_off + window.height) * t.e
    bx0, by0, bx1, by1 = asset.bounds
    return bx0 - pad < x1 and bx1 + pad > x0 and by0 - pad < y1 and by1 + pad > y0


def read_asset_window(
    source: GroupSource, asset: AssetSource, window: Window, sweep: Sweep = NO_SWEEP, out: np.ndarray | None = None
) -> np.ndarray | None:
    """One file's pixels in ``window`` of the group grid (fill outside it), or None when it does not reach there.
    ``out``: where to put them (untouched when None is returned)."""
    if not _overlaps(asset, source, window):
        return None
    try:
        return _read_window(source, asset, window, sweep, out)
    except AssetReadError:
        raise
    except Exception as err:
        reason = read_reason(err)
    answer = http_answer(asset.href, reason)
    if not answer and is_remote(asset.href) and worth_reading_again(reason):
        # a transfer cut short, or a file GDAL remembers missing, from a server that answers now: asked for once
        # more, through a new handle (the failed one is let go: see ``blocks._reading``); GDAL asks again only
        # after busy answers and timeouts
        forget_remote_file(asset.href)  # GDAL keeps the short range it got, and that the file was missing
        try:
            return _read_window(source, asset, window, sweep, out)
        except AssetReadError:
            raise
        except Exception as err:
            reason = f"{read_reason(err)} {READ_TWICE}"
        answer = http_answer(asset.href, reason)
    reason += answer
    # raised outside the handler, with no cause or context: rasterio's chained GDAL errors cannot be rebuilt in the
    # driver (Dask would send a bare Exception instead of this one); the deepest one's message, GDAL's reason, is
    # in this one's
    raise AssetReadError(f"could not read {shown_href(asset.href)}: {without_query(reason, asset.href)}")


def _read_window(
    source: GroupSource, asset: AssetSource, window: Window, sweep: Sweep, out: np.ndarray | None
) -> np.ndarray:
    handle = open_file(asset.href)
    offset = _offset(handle, source.grid.transform, grid_epsg(source.grid))
    if offset is None:
        return _warped(asset.href, source, window, out)
    return _aligned(asset.href, handle.dataset, offset, window, source.nodata, source.dtype, sweep, out)


def read_group_window(source: GroupSource, rows: slice, cols: slice, sweep: Sweep = NO_SWEEP) -> np.ndarray:
    """``(time, band, h, w)`` pixels of the group in ``rows``/``cols`` of its grid, mosaicked (last product on top).

    The files are read concurrently (a thread pool per process), each block decoded once while it stays cached;
    ``sweep`` says which blocks other stripes read too and which the build will not read again.
    """
    window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
    fill = np.dtype(source.dtype).type(source.nodata)
    nan = bool(np.isnan(source.nodata))
    shape = (len(source.steps), len(source.bands), window.height, window.width)
    # a NaN fill keeps its own bits where a file has NaN: those windows are filled first and always masked
    out = np.full(shape, fill, dtype=source.dtype) if nan else np.empty(shape, dtype=source.dtype)
    # a date's first product writes straight into the result (most dates have one); the others go on top
    jobs = {
        (t, p, b): _pool.submit(
            read_asset_window, source, product.assets[band], window, sweep, None if nan or p else out[t, b]
        )
        for t, step in enumerate(source.steps)
        for p, product in enumerate(step)
        for b, band in enumerate(source.bands)
    }
    written = np.zeros(shape[:2], dtype=bool)
    for (t, p, b), job in jobs.items():  # in mosaic order: a later product's valid pixels overwrite
        data = job.result()
        if data is None:
            continue
        if nan or written[t, b]:
            np.copyto(out[t, b], data, where=~np.isnan(data) if nan else data != fill)
        elif p:  # the first file that reaches the window: its window as it is (fill where it has no data)
            out[t, b] = data
        written[t, b] = True
    if not nan:
        out[~written] = fill
    return out


def prefetch_group_window(source: GroupSource, rows: slice, cols: slice, sweep: Sweep = NO_SWEEP) -> None:
    """Start fetching, in the background, the blocks of remote files that ``read_group_window`` with the same
    arguments will read, into the memory cache (and the store, as that read would): called for the shards a worker
    runs next, so that a block row that comes over the network arrives while the worker still computes. Files
    that need warping, and local files, are left to the read itself.

    The files are taken last first: the reads take them in mosaic order, so on a cold worker, whose reads and
    reads ahead want the same block row, the two pools fetch from both ends of it instead of one waiting for the
    other's blocks (``blocks._one_reader``)."""
    window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
    assets = [product.assets[band] for step in source.steps for product in step for band in source.bands]
    for asset in reversed(assets):
        if is_remote(asset.href) and _overlaps(asset, source, window):
            _ahead.submit(_fetch_ahead, source, asset.href, window, sweep)


def _fetch_ahead(source: GroupSource, href: str, window: Window, sweep: Sweep) -> None:
    try:
        handle = open_file(href)
        dataset = handle.dataset
        offset = _offset(handle, source.grid.transform, grid_epsg(source.grid))
        if offset is None:
            return
        bh, bw = dataset.block_shapes[0]
        block_bytes = bh * bw * np.dtype(dataset.dtypes[0]).itemsize
        for p in block_pieces(dataset, offset, window, sweep):
            if not CACHE.has_room(block_bytes):  # the blocks at hand come first: the read fetches the rest
                return
            source_block(href, p.row, p.col, shared=p.shared, cols=p.cols, lend=p.lend)
    except Exception:  # the read itself says it: it meets the error again (the failed handle is let go), or, the
        return  # server having not answered, is told of it at once (``blocks._unanswered_meanwhile``)
