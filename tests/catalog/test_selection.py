"""Selection on the real recorded items and on the demo catalog."""

from __future__ import annotations

import itertools
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import pystac
import pytest
import shapely
from shapely.geometry import box, shape

from eoshard.catalog import EmptySelectionError, InvalidSourceError, read_static_items, select, spread_dates
from eoshard.catalog.errors import InvalidQueryError, SourceNotFoundError
from eoshard.catalog.records import record_of
from tests.conftest import shared_path
from tests.services.http_answers import answering


def _items(name: str) -> list[pystac.Item]:
    return list(read_static_items(shared_path("stac", name)))


def test_records_normalise_both_conventions() -> None:
    pc = record_of(_items("planetarycomputer__sentinel-2-l2a.json")[0])
    es = record_of(_items("earth-search__sentinel-2-l2a.json")[0])
    for r in (pc, es):
        assert r.tile is not None and len(r.tile) == 5
        assert r.epsg is not None and 32601 <= r.epsg <= 32760
        assert r.cloud_cover is not None and r.processing_baseline is not None
        assert "_N" not in r.datatake.rsplit("_", 1)[0][-7:]
    assert es.tile == es.item.properties["grid:code"].removeprefix("MGRS-")


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        ("properties", "proj:epsg", [32632]),  # found by the fuzz test: a TypeError in record_of
        ("asset", "proj:epsg", "EPSG:32632"),
        ("properties", "sat:relative_orbit", "R022"),
        ("properties", "s2:nodata_pixel_percentage", {"value": 3}),
        ("asset", "proj:code", "EPSG:326x2"),
        ("properties", "proj:code", 32632),
        ("properties", "mgrs:utm_zone", []),  # found by the fuzz test: a TypeError in record_of
        ("properties", "mgrs:utm_zone", 30.5),
        ("properties", "landsat:wrs_row", "row 65"),
    ],
)
def test_a_malformed_field_records_read_is_refused_with_the_item_and_field_named(
    tmp_path, where: str, key: str, value: object
) -> None:
    data = json.loads(shared_path("stac", "earth-search__sentinel-2-l2a.json").read_text())
    feature = data["features"][1]
    fields = feature["properties"] if where == "properties" else next(iter(feature["assets"].values()))
    fields[key] = value
    path = tmp_path / "items.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidSourceError, match=f"feature 1 of {path}.*{key} {value!r}".replace("[", r"\[")):
        list(read_static_items(path))


@pytest.mark.parametrize(
    ("key", "change", "said"),
    [
        ("geometry", lambda g: g["coordinates"][0][2].__setitem__(1, 4069009974.0), "geometry's bounds"),  # fuzz
        ("bbox", lambda b: b.__setitem__(3, 91.5), "'bbox'"),
    ],
)
def test_a_footprint_not_in_degrees_is_refused(tmp_path: Path, key: str, change: Any, said: str) -> None:
    """Selection projects footprints from longitude and latitude: a latitude of 4e9 (found by the fuzz test)
    made GEOS give up densifying the footprint, with no item named."""
    data = json.loads(shared_path("stac", "earth-search__sentinel-2-l2a.json").read_text())
    change(data["features"][1][key])
    path = tmp_path / "items.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidSourceError, match=f"feature 1 of {path}.*its {said}.*not longitude and latitude"):
        list(read_static_items(path))


def test_an_item_without_geometry_has_its_bbox_as_footprint_heights_or_not(tmp_path: Path) -> None:
    """STAC allows a null geometry and a bbox of 6 values (heights third and sixth): shapely's box took the 6 as
    its arguments and raised a TypeError."""
    data = json.loads(shared_path("stac", "earth-search__sentinel-2-l2a.json").read_text())
    features = data["features"][:2]
    minx, miny, maxx, maxy = features[0]["bbox"]
    features[0].update(geometry=None, bbox=[minx, miny, -10.0, maxx, maxy, 2500.0])
    features[1].update(geometry=None)
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    records = [record_of(item) for item in read_static_items(path)]
    assert records[0].footprint.equals(box(minx, miny, maxx, maxy))
    assert records[1].footprint.equals(box(*features[1]["bbox"]))


def _catalog_of(features: list[dict[str, object]], folder: Path) -> Path:
    catalog = pystac.Catalog("malformed", "a catalog of real recorded items, one of them changed")
    for feature in features:
        catalog.add_item(pystac.Item.from_dict({**feature, "links": []}, migrate=False))  # offline: no API links
    catalog.normalize_and_save(str(folder), pystac.CatalogType.SELF_CONTAINED)
    return folder / "catalog.json"


def test_a_malformed_item_of_a_catalog_is_refused_by_name(tmp_path: Path) -> None:
    features = json.loads(shared_path("stac", "earth-search__sentinel-2-l2a.json").read_text())["features"][:3]
    assert len(list(read_static_items(_catalog_of(features, tmp_path / "good")))) == 3
    features[2]["properties"]["proj:epsg"] = [32632]
    path = _catalog_of(features, tmp_path / "bad")
    with pytest.raises(
        InvalidSourceError,
        match=rf"item '{features[2]['id']}' \(.*{features[2]['id']}\.json\) of catalog {path} .*proj:code 'EPSG:\[32632\]'",
    ):
        list(read_static_items(path))


def test_a_catalog_linking_to_a_missing_item_is_a_clear_error(tmp_path: Path) -> None:
    features = json.loads(shared_path("stac", "earth-search__sentinel-2-l2a.json").read_text())["features"][:2]
    path = _catalog_of(features, tmp_path / "cat")
    (tmp_path / "cat" / features[1]["id"] / f"{features[1]['id']}.json").unlink()
    with pytest.raises(InvalidSourceError, match=rf"catalog {path}: an item or child .* cannot be read"):
        list(read_static_items(path))


@pytest.mark.parametrize(
    ("name", "max_cloud"),
    [
        ("planetarycomputer__sentinel-2-l2a.json", 40),
        ("earth-search__sentinel-2-l2a.json", 60),
        ("earth-search__sentinel-2-c1-l2a.json", 60),
    ],
)
def test_selection_on_real_items_meets_thresholds_and_covers_the_aoi(name: str, max_cloud: float) -> None:
    items = _items(name)
    records = [record_of(i) for i in items]
    # the AOI: the middle of the tile with the most products
    tile = max(
        sorted({r.tile for r in records if r.tile}),
        key=lambda t: sum(r.tile == t and (r.cloud_cover or 100) <= max_cloud for r in records),
    )
    footprints = [r.footprint for r in records if r.tile == tile and (r.cloud_cover or 100) <= max_cloud]
    aoi = shapely.intersection_all(footprints).representative_point().buffer(0.01)
    dates = sorted({r.datetime.date() for r in records})
    selection = select(items, aoi, dates[0], dates[-1], max_cloud=max_cloud)
    table = selection.table
    chosen = table[table.selected]
    assert len(chosen) > 0
    assert (chosen.cloud_cover <= max_cloud).all()
    assert (chosen.aoi_overlap > 0.999).all()
    assert set(selection.items.items[i].id for i in range(len(selection.items))) == set(chosen.id)
    assert (table[~table.selected].reason != "").all()  # every product left out says why
    assert selection.uncovered.area < 1e-9 * aoi.area + 1e-12  # this AOI lies inside the tile


def test_same_inputs_same_selection() -> None:
    items = _items("earth-search__sentinel-2-l2a.json")
    aoi = shape(items[0].geometry).centroid.buffer(0.02)
    a = select(items, aoi, date(2000, 1, 1), date(2030, 1, 1))
    b = select(list(reversed(items)), aoi, date(2000, 1, 1), date(2030, 1, 1))
    assert a.table.equals(b.table)


def test_the_demo_duplicate_collapses_to_the_newest_baseline(demo_data) -> None:
    items = list(read_static_items(demo_data.catalog))
    aoi = shape(json.loads(demo_data.aoi.read_text())["features"][0]["geometry"])
    selection = select(items, aoi, date(2024, 4, 1), date(2024, 9, 30), max_cloud=60)
    table = selection.table.set_index("id")
    old = "S2A_MSIL2A_20240518T102021_N0510_R065_T32UQU_20240518T133202"
    new = "S2A_MSIL2A_20240518T102021_N0511_R065_T32UQU_20241002T080513"
    assert table.loc[new, "selected"]
    assert not table.loc[old, "selected"]
    assert table.loc[old, "reason"].startswith(f"reprocessed copy: {new}")
    # both UTM tiles are needed: the AOI straddles them
    assert sorted(table[table.selected].tile.unique()) == ["32UQU", "33UUP"]
    assert selection.uncovered.area / aoi.area < 0.01
    with pytest.raises(
        EmptySelectionError, match=r"none of 19 products qualifies .*: 1 reprocessed copies, 18 off the AOI"
    ):
        select(items, box(-106.1, 35.5, -105.9, 35.7), date(2024, 4, 1), date(2024, 9, 30))


def test_an_excluded_product_is_left_out_by_id_and_its_older_copy_takes_its_place(demo_data) -> None:
    items = list(read_static_items(demo_data.catalog))
    aoi = shape(json.loads(demo_data.aoi.read_text())["features"][0]["geometry"])
    old = "S2A_MSIL2A_20240518T102021_N0510_R065_T32UQU_20240518T133202"
    new = "S2A_MSIL2A_20240518T102021_N0511_R065_T32UQU_20241002T080513"
    table = select(items, aoi, date(2024, 4, 1), date(2024, 9, 30), max_cloud=60, exclude=[new]).table
    table = table.set_index("id")
    assert table.loc[new, "reason"] == "excluded by id" and not table.loc[new, "selected"]
    assert table.loc[old, "selected"] and table.loc[old, "reason"] == ""
    everything = select(items, aoi, date(2024, 4, 1), date(2024, 9, 30), max_cloud=60)
    assert sorted(table.index[table.selected]) == sorted(
        old if i == new else i for i in everything.table.id[everything.table.selected]
    )
    with pytest.raises(EmptySelectionError, match=r"none of 19 products qualifies .*: 19 excluded by id;"):
        select(items, aoi, date(2024, 4, 1), date(2024, 9, 30), exclude=[i.id for i in items])


def _largest_gap(days: list[date], start: date, end: date) -> int:
    points = [start.toordinal(), *(d.toordinal() for d in days), end.toordinal()]
    return max(b - a for a, b in itertools.pairwise(points))


def _squared_gaps(days: list[date], start: date, end: date) -> int:
    points = [start.toordinal(), *(d.toordinal() for d in days), end.toordinal()]
    return sum((b - a) ** 2 for a, b in itertools.pairwise(points))


@pytest.mark.parametrize("seed", range(6))
def test_spread_dates_is_as_good_as_exhaustive_search(seed: int) -> None:
    """As many dates as the minimum gap allows, then the smallest largest gap, then the lowest total cost, then the
    smallest sum of squared gaps: each against every combination."""
    import random

    rng = random.Random(seed)
    start = date(2024, 1, 1)
    end = start + timedelta(days=180)
    days = sorted({start + timedelta(days=rng.randrange(181)) for _ in range(10)})
    costs = [float(rng.choice([0, 1, 5, 40])) for _ in days]
    for k, min_gap in itertools.product((1, 2, 3, 4, 6), (0, 20)):
        got = spread_dates(days, k, start, end, min_gap, costs)
        allowed = [
            c
            for size in range(1, min(k, len(days)) + 1)
            for c in itertools.combinations(range(len(days)), size)
            if all((days[b] - days[a]).days >= max(min_gap, 1) for a, b in itertools.pairwise(c))
        ]
        most = max(len(c) for c in allowed)

        def score(c: tuple[int, ...] | list[int]) -> tuple[int, float, int]:
            chosen = [days[i] for i in c]
            return _largest_gap(chosen, start, end), sum(costs[i] for i in c), _squared_gaps(chosen, start, end)

        assert len(got) == most
        assert score(got) == min(score(c) for c in allowed if len(c) == most)


def test_spread_dates_breaks_a_tie_in_the_gap_by_cost_even_when_an_earlier_gap_is_wider() -> None:
    """Both pairs leave 50 days at the end; the pair through the clear 10th day has the wider gap before it."""
    start = date(2024, 1, 1)
    days = [start + timedelta(days=n) for n in (10, 20, 50)]
    assert spread_dates(days, 2, start, start + timedelta(days=100), costs=[0.0, 100.0, 0.0]) == [0, 2]


def test_spread_dates_spreads_evenly_where_the_period_end_decides_the_largest_gap() -> None:
    """Twelve fortnightly acquisitions from 3 April to 15 September, the period to 31 October: every choice of six
    that ends on 15 September leaves the same 46 days at the end. The most even is every second acquisition from
    18 April (the earliest-first tie-break took 3 April, 18 April, 3 May, then 45-day steps)."""
    days = [date(2024, 4, 3) + timedelta(days=15 * n) for n in range(12)]
    assert spread_dates(days, 6, date(2024, 4, 1), date(2024, 10, 31)) == [1, 3, 5, 7, 9, 11]
    # a cost still comes before evenness: with 18 April cloudy, 3 May, then steps of 15 and 4 x 30 days (as even as
    # any choice without it: 3 April first would need a 45-day step)
    costs = [0.0, 50.0, *[0.0] * 10]
    assert spread_dates(days, 6, date(2024, 4, 1), date(2024, 10, 31), costs=costs) == [2, 3, 5, 7, 9, 11]


def _es_s1() -> list[pystac.Item]:
    return _items("earth-search__sentinel-1-grd.json")


def test_the_slices_of_one_sentinel1_datatake_are_not_copies_of_each_other() -> None:
    """14 real GRD slices of datatake 425493 (2024-04-19): an AOI across two of them takes both."""
    items = [i for i in _es_s1() if i.properties["s1:datatake_id"] == "425493"]
    assert len(items) == 14
    by_slice = {i.properties["s1:slice_number"]: i for i in items}
    two = shapely.union_all([shape(by_slice[n].geometry) for n in ("9", "10")])
    aoi = two.centroid.buffer(0.2)
    table = select(items, aoi, date(2024, 4, 19), date(2024, 4, 19)).table.set_index("id")
    assert sorted(table.index[table.selected]) == sorted(by_slice[n].id for n in ("9", "10"))
    assert not table.reason.str.startswith("reprocessed").any()


def test_an_l1c_and_an_l2a_of_one_datatake_are_different_products() -> None:
    """Earth Search's L1C and L2A of tile 24MVV, 2025-07-31: not copies; the L2A of v1 and of c1 are."""
    items = [
        i
        for name in ("sentinel-2-l2a", "sentinel-2-c1-l2a", "sentinel-2-l1c")
        for i in _items(f"earth-search__{name}.json")
        if record_of(i).tile == "24MVV" and str(i.datetime)[:10] == "2025-07-31"
    ]
    assert sorted(str(i.collection_id) for i in items) == ["sentinel-2-c1-l2a", "sentinel-2-l1c", "sentinel-2-l2a"]
    aoi = shape(items[0].geometry).representative_point().buffer(0.01)
    table = select(items, aoi, date(2025, 7, 31), date(2025, 7, 31)).table.set_index("id")
    copies = table[table.reason.str.startswith("reprocessed copy")]
    assert [str(next(i for i in items if i.id == c).collection_id) for c in copies.index] in (
        ["sentinel-2-l2a"],
        ["sentinel-2-c1-l2a"],
    )
    l1c = next(i.id for i in items if i.collection_id == "sentinel-2-l1c")
    assert not table.loc[l1c, "reason"].startswith("reprocessed")


def test_an_item_listed_twice_is_one_product() -> None:
    item = _items("earth-search__sentinel-2-l2a.json")[0]
    aoi = shape(item.geometry).representative_point().buffer(0.01)
    day = item.datetime.date()  # type: ignore[union-attr]
    table = select([item, item.clone()], aoi, day, day).table
    assert (list(table.id), list(table.selected)) == ([item.id], [True])


def test_the_valid_fraction_counts_the_nodata_once() -> None:
    """A real Planetary Computer product with 72 % nodata: its footprint traces the data already, so its valid
    fraction is its AOI overlap. Drawn as the whole tile instead, the nodata share is taken off."""
    item = _items("planetarycomputer__sentinel-2-l2a.json")[0]
    nodata = item.properties["s2:nodata_pixel_percentage"]
    assert nodata > 70
    footprint = shape(item.geometry)
    aoi = footprint.convex_hull.buffer(0.5)  # the whole product inside the AOI
    day = item.datetime.date()  # type: ignore[union-attr]
    row = select([item], aoi, day, day).table.iloc[0]
    assert row.valid_fraction == pytest.approx(row.aoi_overlap, rel=0.01)
    b02 = item.assets["B02"].extra_fields
    x0, y1 = b02["proj:transform"][2], b02["proj:transform"][5]
    x1, y0 = x0 + 10 * b02["proj:shape"][1], y1 - 10 * b02["proj:shape"][0]
    tile = gpd.GeoSeries([box(x0, y0, x1, y1)], crs=item.properties["proj:epsg"]).to_crs(4326).iloc[0]
    whole = item.clone()
    whole.geometry = shapely.geometry.mapping(tile)
    row = select([whole], tile.buffer(0.5), day, day).table.iloc[0]
    assert row.valid_fraction == pytest.approx(row.aoi_overlap * (1 - nodata / 100), rel=0.01)


def test_a_whole_tile_in_a_continent_sized_aoi_is_no_sliver() -> None:
    """A tile covers 0.05 % of a 60 x 40 degree AOI: taken (it is all of its own footprint); a product adding
    under 0.1 % of a small AOI and of itself is a sliver, and says so."""
    item = _items("earth-search__sentinel-2-l2a.json")[0]
    day = item.datetime.date()  # type: ignore[union-attr]
    centre = shape(item.geometry).centroid
    huge = box(centre.x - 30, centre.y - 20, centre.x + 30, centre.y + 20)
    assert select([item], huge, day, day).table.selected.all()
    footprint = shape(item.geometry)
    _, y0, x1, y1 = footprint.bounds
    strip = box(x1 - 0.0004, (y0 + y1) / 2 - 0.2, x1 + 0.5, (y0 + y1) / 2 + 0.2)  # the footprint's east edge
    assert strip.intersects(footprint)
    with pytest.raises(EmptySelectionError, match=r"1 slivers of the AOI"):
        select([item], strip, day, day)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"start": "2024-05-01", "end": "2024-04-01"}, r"ends \(2024-04-01\) before it starts \(2024-05-01\)"),
        ({"start": "2024-04-01", "end": "May"}, r"end 'May' is not a date: expected YYYY-MM-DD"),
        ({"max_cloud": -5}, r"max_cloud is a percentage, 0..100, not -5"),
        ({"dates": 0}, r"dates is how many dates to choose, at least 1, not 0"),
        ({"min_aoi_coverage": 95}, r"min_aoi_coverage is a share of the AOI, 0..1, not 95"),
        ({"area": box(500000, 4000000, 510000, 4010000)}, r"not longitude and latitude in degrees"),
        ({"area": box(27.3, -7.9, 27.3, -7.5)}, r"has no area"),
    ],
)
def test_an_impossible_query_is_refused_with_what_to_give(query: dict[str, object], message: str) -> None:
    item = _items("earth-search__sentinel-2-l2a.json")[0]
    args: dict[str, object] = {"area": shape(item.geometry).representative_point().buffer(0.01),
                               "start": "2025-07-01", "end": "2025-07-31", **query}  # fmt: skip
    with pytest.raises(InvalidQueryError, match=message):
        select([item], args.pop("area"), args.pop("start"), args.pop("end"), **args)  # type: ignore[arg-type]


