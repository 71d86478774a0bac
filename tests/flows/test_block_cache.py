"""The build warns when the workers' block cache cannot hold a block row of a stripe."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from affine import Affine
from odc.geo.geobox import GeoBox
from typer.testing import CliRunner

from eoshard.flows.block_cache import (
    block_cache_note,
    cache_bytes_for,
    open_files_for,
    open_files_note,
    smallest_memory_limit,
    store_bytes,
    stripe_edge_bytes,
    stripe_row_bytes,
)
from eoshard.flows.cli import app
from eoshard.pipeline.direct import AssetSource, GroupSource, ProductSource
from eoshard.pipeline.shards.reads import PatchOrder, ShardSources
from tests.demo_config import demo_build_config, write_config

WIDTH = 5478  # the quarter-tile benchmark's grid
GRID = GeoBox((5484, WIDTH), Affine(10, 0, 600000, 0, -10, 5300000), "EPSG:32632")


def _group(grid: GeoBox, bands: tuple[str, ...], dates: int, dtype: str = "uint16", root: str = "") -> GroupSource:
    steps = tuple(
        (ProductSource(f"p{d}", {b: AssetSource(f"{root}/p{d}/{b}.tif", None) for b in bands}),)
        for d in range(dates)
    )
    return GroupSource(grid, bands, dtype, 0.0, "nearest", 1024, steps)


def _sources(dates: int, root: str = "") -> ShardSources:
    groups = {
        "s2_10m": _group(GRID, ("B02", "B03", "B04", "B08"), dates, root=root),
        "s2_20m": _group(GRID.zoom_out(2), ("B05", "B06", "B07", "B8A", "B11", "B12"), dates, root=root),
    }
    scl = _group(GRID.zoom_out(2), ("SCL",), dates, "uint8", root=root)
    return ShardSources(GRID, groups, {"s2_10m": 1, "s2_20m": 2}, scl=scl, scl_factor=2,
                        order=PatchOrder(2048, 6, 128))  # fmt: skip


def test_a_stripe_row_of_a_season_is_counted_file_by_file() -> None:
    # per date, 1024 block rows of: 4 bands x the 2 blocks of a 2048 px stripe at 10 m, and 1 block of each 20 m band
    # and of the SCL; plus the columns the stripe's last patches reach into the next stripe's block: the stripe
    # edges lie at 2042 and 4090 px (offset 6), where the 128 px lattice's last patches end 6 px over (3 at 20 m),
    # and one column more for rounding
    per_date = 1024 * (4 * (2 * 1024 + 6 + 1) * 2 + 6 * (1024 + 3 + 1) * 2 + (1024 + 3 + 1) * 1)
    assert stripe_row_bytes(_sources(12), WIDTH) == 12 * per_date
    assert round(12 * per_date / 2**20) == 349  # whole blocks of the reach were counted before: 600 MiB
    assert stripe_row_bytes(_sources(12), WIDTH, patch_size=160) > 12 * per_date  # larger patches reach further
    # a grid no wider than one block: the row is one block per file
    narrow = ShardSources(GRID, {"s2_10m": _group(GRID, ("B04",), 3)}, {"s2_10m": 1}, order=PatchOrder(0, 0, 64))
    assert stripe_row_bytes(narrow, 600) == 3 * 2 * 2**20


def test_the_note_says_when_the_cache_is_too_small_and_what_to_set() -> None:
    assert block_cache_note(_sources(12), WIDTH, cache_bytes=2**30) is None  # 349 MB: fits the 1 GB default
    assert block_cache_note(_sources(30), WIDTH, cache_bytes=2**30) is None  # 873 MB still fits
    note = block_cache_note(_sources(36), WIDTH, cache_bytes=2**30)  # a season of 36 dates: 1048 MB
    assert note is not None
    assert "holds 1024 MB per worker (EOSHARD_BLOCK_CACHE_MB)" in note and "about 1048 MB" in note
    assert "Set EOSHARD_BLOCK_CACHE_MB=2048 where the workers start" in note  # 1.25 x 1048 MB, in whole GB
    assert block_cache_note(None, WIDTH) is None  # builds that read through the cubes' graph


def test_over_the_network_the_note_says_when_the_next_row_cannot_be_read_ahead_whole() -> None:
    remote = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs"
    assert block_cache_note(_sources(12, remote), WIDTH, cache_bytes=2**30) is None  # 2 x 349 MB: in 768 MB
    assert block_cache_note(_sources(18), WIDTH, cache_bytes=2**30) is None  # local files are not read ahead
    note = block_cache_note(_sources(18, remote), WIDTH, cache_bytes=2**30)  # 2 x 524 MB
    assert note is not None and note.startswith("note: over the network")
    assert "both rows (about 1048 MB)" in note and "(1024 MB, EOSHARD_BLOCK_CACHE_MB)" in note
    assert "Set EOSHARD_BLOCK_CACHE_MB=2048 where the workers start" in note  # 4/3 x 1048 MB, in whole GB
    assert block_cache_note(_sources(36, remote), WIDTH, cache_bytes=2**30).startswith("warning")  # type: ignore[union-attr]


def test_a_build_raises_the_cache_for_a_season_within_the_workers_memory(monkeypatch: Any) -> None:
    """A block row of 36 dates (1048 MB) outgrows the 1 GB default: the build gives the workers a quarter more than
    the row, or two rows and a third more over the network, within 40 % of their memory limit."""
    from eoshard.pipeline.direct import blocks

    remote = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs"
    gib, season = 2**30, stripe_row_bytes(_sources(36), WIDTH)
    assert cache_bytes_for(_sources(12), WIDTH, 8 * gib) == 0  # 1.25 x 349 MB: the default holds it
    assert cache_bytes_for(_sources(36), WIDTH, 8 * gib) == math.ceil(season * 1.25)
    assert cache_bytes_for(_sources(18, remote), WIDTH, 8 * gib) == math.ceil(2 * season / 2 * 4 / 3)
    assert cache_bytes_for(_sources(12, remote), WIDTH, 8 * gib) == 0  # 2 x 349 MB in three quarters of 1 GB
    assert cache_bytes_for(_sources(36), WIDTH, 3 * gib) == int(0.4 * 3 * gib)  # within the workers' memory
    assert cache_bytes_for(_sources(36), WIDTH, 2 * gib) == 0  # 40 % of 2 GB is less than the default
    assert cache_bytes_for(_sources(36), WIDTH, 0) == 0  # no memory limit known
    assert cache_bytes_for(None, WIDTH, 8 * gib) == 0
    note = block_cache_note(_sources(36), WIDTH, raised=math.ceil(season * 1.25))
    assert note == (
        "note: each worker's block cache holds 1310 MB for this build, to keep a block row of its stripes (about "
        "1048 MB for its dates and bands) decoded once (EOSHARD_BLOCK_CACHE_MB fixes it)"
    )
    short = block_cache_note(_sources(48), WIDTH, raised=int(0.4 * 3 * gib))  # 48 dates: 1398 MB, 1229 given
    assert short is not None and short.startswith(
        "warning: the block cache holds 1229 MB per worker (for this build,"
    )
    assert "40% of the workers' memory limit at most; EOSHARD_BLOCK_CACHE_MB sets it), less than" in short
    monkeypatch.setattr(blocks, "CACHE_BYTES_SET", True)  # the user's own setting stays
    assert cache_bytes_for(_sources(36), WIDTH, 8 * gib) == 0
    workers = {"a": {"memory_limit": 6 * gib}, "b": {"memory_limit": 4 * gib}, "c": {"memory_limit": None}}
    assert smallest_memory_limit(workers) == 4 * gib and smallest_memory_limit({}) == 0


def test_a_worker_takes_the_builds_cache_and_gives_it_back_when_the_build_ends(monkeypatch: Any) -> None:
    from eoshard.pipeline.direct import blocks

    monkeypatch.setattr(blocks, "CACHE_BYTES", 2**20)
    monkeypatch.setattr(blocks.CACHE, "max_bytes", 2**20)
    blocks.use_block_cache(5 * 2**20)
    assert blocks.CACHE.max_bytes == 5 * 2**20
    blocks.use_block_cache(0)  # a build that needs no more: the default
    assert blocks.CACHE.max_bytes == 2**20
    blocks.use_block_cache(5 * 2**20)
    blocks.release_build(None)
    assert blocks.CACHE.max_bytes == 2**20
    monkeypatch.setattr(blocks, "CACHE_BYTES_SET", True)  # EOSHARD_BLOCK_CACHE_MB where the worker started
    blocks.use_block_cache(5 * 2**20)
    assert blocks.CACHE.max_bytes == 2**20


def test_the_open_files_note_counts_the_files_a_block_row_of_a_stripe_reads() -> None:
    remote = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs"
    assert open_files_note(_sources(12, remote), max_files=512) is None  # 12 dates x 11 files
    assert open_files_note(_sources(48), max_files=512) is None  # local files open in a millisecond
    note = open_files_note(_sources(48, remote), max_files=512)  # 48 dates x 11 files: 528
    assert note is not None
    assert "reads 528 source files, more than each worker keeps open (512, EOSHARD_MAX_OPEN_FILES)" in note
    assert "Set EOSHARD_MAX_OPEN_FILES=704 where the workers start" in note  # 1.25 x 528, in 64s
    assert open_files_note(None) is None  # builds that read through the cubes' graph


def test_a_build_keeps_open_the_remote_files_a_row_reads_within_the_descriptors(monkeypatch: Any) -> None:
    from eoshard.pipeline.direct import blocks

    remote = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs"
    monkeypatch.setattr(blocks.resource, "getrlimit", lambda _: (4096, 4096))  # `ulimit -n` 4096
    assert open_files_for(_sources(48, remote)) == 660  # 1.25 x 528 files
    assert open_files_note(_sources(48, remote)) is None  # the workers keep them open
    assert open_files_for(_sources(12, remote)) == 0  # 1.25 x 132: the default's 512 hold them
    assert open_files_for(_sources(48)) == 0  # local files
    monkeypatch.setattr(blocks.resource, "getrlimit", lambda _: (900, 4096))  # `ulimit -n` 900
    assert blocks.open_files_bound(660) == 644  # 900 less the 256 kept for sockets and the output
    assert blocks.open_files_bound(100) == 512  # never fewer than the default
    blocks.use_open_files(660)
    assert blocks._max_open == 644
    blocks.release_build(None)  # the build is over: the default again
    assert blocks._max_open == 512
    monkeypatch.setattr(blocks, "MAX_OPEN_FILES_SET", True)  # EOSHARD_MAX_OPEN_FILES set: kept
    assert blocks.open_files_bound(660) == 512 and open_files_for(_sources(48, remote)) == 0
    note = open_files_note(_sources(48, remote))
    assert note is not None and "reads 528 source files, more than each worker keeps open (512" in note


def _tiles(split: str) -> ShardSources:
    """Products of two tiles, 10 of each: one above the other (``split="y"``, meeting at the grid's second block
    row edge, 20480 m down) or side by side (``"x"``, meeting at the first stripe edge, 2042 px)."""
    x0, y0 = GRID.affine.c, GRID.affine.f
    x1, y1 = x0 + 10 * WIDTH, y0 - 10 * GRID.shape.y
    first, second = ((x0, y0 - 20480, x1, y0), (x0, y1, x1, y0 - 20480))
    if split == "x":
        first, second = ((x0, y1, x0 + 20420, y0), (x0 + 20420, y1, x1, y0))
    steps = tuple(
        (ProductSource(f"p{d}", {"B04": AssetSource(f"http://store/p{d}.tif", first if d < 10 else second)}),)
        for d in range(20)
    )
    group = GroupSource(GRID, ("B04",), "uint16", 0.0, "nearest", 1024, steps)
    return ShardSources(GRID, {"s2_10m": group}, {"s2_10m": 1}, order=PatchOrder(2048, 6, 128))


def test_the_open_files_note_counts_only_the_files_whose_footprints_meet_the_row() -> None:
    for split in ("y", "x"):
        assert open_files_note(_tiles(split), max_files=10) is None  # 10 a row, not 20
        note = open_files_note(_tiles(split), max_files=9)
        assert note is not None and "reads 10 source files" in note
    unknown = _tiles("y")
    step = (ProductSource("p", {"B04": AssetSource("http://store/p.tif", None)}),)
    group = replace(unknown.groups["s2_10m"], steps=(*unknown.groups["s2_10m"].steps, step))
    assert "reads 11 source files" in str(open_files_note(replace(unknown, groups={"s2_10m": group}), max_files=9))


@pytest.mark.parametrize("user_set", [True, False])
def test_a_build_whose_stripe_rows_outgrow_the_cache_says_so(
    demo_data: Any, tmp_path: Path, monkeypatch: Any, user_set: bool
) -> None:
    """`eoshard build` prints the warning with a 1 MB cache the user set, which the build does not raise, and a note
    with a 1 MB default, which it raises; it builds all the same."""
    from eoshard.pipeline.direct import blocks

    monkeypatch.setattr(blocks, "CACHE_BYTES", 2**20)
    monkeypatch.setattr(blocks, "CACHE_BYTES_SET", user_set)
    config = demo_build_config(demo_data, tmp_path / "out", period={"start": "2024-04-01", "end": "2024-04-30"},
                               patches={"size": 96})  # fmt: skip
    with pytest.warns(UserWarning, match="1 of 480 label geometries were invalid"):
        result = CliRunner().invoke(
            app, ["build", str(write_config(config, tmp_path / "b.yaml")), "--workers", "1"]
        )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    if user_set:
        assert "warning: the block cache holds 1 MB per worker (EOSHARD_BLOCK_CACHE_MB)" in said
        assert "Set EOSHARD_BLOCK_CACHE_MB=1024 where the workers start" in said
    else:
        assert (
            "note: each worker's block cache holds 20 MB for this build, to keep a block row of its stripes "
            "(about 16 MB" in said
        )
        assert "warning: the block cache" not in said, said


def test_the_blocks_waiting_for_the_next_stripe_are_counted_down_the_whole_grid() -> None:
    # per date, the first block column of the next stripe, down the grid's 5484 px: 6 block rows of the 4 bands at
    # 10 m, 3 of the 6 bands at 20 m (2 MiB blocks) and of the SCL (1 MiB)
    per_date = 6 * 4 * 2 + 3 * 6 * 2 + 3 * 1
    assert stripe_edge_bytes(_sources(12)) == 12 * per_date * 2**20  # 1044 MiB at the quarter tile
    # with 2 workers on the machine: 1.25 x 3 edges, 3915 MiB, within the 4096 MB default
    assert store_bytes(_sources(12), 2) == math.ceil(1.25 * 3 * 12 * per_date * 2**20)
    assert store_bytes(_sources(12), 2) < 4096 * 2**20
    tile = GeoBox((10992, 10968), GRID.affine, GRID.crs)
    whole = replace(_sources(12), grid=tile)  # a whole tile: 11 block rows at 10 m, 6 at 20 m
    assert stripe_edge_bytes(whole) == 12 * (11 * 4 * 2 + 6 * 6 * 2 + 6 * 1) * 2**20  # 1992 MiB
    assert store_bytes(whole, 2) == math.ceil(1.25 * 3 * 1992 * 2**20)  # 7470 MiB: past the default
    one_stripe = replace(_sources(12), order=PatchOrder(8192, 6, 128))
    assert stripe_edge_bytes(one_stripe) == store_bytes(one_stripe, 2) == 0
    assert store_bytes(None, 2) == 0  # builds that read through the cubes' graph


def test_the_store_takes_the_builds_estimate_within_half_the_free_disk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tempfile

    from eoshard.pipeline.direct import blocks

    default = 4096 * 2**20
    monkeypatch.setattr(blocks, "STORE_BYTES", default)
    monkeypatch.setattr(blocks, "STORE_BYTES_SET", False)
    assert blocks.store_bound(0, 100 * 2**30) == default
    assert blocks.store_bound(7470 * 2**20, 100 * 2**30) == 7470 * 2**20
    assert blocks.store_bound(7470 * 2**20, 10 * 2**30) == 5 * 2**30  # half of 10 GiB free
    assert blocks.store_bound(7470 * 2**20, 2**30) == default  # never below the default
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(blocks, "STORE_BYTES", 2**20)
    try:
        blocks.use_block_store(f"{blocks.STORE_PREFIX}bound", 3 * 2**20)  # what a shard task is told
        assert blocks._store is not None and blocks._store.max_bytes == 3 * 2**20
    finally:
        blocks.remove_block_store(f"{blocks.STORE_PREFIX}bound")
    monkeypatch.setattr(blocks, "STORE_BYTES_SET", True)  # EOSHARD_BLOCK_STORE_MB given: it is the bound
    assert blocks.store_bound(7470 * 2**20, 100 * 2**30) == 2**20


def test_a_build_removes_at_once_the_stores_that_killed_runs_of_its_output_left(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A whole tile's store holds gigabytes: a killed build resumed at once does not keep its old one for hours
    beside the new. Another output's store, as fresh, stays (its build may run)."""
    import tempfile

    from eoshard.pipeline.direct import blocks, store_name

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed, resumed, other = store_name("/data/out"), store_name("/data/out"), store_name("/data/other")
    assert killed != resumed and killed[:-8] == resumed[:-8] != other[:-8]
    for name in (killed, other):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.block").write_bytes(b"1")
    try:
        blocks.use_block_store(resumed)
        assert not (tmp_path / killed).exists() and (tmp_path / other).exists() and (tmp_path / resumed).is_dir()
        blocks.use_block_store(f"{blocks.STORE_PREFIX}test")  # a name of no output's: removes no fresh store
        assert (tmp_path / other).exists() and (tmp_path / resumed).exists()
        # a run killed after its last shard: its rerun reads nothing, and removes the old store when it ends
        (tmp_path / killed).mkdir()
        blocks.release_build(resumed)
        assert (
            not (tmp_path / killed).exists() and not (tmp_path / resumed).exists() and (tmp_path / other).exists()
        )
    finally:
        for name in (resumed, other, f"{blocks.STORE_PREFIX}test"):
            blocks.remove_block_store(name)


