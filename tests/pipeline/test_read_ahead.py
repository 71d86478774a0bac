"""Reads ahead: the blocks of remote files a worker's next shards read are fetched in the background, once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.windows import Window

from eoshard.flows.demo.serve import serve_folder
from eoshard.pipeline.direct import AssetSource, GroupSource, ProductSource, blocks, mosaic, read_group_window
from eoshard.pipeline.direct.blocks import CACHE, block_key, close_files, source_block

TRANSFORM = Affine(10, 0, 600000, 0, -10, 5000000)


def _three_blocks(folder: Path) -> np.ndarray:
    """One row of three 1024 px blocks of noise in ``folder/b04.tif``: its pixels."""
    values = np.random.default_rng(5).integers(0, 3000, size=(1, 1024, 3072), dtype="uint16")
    profile = {"driver": "COG", "width": 3072, "height": 1024, "count": 1, "dtype": "uint16", "crs": "EPSG:32632",
               "transform": TRANSFORM, "blocksize": 1024, "compress": "deflate", "overviews": "NONE"}  # fmt: skip
    with rasterio.open(folder / "b04.tif", "w", **profile) as dst:
        dst.write(values)
    return values[0]


def _source(href: str) -> GroupSource:
    grid = GeoBox((1024, 3072), TRANSFORM, "EPSG:32632")
    step = (ProductSource("p", {"B04": AssetSource(href, None)}),)
    return GroupSource(grid, ("B04",), "uint16", 0.0, "nearest", 1024, (step,))


def _wait_for(keys: list[Any], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while any(k not in CACHE._items for k in keys):
        assert time.monotonic() < deadline, "the read ahead did not bring the blocks"
        time.sleep(0.01)


def test_a_read_ahead_brings_the_blocks_so_the_read_fetches_nothing(tmp_path: Path) -> None:
    values = _three_blocks(tmp_path)
    with rasterio.open(tmp_path / "b04.tif") as src:
        needed = src.block_size(1, 0, 1) + src.block_size(1, 0, 2)
    close_files()
    with serve_folder(tmp_path, latency=0.01) as served:
        href = f"{served.url}/b04.tif"
        source = _source(href)
        mosaic.prefetch_group_window(source, slice(0, 1024), slice(1500, 3072))
        _wait_for([block_key(href, 0, 1), block_key(href, 0, 2)])
        assert block_key(href, 0, 0) not in CACHE._items  # only the window's blocks
        ahead = served.traffic.bytes
        served.traffic.reset()
        got = read_group_window(source, slice(0, 1024), slice(1500, 3072))
        assert served.traffic.requests == 0
    close_files()
    np.testing.assert_array_equal(got[0, 0], values[:, 1500:])
    assert needed <= ahead <= needed + 32768 + 4 * 16384, (ahead, needed)  # the header, and each block once


def test_local_files_are_left_to_the_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _three_blocks(tmp_path)
    submitted: list[Any] = []
    monkeypatch.setattr(mosaic._ahead, "submit", lambda *a, **k: submitted.append(a))
    mosaic.prefetch_group_window(_source(str(tmp_path / "b04.tif")), slice(0, 1024), slice(0, 3072))
    assert submitted == []


def test_reads_ahead_take_the_files_last_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reads take a window's files in mosaic order (date, product, band); the reads ahead the other way, so
    that a cold worker's two pools fetch from both ends of a block row instead of waiting for each other."""
    grid = GeoBox((1024, 3072), TRANSFORM, "EPSG:32632")
    steps = tuple(
        (ProductSource(f"p{d}", {b: AssetSource(f"http://store/d{d}/{b}.tif", None) for b in ("B04", "B08")}),)
        for d in range(3)
    )
    source = GroupSource(grid, ("B04", "B08"), "uint16", 0.0, "nearest", 1024, steps)
    submitted: list[str] = []
    monkeypatch.setattr(mosaic._ahead, "submit", lambda _f, _s, href, *_: submitted.append(href))
    mosaic.prefetch_group_window(source, slice(0, 1024), slice(0, 3072))
    mosaic_order = [f"http://store/d{d}/{b}.tif" for d in range(3) for b in ("B04", "B08")]
    assert submitted == mosaic_order[::-1]


