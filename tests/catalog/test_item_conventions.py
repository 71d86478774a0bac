"""Real items of every catalog convention give one product record: tiles, orbits, baselines."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import geopandas as gpd
import numpy as np
import pystac
import pytest
import shapely
import shapely.affinity
from shapely.geometry import shape

from eoshard.catalog import EmptySelectionError, read_static_items, select
from eoshard.catalog.records import record_of
from eoshard.catalog.selection import MIN_GAIN
from tests.conftest import shared_path

V0 = Path(__file__).parent / "recorded" / "earth-search-v0.json"


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


def _pc_acquisition(day: str) -> list[pystac.Item]:
    items = read_static_items(shared_path("stac", "planetarycomputer__sentinel-2-l2a.json"))
    return [i for i in items if i.id.startswith(f"S2A_MSIL2A_{day}")]


def test_each_date_takes_the_clearest_cover_not_the_largest_tile() -> None:
    """Real Planetary Computer products of one overpass: T58VFH (93.6 % cloud) and the clearer T59VLC (63.9 %)
    each cover the whole AOI (T58VFH's part that T59VLC or T58VFJ also cover: in longitude and latitude, T59VLC
    holds it all); area alone chose the cloudy one. Projected vertex by vertex, the edges the AOI shares with
    T59VLC parted by 0.14 % of the AOI, and T58VFJ was taken for that sliver."""
    items = _pc_acquisition("20190101T000001")
    by_tile = {record_of(i).tile: shape(i.geometry) for i in items}
    aoi = by_tile["58VFH"].intersection(shapely.union_all([by_tile["59VLC"], by_tile["58VFJ"]]))
    selection = select(items, aoi, date(2019, 1, 1), date(2019, 1, 1))
    table = selection.table.set_index("id")
    cloudy = table[table.tile == "58VFH"]
    assert not cloudy.selected.any()
    assert set(cloudy.reason) <= {
        "the AOI is covered by tiles of this acquisition that add more cloud-free area",
        *(r for r in cloudy.reason if r.startswith("reprocessed copy")),
    }
    chosen = table[table.selected]
    assert list(chosen.tile) == ["59VLC"]
    assert (chosen.aoi_uncovered < MIN_GAIN).all()  # slivers between footprints are not worth a product


def test_copies_with_the_same_baseline_say_so() -> None:
    """Planetary Computer lists T58VFH twice (with and without _N0212 in the id), both baseline 02.12."""
    items = _pc_acquisition("20190101T000001")
    fh = [i.id for i in items if "_T58VFH_" in i.id]
    assert len(fh) == 2
    aoi = shape(next(i for i in items if i.id == fh[0]).geometry).representative_point().buffer(0.001)
    table = select(items, aoi, date(2019, 1, 1), date(2019, 1, 1)).table.set_index("id")
    loser = next(i for i in fh if table.loc[i, "reason"].startswith("reprocessed copy"))
    winner = next(i for i in fh if i != loser)
    assert table.loc[loser, "reason"] == (
        f"reprocessed copy: {winner} has the same processing baseline 02.12 and generation time: the last id wins"
    )


def test_dates_covering_too_little_of_the_aoi_are_left_out_and_the_uncovered_part_is_shown() -> None:
    items = _pc_acquisition("20190101T000001")
    fh = next(i for i in items if "_T58VFH_" in i.id)
    inside = shape(fh.geometry).representative_point().buffer(0.01)
    outside = shapely.affinity.translate(inside, xoff=-15.0)  # far west of the swath: no product there
    area = shapely.union_all([inside, outside])
    series = gpd.GeoSeries(
        [area, area.difference(shapely.union_all([shape(i.geometry) for i in items]))], crs=4326
    )
    projected = series.to_crs(series.estimate_utm_crs())
    share = projected.iloc[1].area / projected.iloc[0].area
    table = select(items, area, date(2019, 1, 1), date(2019, 1, 1)).table
    chosen = table[table.selected]
    assert len(chosen) > 0 and 0.0 < share < 1.0
    np.testing.assert_allclose(chosen.aoi_uncovered, share, rtol=0.02)  # about half: the AOI part out west
    with pytest.raises(EmptySelectionError, match=r"on dates covering too little of the AOI"):
        select(items, area, date(2019, 1, 1), date(2019, 1, 1), min_aoi_coverage=1.0 - share / 2)
    reasons = select(items, area, date(2019, 1, 1), date(2019, 1, 1), min_aoi_coverage=0.0).table
    assert not reasons.reason.str.startswith("its date covers").any()


def test_products_without_cloud_cover_pass_when_max_cloud_is_100() -> None:
    """An optical product without eo:cloud_cover passes a build's default max_cloud (100) and no lower limit."""
    items = list(read_static_items(shared_path("stac", "earth-search__sentinel-2-l2a.json")))[:1]
    del items[0].properties["eo:cloud_cover"]
    aoi = shape(items[0].geometry).representative_point().buffer(0.01)
    day = items[0].datetime.date()  # type: ignore[union-attr]
    assert select(items, aoi, day, day, max_cloud=100).table.selected.all()
    with pytest.raises(EmptySelectionError, match="1 too cloudy"):
        select(items, aoi, day, day, max_cloud=60)
    assert select(items, aoi, day, day, max_cloud=None).table.selected.all()


def test_radar_products_pass_any_cloud_limit() -> None:
    """Earth Search Sentinel-1 GRD items carry no eo:cloud_cover, and clouds do not hide radar pixels: a cloud
    limit set for the optical products of a build leaves them alone."""
    items = list(read_static_items(shared_path("stac", "earth-search__sentinel-1-grd.json")))[:1]
    aoi = shape(items[0].geometry).representative_point().buffer(0.01)
    day = items[0].datetime.date()  # type: ignore[union-attr]
    for limit in (None, 0, 60, 100):
        assert select(items, aoi, day, day, max_cloud=limit).table.selected.all()


def test_cdse_items_give_tile_orbit_baseline_and_the_crs_of_their_assets() -> None:
    """CDSE (STAC 1.1): ``grid:code`` MGRS-36NYH, ``processing:version``, and ``proj:code`` on the assets only."""
    (item,) = read_static_items(V0.parent / "cdse__sentinel-2-l2a.json")
    assert "proj:code" not in item.properties and "proj:epsg" not in item.properties
    r = record_of(item)
    assert (r.tile, r.relative_orbit, r.processing_baseline, r.epsg) == ("36NYH", 135, "05.00", 32636)
    assert r.cloud_cover == item.properties["eo:cloud_cover"]
    selection = select([item], shape(item.geometry).representative_point().buffer(0.01), date(2020, 3, 1),
                       date(2020, 3, 31))  # fmt: skip
    assert selection.table.selected.all() and list(selection.table.tile) == ["36NYH"]


def test_landsat_scenes_get_their_wrs_path_and_row_as_tile_and_orbit() -> None:
    (item,) = read_static_items(V0.parent / "landsat-c2-l2.json")
    r = record_of(item)
    assert (r.tile, r.relative_orbit, r.platform, r.epsg) == ("010065", 10, "landsat-9", 32617)
    assert r.acquisition == "landsat-9_2022-01-29_R10" and r.cloud_cover == 21.12
