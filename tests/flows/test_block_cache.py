"""The build warns when the workers' block cache cannot hold a block row of a stripe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from affine import Affine
from odc.geo.geobox import GeoBox
from typer.testing import CliRunner

from eoshard.flows.block_cache import block_cache_note, stripe_row_bytes
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


def test_a_build_whose_stripe_rows_outgrow_the_cache_says_so(
    demo_data: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """`eoshard build` prints the note (here with a 1 MB cache) and builds all the same."""
    from eoshard.pipeline.direct import blocks

    monkeypatch.setattr(blocks, "CACHE_BYTES", 2**20)
    config = demo_build_config(demo_data, tmp_path / "out", period={"start": "2024-04-01", "end": "2024-04-30"},
                               patches={"size": 96})  # fmt: skip
    with pytest.warns(UserWarning, match="1 of 480 label geometries were invalid"):
        result = CliRunner().invoke(
            app, ["build", str(write_config(config, tmp_path / "b.yaml")), "--workers", "1"]
        )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "warning: the block cache holds 1 MB per worker (EOSHARD_BLOCK_CACHE_MB)" in said
    assert "Set EOSHARD_BLOCK_CACHE_MB=1024 where the workers start" in said