def test_a_read_ahead_stops_where_the_cache_would_crowd_the_blocks_at_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Room for one block beside a quarter of the bound: the second is left to the read."""
    _three_blocks(tmp_path)
    close_files()
    monkeypatch.setattr(CACHE, "max_bytes", int(1024 * 1024 * 2 * 4 / 3) + 1)
    with serve_folder(tmp_path, latency=0.0) as served:
        href = f"{served.url}/b04.tif"
        mosaic._fetch_ahead(_source(href), href, Window(0, 0, 3072, 1024), mosaic.NO_SWEEP)
        kept = [k for k in CACHE._items if k[1] == href]
    close_files()
    assert kept == [block_key(href, 0, 2)]  # right to left, as the read goes; then no room


def test_a_block_two_threads_ask_for_at_once_is_fetched_and_decoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = _three_blocks(tmp_path)
    href = str(tmp_path / "b04.tif")
    close_files()
    decode = blocks._decode
    calls: list[tuple[int, int]] = []

    def slow_decode(href: str, row: int, col: int) -> np.ndarray:
        calls.append((row, col))
        time.sleep(0.2)  # the other thread asks meanwhile
        return decode(href, row, col)

    monkeypatch.setattr(blocks, "_decode", slow_decode)
    got: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: got.append(source_block(href, 0, 1))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    close_files()
    assert calls == [(0, 1)]
    assert got[0] is got[1]
    np.testing.assert_array_equal(got[0], values[:, 1024:2048])


def test_the_room_left_counts_what_the_sweep_still_needs_and_not_what_it_passed() -> None:
    cache = blocks.BlockCache(400)  # three quarters: 300 bytes for the blocks the sweep still needs
    for k in range(3):
        cache.put(k, np.zeros(100, dtype="uint8"))
    assert not cache.has_room(1)  # 300 needed
    cache.retire([0, 1])
    assert cache.has_room(200) and not cache.has_room(201)
    assert cache.get(1) is not None  # read again after all: needed again
    assert cache.has_room(100) and not cache.has_room(101)
    cache.put(3, np.zeros(200, dtype="uint8"))  # 500 bytes: the passed block 0 leaves first
    assert 0 not in cache._items and not cache.has_room(1)
    cache.eager = True
    cache.retire([1, 3])
    assert cache.has_room(200) and not cache.has_room(201)  # only block 2 is left
    cache.drop_retired()
    assert cache.has_room(200) and not cache.has_room(201)


def test_a_file_let_go_past_the_open_files_limit_stays_open_for_the_thread_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one file open at most, opening a second lets the first go while a thread still holds it: that thread
    reads on (a closed handle said "Dataset is closed", and the build blamed the file), and the file closes once
    no thread holds it."""
    values = _three_blocks(tmp_path)
    (tmp_path / "other.tif").write_bytes((tmp_path / "b04.tif").read_bytes())
    close_files()
    monkeypatch.setattr(blocks, "_max_open", 1)  # as EOSHARD_MAX_OPEN_FILES=1 leaves it
    first = str(tmp_path / "b04.tif")

    def open_fds() -> int:
        return sum(str(fd.resolve()) == first for fd in Path("/proc/self/fd").iterdir() if fd.exists())

    held = blocks.open_file(first)
    blocks.open_file(str(tmp_path / "other.tif"))  # lets the first go
    assert first not in blocks._files and open_fds() == 1
    with held.lock:
        got = held.dataset.read(1, window=Window(1024, 0, 1024, 1024))
    np.testing.assert_array_equal(got, values[:, 1024:2048])
    del held
    assert open_fds() == 0
    close_files()
