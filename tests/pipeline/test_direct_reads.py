"""Direct reads (what the build's shard tasks read) against the lazy cube and against plain rasterio reads."""

from __future__ import annotations

import math
import tempfile
from typing import Any

import numpy as np
import pystac
import rasterio
from rasterio.windows import Window

from eoshard.flows.aoi import read_aoi
from eoshard.pipeline.cube import band_groups, open_band_group, stackstac_ready
from eoshard.pipeline.direct import group_source, read_group_window
from eoshard.pipeline.direct.blocks import CACHE, close_files
from eoshard.pipeline.grid import grid_for_area

BANDS = ["B02", "B08", "B11", "SCL"]


def _demo(demo_data: Any) -> tuple[list[dict[str, Any]], Any]:
    items = [
        stackstac_ready(i) for i in pystac.Catalog.from_file(str(demo_data.catalog)).get_items(recursive=True)
    ]
    area, crs = read_aoi(demo_data.aoi)
    return items, grid_for_area(area, crs, resolution=10)


def test_windows_equal_the_lazy_cube_in_both_utm_zones(demo_data: Any) -> None:
    """The demo's products lie in UTM 32 and 33: the grid's zone is read block by block, the other warped."""
    items, grid = _demo(demo_data)
    close_files()
    rng = np.random.default_rng(3)
    for name, (res, bands) in band_groups(items, BANDS, grid).items():
        f = round(res / 10)
        sub = grid if f == 1 else grid.zoom_out(f)
        dtype = "uint8" if bands == ["SCL"] else "uint16"
        chunk = max(64, int(256 / f))
        cube = open_band_group(items, sub, bands, chunksize=chunk, dtype=dtype).compute(scheduler="synchronous")
        source = group_source(items, sub, bands, chunksize=chunk, dtype=dtype)
        assert len(source.steps) == cube.sizes["time"] and source.bands == tuple(bands), name
        ny, nx = sub.shape
        windows = [(0, ny, 0, nx)] + [
            (int(r), int(r) + int(h), int(c), int(c) + int(w))
            for r, c, h, w in zip(rng.integers(0, ny - 40, 6), rng.integers(0, nx - 40, 6),
                                  rng.integers(1, 40, 6), rng.integers(1, 40, 6), strict=True)
        ]  # fmt: skip
        for r0, r1, c0, c1 in windows:
            got = read_group_window(source, slice(r0, r1), slice(c0, c1))
            np.testing.assert_array_equal(got, cube.values[:, :, r0:r1, c0:c1], err_msg=f"{name} {r0, r1, c0, c1}")
        assert (cube.values != 0).mean() > 0.5  # the windows hold real pixels, not only fill


def test_a_product_on_the_grid_gives_its_own_pixels_and_each_block_is_decoded_once(demo_data: Any) -> None:
    items, grid = _demo(demo_data)
    epsg = grid.crs.epsg
    item = next(i for i in items if i["properties"]["proj:epsg"] == epsg)
    source = group_source([item], grid, ["B04"], chunksize=256)
    close_files()
    got = read_group_window(source, slice(10, 300), slice(20, 410))[0, 0]
    href = item["assets"]["B04"]["href"]
    with rasterio.open(href) as src:
        col, row = ~src.transform * (grid.transform.c, grid.transform.f)
        window = Window(round(col) + 20, round(row) + 10, 390, 290)
        expected = src.read(1, window=window, boundless=True, fill_value=0)
    np.testing.assert_array_equal(got, expected)
    misses = CACHE.misses
    again = read_group_window(source, slice(10, 300), slice(20, 410))
    assert CACHE.misses == misses  # served from the decoded blocks, nothing read again
    np.testing.assert_array_equal(again[0, 0], expected)


def test_blocks_are_decoded_into_arrays_the_cache_let_go_and_overwritten_whole(demo_data: Any) -> None:
    """Spare arrays filled with another value lent to the decoder: the window still equals rasterio's read."""
    from eoshard.pipeline.direct import blocks

    items, grid = _demo(demo_data)
    item = next(i for i in items if i["properties"]["proj:epsg"] == grid.crs.epsg)
    href = item["assets"]["B04"]["href"]
    close_files()
    with rasterio.open(href) as src:
        (bh, bw), dtype = src.block_shapes[0], src.dtypes[0]
        col, row = ~src.transform * (grid.transform.c, grid.transform.f)
        expected = src.read(1, window=Window(round(col) + 20, round(row) + 10, 390, 290), boundless=True)
    for _ in range(8):
        spare = np.full((bh, bw), 12345, dtype=dtype)
        blocks.SPARE.give(spare)
    del spare
    assert blocks.SPARE._bytes == 8 * bh * bw * np.dtype(dtype).itemsize
    got = read_group_window(group_source([item], grid, ["B04"], chunksize=256), slice(10, 300), slice(20, 410))
    np.testing.assert_array_equal(got[0, 0], expected)
    assert blocks.SPARE._bytes < 8 * bh * bw * np.dtype(dtype).itemsize  # the decoder took some
    close_files()