def test_the_shard_tasks_are_told_what_waits_in_their_machines_store(
    demo_data, tmp_path: Path, monkeypatch: Any
) -> None:
    """The submitter counts the workers of each machine (2 on this one) and hands the estimate to the shard tasks
    with their sources; a shard task's store takes it as its bound. So with the block cache the rows need."""
    from eoshard.flows.build import plan_build
    from eoshard.flows.cluster import dask_client
    from eoshard.flows.shard_runner import ShardSubmitter
    from eoshard.flows.worker_checks import check_output_shared
    from eoshard.pipeline.direct import blocks
    from tests.flows.test_build_plan import _config

    with pytest.warns(UserWarning, match="were repaired"):
        plan = plan_build(_config(demo_data, tmp_path))
    assert plan.sources is not None and plan.sources.order is not None
    # the demo's grid is narrower than one stripe: stripes of 128 px make its neighbours share blocks
    narrow = replace(plan, sources=replace(plan.sources, order=replace(plan.sources.order, width=128)))
    with dask_client(n_workers=2) as client:
        expected = check_output_shared(client, tmp_path, "rerun")
        sources = ShardSubmitter(narrow, client, {}, expected)._sources()
        whole = ShardSubmitter(plan, client, {}, expected)._sources()
        limit = smallest_memory_limit(client.scheduler_info()["workers"])
        monkeypatch.setattr(blocks, "CACHE_BYTES", 2**20)  # a default smaller than the demo's block rows
        raised = ShardSubmitter(plan, client, {}, expected)._sources()
    assert sources is not None and sources.block_store_bytes == store_bytes(narrow.sources, 2) > 0
    assert whole is not None and whole.block_store_bytes == 0  # one stripe: nothing waits
    assert whole.block_cache_bytes == 0  # the demo's rows fit the default cache
    assert whole.open_files == 0  # local files
    width, size = plan.grid.shape[1], plan.config.patches.size
    assert raised is not None and raised.block_cache_bytes == cache_bytes_for(plan.sources, width, limit, size)
    assert raised.block_cache_bytes == math.ceil(1.25 * stripe_row_bytes(plan.sources, width, patch_size=size))


def _held() -> tuple[int, int]:
    from eoshard.pipeline.direct import blocks

    return len(blocks.CACHE._items), len(blocks._files)


def test_the_workers_let_go_of_the_builds_blocks_and_files_when_it_ends(demo_data, tmp_path: Path) -> None:
    """A long-lived cluster's workers hold no decoded blocks, open files or block store of a build that is over
    (the next build would otherwise read blocks of files changed meanwhile from memory)."""
    import tempfile

    from eoshard.flows.build import plan_build, run_build
    from eoshard.flows.cluster import dask_client
    from tests.flows.test_build_plan import _config

    with pytest.warns(UserWarning, match="were repaired"):
        plan = plan_build(_config(demo_data, tmp_path))
    assert plan.sources is not None and plan.sources.block_store is not None
    with dask_client(n_workers=2) as client:
        run_build(plan, client)
        held = client.run(_held)
    assert list(held.values()) == [(0, 0), (0, 0)]
    assert not (Path(tempfile.gettempdir()) / plan.sources.block_store).exists()
