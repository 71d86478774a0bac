"""Real items of every catalog convention give one product record: tiles, orbits, baselines."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import shapely
from shapely.geometry import shape

from eoshard.catalog import read_static_items, select
from eoshard.catalog.records import record_of
from tests.conftest import shared_path

V0 = Path(__file__).parent / "data" / "earth-search-v0.json"


def test_earth_search_v0_tiles_orbits_and_baselines_are_read() -> None:
    records = {r.id: r for r in (record_of(i) for i in read_static_items(V0))}
    assert len(records) == 14
    r = records["S2B_16PET_20230506_0_L2A"]
    assert (r.tile, r.relative_orbit, r.processing_baseline) == ("16PET", 140, "05.09")
    assert r.acquisition == "sentinel-2b_2023-05-06_R140"
    assert {r.tile for r in records.values()} == {i.removeprefix("S2A_").removeprefix("S2B_")[:5] for i in records}


def test_earth_search_v0_tiles_with_one_timestamp_are_not_reprocessed_copies() -> None:
    """16PET and 15PZP share the second 16:30:15: read as 'no tile', one was dropped as a copy of the other."""
    items = [i for i in read_static_items(V0) if i.id in ("S2B_16PET_20230506_0_L2A", "S2B_15PZP_20230506_0_L2A")]
    aoi = shapely.union_all([shape(i.geometry).representative_point().buffer(0.01) for i in items])  # one in each
    selection = select(items, aoi, date(2023, 5, 1), date(2023, 5, 31))
    assert selection.table.selected.all(), dict(zip(selection.table.id, selection.table.reason, strict=True))
    assert sorted(selection.table.tile) == ["15PZP", "16PET"]
    assert selection.uncovered.area < 1e-12


@pytest.mark.parametrize(
    ("name", "tile_key"),
    [("earth-search__sentinel-2-c1-l2a.json", "grid:code"), ("earth-search__sentinel-2-l1c.json", "grid:code"),
     ("planetarycomputer__sentinel-2-l2a.json", "s2:mgrs_tile")],
)  # fmt: skip
def test_every_recorded_item_has_its_tile_and_orbit(name: str, tile_key: str) -> None:
    for item in read_static_items(shared_path("stac", name)):
        record = record_of(item)
        assert record.tile == str(item.properties[tile_key]).removeprefix("MGRS-"), item.id
        assert record.relative_orbit is not None and 1 <= record.relative_orbit <= 143, item.id