def test_the_spare_pool_keeps_only_arrays_nothing_else_holds_and_only_up_to_its_bound() -> None:
    """An array a view (or anything else) still refers to is not lent again: its memory is not free to overwrite.
    The cache hands the arrays it evicts to the pool."""
    from eoshard.pipeline.direct import blocks

    spare = blocks.SparePool(2 * 32)
    held = np.full((2, 2), 7, dtype="int64")
    view = held[0]
    spare.give(held)
    assert spare.take((2, 2), "int64") is not held
    del view
    spare.give(held)
    assert spare.take((2, 2), "int64") is held
    assert spare.take((2, 2), "int64") is not held  # lent once
    for n in range(3):
        spare.give(np.full((2, 2), n, dtype="int64"))
    assert spare._bytes == 2 * 32  # the third was over the bound
    cache = blocks.BlockCache(32)
    before = blocks.SPARE._bytes
    cache.put("a", np.full((2, 2), 5, dtype="int64"))
    cache.put("b", np.full((2, 2), 6, dtype="int64"))  # "a" is evicted, and nothing else holds it
    assert blocks.SPARE._bytes == before + 32
    assert (blocks.SPARE.take((2, 2), "int64") == 5).all()


def test_blocks_decoded_once_are_read_back_from_the_machines_store(
    demo_data: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    """A second process (here: this one with its memory cache emptied) reads the store, not the remote files."""
    import os

    from eoshard.pipeline.direct import blocks

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(blocks, "STORE_BYTES", 2**30)  # EOSHARD_BLOCK_STORE_MB=1024
    monkeypatch.setattr(blocks, "STORE_ALL_REMOTE", True)  # EOSHARD_BLOCK_STORE=all
    stale = tmp_path / f"{blocks.STORE_PREFIX}killed"
    stale.mkdir()
    old = 1_000_000_000.0  # 2001: a store a killed build left
    os.utime(stale, (old, old))
    items, grid = _demo(demo_data)
    source = group_source(items, grid, ["B04", "B11"], chunksize=256)
    close_files()
    blocks.use_block_store(f"{blocks.STORE_PREFIX}test")
    try:
        read_group_window(source, slice(0, 300), slice(0, 400))
        assert not list(
            (tmp_path / f"{blocks.STORE_PREFIX}test").iterdir()
        )  # local files: decoded again, not stored
        close_files()
        monkeypatch.setattr(blocks, "is_remote", lambda href: True)  # as if the files were fetched over HTTP
        misses = blocks.CACHE.misses
        first = read_group_window(source, slice(0, 300), slice(0, 400))
        stored = sorted((tmp_path / f"{blocks.STORE_PREFIX}test").glob("*.block"))
        assert len(stored) == blocks.CACHE.misses - misses > 0 and not stale.exists()
        close_files()  # the memory cache is empty now, as in another worker process

        def no_files(href: str) -> Any:
            raise AssertionError(f"{href} was opened again")

        monkeypatch.setattr(blocks, "open_file", no_files)  # decoding needs it; the headers (mosaic) do not
        again = read_group_window(source, slice(0, 300), slice(0, 400))
        np.testing.assert_array_equal(again, first)
        assert blocks._store is not None and blocks._store.hits == len(stored)
    finally:
        blocks.remove_block_store(f"{blocks.STORE_PREFIX}test")
    assert not (tmp_path / f"{blocks.STORE_PREFIX}test").exists()


def _small_blocks(item: dict[str, Any], folder: Any) -> dict[str, Any]:
    """The item with its B04 and B11 rewritten as COGs of 64 px blocks (same pixels and georeferencing)."""
    folder.mkdir(parents=True, exist_ok=True)
    assets = dict(item["assets"])
    for band in ("B04", "B11"):
        with rasterio.open(assets[band]["href"]) as src:
            profile, values = src.profile, src.read()
        path = folder / f"{band}.tif"
        profile.update(driver="COG", blocksize=64)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(values)
        assets[band] = {**assets[band], "href": str(path)}
    return {**item, "assets": assets}


def _sweep_decodes(
    item: dict[str, Any],
    grid: Any,
    tmp_path: Any,
    monkeypatch: Any,
    *,
    hints: bool,
    split: Any = None,
    tell: bool = True,
    right_first: bool = False,
    puts: list[tuple[Any, int]] | None = None,
) -> tuple[Any, Any, Any, list[int]]:
    """Read the product patch by patch in the build's stripe order (stripes of 128 px, 32 px patches) through a
    cache of 8 blocks: (decodes per block, (patch, windows) pairs, the whole grid read beforehand, the bytes held
    in memory after each patch).

    ``split``: ``(row, col)`` of the patch where a second worker process takes over the sweep: it reads from there
    on first (as it starts there while the first worker starts at the top), with a memory cache of its own; then
    the first worker reads up to there. ``tell``: both know where they meet (``meeting``). ``right_first``: the
    stripes are read right to left (each top to bottom), each in another process. ``puts``: gets the key and bytes
    of every block (or part) put into the machine's store."""
    import collections

    from eoshard.pipeline.direct import blocks
    from eoshard.pipeline.patches import patch_grid, stripe_order
    from eoshard.pipeline.shards.reads import PatchOrder, Run, meeting, run_sweep

    with rasterio.open(item["assets"]["B04"]["href"]) as src:
        phase = round((grid.transform.c - src.transform.c) / 10) % 128
    assert phase == 48  # the grid starts 48 px right of a block edge: patches straddle block edges
    size, order = 32, PatchOrder(128, phase, 32)
    patches = stripe_order(patch_grid(grid, size), grid.shape[1], width=128, offset=phase)
    sources = {1: group_source([item], grid, ["B04"], chunksize=256),
               2: group_source([item], grid.zoom_out(2), ["B11"], chunksize=128)}  # fmt: skip
    close_files()
    whole = {
        f: read_group_window(s, slice(0, s.grid.shape[0]), slice(0, s.grid.shape[1])) for f, s in sources.items()
    }
    close_files()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(blocks.CACHE, "max_bytes", 8 * 64 * 64 * 2)
    decodes: collections.Counter[Any] = collections.Counter()
    keep = blocks._keep
    monkeypatch.setattr(blocks, "_keep", lambda key, *a: (decodes.update([key]), keep(key, *a))[1])
    blocks.use_block_store(f"{blocks.STORE_PREFIX}sweep")
    windows: list[Any] = []
    held: list[int] = []
    at = len(patches) if split is None else next(n for n, p in enumerate(patches) if (p.row, p.col) == split)
    meetings = ()
    if hints and tell and split is not None:
        meetings = meeting(
            order, [(p.row, p.col) for p in patches[:at]], [(p.row, p.col) for p in patches[at:]], size
        )
    reading = [*patches[at:], *patches[:at]]
    stripe = {id(p): (p.col + phase) // 128 for p in patches}
    if right_first:
        reading = sorted(patches, key=lambda p: -stripe[id(p)])  # stable: each stripe top to bottom
    put = blocks.BlockStore.put
    if puts is not None:

        def recorded(store: Any, key: Any, block: Any) -> None:
            puts.append((key, block.nbytes))
            put(store, key, block)

        monkeypatch.setattr(blocks.BlockStore, "put", recorded)
    try:
        for n, p in enumerate(reading):
            if n == len(patches) - at or (right_first and n and stripe[id(p)] != stripe[id(reading[n - 1])]):
                blocks.CACHE.clear()  # the first worker: another process, the same machine's store
            run = Run(p.row, p.col, p.col + size, ((0, p.col),))
            sweep = run_sweep(order if hints else None, run, size, tuple(grid.shape), meetings)
            windows.append([read_group_window(s, slice(p.row // f, (p.row + size) // f),
                                              slice(p.col // f, (p.col + size) // f), sweep.scaled(1 / f))
                            for f, s in sources.items()])  # fmt: skip
            blocks.drop_retired_blocks()  # as a shard task alone in its process does after each run
            held.append(blocks.CACHE._bytes)
    finally:
        blocks.remove_block_store(f"{blocks.STORE_PREFIX}sweep")
        monkeypatch.setattr(blocks, "_keep", keep)
        monkeypatch.setattr(blocks.BlockStore, "put", put)
        close_files()
    return decodes, list(zip(reading, windows, strict=True)), whole, held


def test_a_stripe_sweep_decodes_each_block_once(demo_data: Any, tmp_path: Any, monkeypatch: Any) -> None:
    """Blocks the sweep has passed leave the cache first, and blocks two stripes read wait in the machine's store:
    each needed block is decoded once, where a plain LRU of the same size decodes blocks again."""
    items, grid = _demo(demo_data)
    item = _small_blocks(next(i for i in items if i["properties"]["proj:epsg"] == grid.crs.epsg), tmp_path / "cog")
    decodes, windows, whole, held = _sweep_decodes(item, grid, tmp_path / "a", monkeypatch, hints=True)
    for p, (b04, b11) in windows:
        np.testing.assert_array_equal(b04, whole[1][..., p.row : p.row + 32, p.col : p.col + 32])
        np.testing.assert_array_equal(
            b11, whole[2][..., p.row // 2 : p.row // 2 + 16, p.col // 2 : p.col // 2 + 16]
        )
    # the files (540 x 540 px at 10 m, 270 x 270 at 20 m) start at grid row -60, column -48; the patches cover
    # grid rows 0..447 and columns 0..607: file rows 60..507 and columns 48..539 of B04 (blocks 0..7 x 0..8),
    # rows 30..253 and columns 24..269 of B11 (blocks 0..3 x 0..4)
    expected = [("B04.tif", r, c) for r in range(8) for c in range(9)] + [
        ("B11.tif", r, c) for r in range(4) for c in range(5)
    ]
    assert sorted((k[1].rsplit("/", 1)[1], k[2], k[3]) for k in decodes) == expected
    assert set(decodes.values()) == {1}
    plain, _, _, plain_held = _sweep_decodes(item, grid, tmp_path / "b", monkeypatch, hints=False)
    assert set(plain) == set(decodes) and sum(plain.values()) > len(expected)
    # between patches, memory holds the blocks still ahead in the stripe, where a plain LRU fills its bound (8
    # blocks). At most, where a patch row of stripe 0 crosses a block row: 5 whole blocks (the new row's, the old
    # row's not yet passed) and the columns its last patch reaches into of the blocks right of it (16 of B04's, 8
    # of B11's); those two blocks wait whole in the store for stripe 1
    assert max(held) == 5 * 64 * 64 * 2 + 64 * (16 + 8) * 2 < max(plain_held) == 8 * 64 * 64 * 2
    assert held[-1] == 0 < plain_held[-1]  # after the last patch, the sweep needs nothing more


def test_a_stripe_read_before_the_one_left_of_it_stores_only_the_columns_that_one_reads(
    demo_data: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    """A block at a stripe's left edge is read whole by its stripe and in part (the columns the last patches reach
    over the edge) by the stripe left of it. Whoever decodes it first keeps it in the machine's store for the
    other: the stripe left of it, whole; the stripe itself, only those columns. Read either way, each block is
    decoded once and every window is the same."""
    items, grid = _demo(demo_data)
    item = _small_blocks(next(i for i in items if i["properties"]["proj:epsg"] == grid.crs.epsg), tmp_path / "cog")
    puts_by_order: dict[bool, list[tuple[Any, int]]] = {False: [], True: []}
    for right_first, puts in puts_by_order.items():
        decodes, windows, whole, _ = _sweep_decodes(
            item, grid, tmp_path / str(right_first), monkeypatch, hints=True, right_first=right_first, puts=puts
        )
        for p, (b04, b11) in windows:
            np.testing.assert_array_equal(b04, whole[1][..., p.row : p.row + 32, p.col : p.col + 32])
            np.testing.assert_array_equal(
                b11, whole[2][..., p.row // 2 : p.row // 2 + 16, p.col // 2 : p.col // 2 + 16]
            )
        assert set(decodes.values()) == {1} and len(decodes) == 8 * 9 + 4 * 5
    # stripe edges at grid columns 80, 208, 336 and 464 (B04's block columns 2, 4, 6, 8; B11's 1, 2, 3, 4): the
    # last patches left of each reach 16 px over it (8 px of B11); the 8 block rows of B04 and 4 of B11 under them
    # are stored whole when the left stripe is read first, and as those columns when the right one is
    # (the last block columns are 28 px and 14 px wide: the files are 540 and 270 px wide)
    edges = {"B04.tif": {2: 64, 4: 64, 6: 64, 8: 28}, "B11.tif": {1: 64, 2: 64, 3: 64, 4: 14}}
    reach = {"B04.tif": 16, "B11.tif": 8}
    rows = {"B04.tif": 8, "B11.tif": 4}
    for right_first, puts in puts_by_order.items():
        got = sorted((k[1].rsplit("/", 1)[1], k[2], k[3], k[4:], n) for k, n in puts)
        expected = sorted(
            (band, r, c, (0, reach[band]) if right_first else (), 64 * (reach[band] if right_first else width) * 2)
            for band, widths in edges.items()
            for r in range(rows[band])
            for c, width in widths.items()
        )
        assert got == expected


def test_a_run_that_ends_its_stripes_row_passes_the_blocks_right_of_it() -> None:
    """Blocks above the next patch row are passed left of the next patch of the row, and all of them where the run
    ends its stripe's row: at the stripe's edge, or at the grid's last patch while the files reach further (a tile
    world's grid ends 108 px short of the files: its last blocks stayed in memory until room was needed)."""
    from eoshard.pipeline.shards.reads import PatchOrder, Run, run_sweep

    order = PatchOrder(128, 48, 32)  # stripes over grid columns ..79, 80..207, ..., 464..591, 592..
    shape = (448, 600)  # the last whole patch of a row starts at column 544

    def passed(col: int) -> tuple[float, float]:
        sweep = run_sweep(order, Run(64, col, col + 32, ((64, col),)), 32, shape)
        return sweep.done_row, sweep.done_col

    assert passed(96) == (96, 128)  # the next patch of the row is in the same stripe
    assert passed(192) == (96, math.inf)  # the next patch, at 224, is in the next stripe
    assert passed(512) == (96, 544)
    assert passed(544) == (96, math.inf)  # the grid's last patch of the row (576 + 32 > 600)


def test_passed_blocks_leave_first_and_at_once_when_one_shard_reads() -> None:
    """Past its bound the cache lets the blocks the sweep has passed go before the least recently used; while one
    shard task reads alone in its process (``read_alone``), they go as soon as they are passed."""
    from eoshard.pipeline.direct import blocks

    cache = blocks.BlockCache(3 * 8)
    a, b, c, d = (np.full(1, n, dtype="int64") for n in range(4))
    for key, value in (("a", a), ("b", b), ("c", c)):
        cache.put(key, value)
    cache.retire(["b"])
    assert cache.get("b") is b  # read again: no longer retired
    cache.retire(["b"])
    cache.put("d", d)  # past the bound: the passed block goes, not the oldest
    assert [cache.get(k) is v for k, v in (("a", a), ("b", None), ("c", c), ("d", d))] == [True] * 4
    cache.eager = True
    cache.retire(["a", "never put"])
    assert cache.get("a") is None and cache._bytes == 2 * 8
    blocks.read_alone(True)
    try:
        assert blocks.CACHE.eager
    finally:
        blocks.read_alone(False)
    assert not blocks.CACHE.eager


def test_two_workers_meeting_in_a_block_row_decode_each_block_once(
    demo_data: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    """A second worker takes over the sweep in the middle of a stripe, inside a block row: the blocks of that row
    are read by both. Told where they meet, the worker that decodes them first keeps them in the machine's store
    and the other reads them from there; untold, both decode them."""
    items, grid = _demo(demo_data)
    item = _small_blocks(next(i for i in items if i["properties"]["proj:epsg"] == grid.crs.epsg), tmp_path / "cog")
    # stripe 1 covers grid columns 80..207 (patches at 96..192); the patch row at grid row 96 (file rows 156..187)
    # lies in B04's block row 2 (file rows 128..191) with the row above (file rows 124..155, block rows 1 and 2)
    split = (96, 96)
    decodes, windows, whole, _ = _sweep_decodes(item, grid, tmp_path / "a", monkeypatch, hints=True, split=split)
    for p, (b04, _) in windows:
        np.testing.assert_array_equal(b04, whole[1][..., p.row : p.row + 32, p.col : p.col + 32])
    assert set(decodes.values()) == {1} and len(decodes) == 8 * 9 + 4 * 5
    untold, _, _, _ = _sweep_decodes(item, grid, tmp_path / "b", monkeypatch, hints=True, split=split, tell=False)
    # stripe 1 reads B04's block columns 2..4 (file columns 144..271); 4 lies over its right edge, so it goes to
    # the store whole anyway (and so does B11's 2): block 3 of block row 2 is one both workers decode. Block 2,
    # over its left edge, goes to the store as the columns stripe 0 reads when stripe 1 decodes it first (B11's 1
    # too): untold, the second worker keeps only those, and the first decodes it again for the top of stripe 1
    again = {(k[1].rsplit("/", 1)[1], k[2], k[3]) for k, n in untold.items() if n > 1}
    assert again == {("B04.tif", 2, 3), ("B04.tif", 2, 2), ("B11.tif", 1, 1)}
    from eoshard.pipeline.shards.reads import PatchOrder, meeting

    order = PatchOrder(128, 48, 32)  # the stripes' columns: 80..207 for stripe 1, the last patch reaching to 240
    assert meeting(order, [(64, 160), (64, 192)], [(96, 96)], 32) == ((96.0, 96.0, 80.0, 240.0),)
    assert meeting(order, [(416, 64)], [(0, 96)], 32) == ()  # stripe 0 ends, stripe 1 starts: no row shared


def test_a_remote_window_fetches_its_blocks_and_not_the_next(tmp_path: Any) -> None:
    """Over HTTP a window's blocks are fetched once each. GDAL's /vsicurl/ takes a read that starts where its last
    download ended as sequential and fetches twice as much: read left to right, the block right of the window came
    too (29 % more bytes on the tile benchmark)."""
    from affine import Affine

    from eoshard.flows.demo.serve import serve_folder
    from eoshard.pipeline.direct import mosaic
    from eoshard.pipeline.direct.blocks import open_file

    # one row of three 1024 px blocks of noise (DEFLATE keeps about 1.5 MB of each 2 MiB block)
    values = np.random.default_rng(5).integers(0, 3000, size=(1, 1024, 3072), dtype="uint16")
    profile = {"driver": "COG", "width": 3072, "height": 1024, "count": 1, "dtype": "uint16", "crs": "EPSG:32632",
               "transform": Affine(10, 0, 600000, 0, -10, 5000000), "blocksize": 1024, "compress": "deflate",
               "overviews": "NONE"}  # fmt: skip
    with rasterio.open(tmp_path / "b04.tif", "w", **profile) as dst:
        dst.write(values)
    with rasterio.open(tmp_path / "b04.tif") as src:
        needed = src.block_size(1, 0, 0) + src.block_size(1, 0, 1)
    close_files()
    with serve_folder(tmp_path, latency=0.0) as served:
        href = f"{served.url}/b04.tif"
        dataset = open_file(href).dataset  # the header: GDAL_INGESTED_BYTES_AT_OPEN
        served.traffic.reset()
        got = mosaic._aligned(href, dataset, (0, 0), Window(0, 0, 2048, 1024), 0, "uint16")
        fetched = served.traffic.bytes
    close_files()
    np.testing.assert_array_equal(got, values[0, :, :2048])
    # the header read at open holds the start of the first block; 16 KiB chunks round both ends of each read
    assert needed - 32768 <= fetched <= needed + 2 * 2 * 16384, (fetched, needed)


def test_the_scl_table_lookup_equals_isin_for_every_class_value() -> None:
    from eoshard.pipeline.scl import scl_valid

    invalid = (0, 1, 3, 8, 9, 10)
    every = np.arange(256, dtype=np.uint8).reshape(2, 8, 16)
    expected = ~np.isin(every, invalid)
    assert scl_valid(every, invalid).tolist() == expected.tolist() and expected.sum() == 250
    wide = np.array([0, 2, 3, 300, 4, 65535], dtype=np.uint16)  # not 8-bit: isin
    assert scl_valid(wide, invalid).tolist() == [False, True, False, True, True, True]


def test_the_machines_store_lets_go_of_the_blocks_read_back_first(tmp_path: Any) -> None:
    """A shared block has two readers; once read back it is done with, and it goes before the blocks still waiting
    for their second reader, however new it is (by age alone, a store smaller than the blocks waiting let go of
    exactly the ones to be read next)."""
    from eoshard.pipeline.direct.blocks import _HEADER, BlockStore

    block = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    store = BlockStore(tmp_path / "store", max_bytes=3 * (_HEADER + block.nbytes))
    for k in ("a", "b", "c"):
        store.put(k, block + ord(k))
    got = store.get("c")  # the newest, read back by its second reader
    assert got is not None
    np.testing.assert_array_equal(got, block + ord("c"))
    store.put("d", block + ord("d"))  # past the bound: one file goes
    kept = {k for k in "abcd" if store.get(k) is not None}
    assert kept == {"a", "b", "d"}
    assert store.hits == 4