def test_strings_are_dates_to_select_as_to_search() -> None:
    item = _items("earth-search__sentinel-2-l2a.json")[0]
    aoi = shape(item.geometry).representative_point().buffer(0.01)
    day = str(item.datetime)[:10]
    assert select([item], aoi, day, day).table.selected.all()


def test_a_static_source_over_http_and_its_errors() -> None:
    """A FeatureCollection served by a real HTTP server reads as the file does; a 404 names the URL."""
    path = shared_path("stac", "site2-2020_jun_jul-35MNM.geojson")
    with answering(path.read_bytes(), [404]) as (url, _):
        with pytest.raises(SourceNotFoundError, match=rf"catalog source {url}/items.json could not be read \(404"):
            list(read_static_items(f"{url}/items.json"))
        remote = [i.id for i in read_static_items(f"{url}/items.json")]
    assert remote == [i.id for i in read_static_items(path)] and len(remote) == 13
    with pytest.raises(SourceNotFoundError, match=r"http://127.0.0.1:9/x.json could not be read"):
        list(read_static_items("http://127.0.0.1:9/x.json"))


def test_a_collection_the_source_lacks_is_named_beside_those_it_holds() -> None:
    with pytest.raises(EmptySelectionError, match=r"no item of collection 'sentinel-2-L1C'; its items are of "
                       r"'sentinel-2-l1c' \(31\)"):  # fmt: skip
        list(read_static_items(shared_path("stac", "earth-search__sentinel-2-l1c.json"), "sentinel-2-L1C"))
