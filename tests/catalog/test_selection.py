"""Selection on the real recorded items and on the demo catalog."""

from __future__ import annotations

import itertools
import json
from datetime import date, timedelta
from pathlib import Path

import pystac
import pytest
import shapely
from shapely.geometry import box, shape

from eoshard.catalog import EmptySelectionError, InvalidSourceError, read_static_items, select, spread_dates
from eoshard.catalog.records import record_of
from tests.conftest import shared_path


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


def _largest_gap(days: list[date], start: date, end: date) -> int:
    points = [start.toordinal(), *(d.toordinal() for d in days), end.toordinal()]
    return max(b - a for a, b in itertools.pairwise(points))


@pytest.mark.parametrize("seed", range(6))
def test_spread_dates_is_as_good_as_exhaustive_search(seed: int) -> None:
    import random

    rng = random.Random(seed)
    start = date(2024, 1, 1)
    end = start + timedelta(days=180)
    days = sorted({start + timedelta(days=rng.randrange(181)) for _ in range(10)})
    for k in (1, 2, 3, 4):
        got = spread_dates(days, k, start, end)
        assert len(got) == min(k, len(days))
        best = min(_largest_gap(list(c), start, end) for c in itertools.combinations(days, min(k, len(days))))
        assert _largest_gap([days[i] for i in got], start, end) == best
