"""The STAC API source against a real stac-fastapi-pgstac loaded with the real recorded items."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pystac
import pytest
import shapely

from eoshard.catalog import select
from eoshard.catalog.errors import EmptySelectionError, InvalidSourceError
from eoshard.catalog.product_search import search, search_records
from eoshard.catalog.stac_api import ApiOptions, UnknownCollectionError, search_api
from eoshard.catalog.static import matches, read_static_items
from tests.conftest import shared_path

FILES = (
    "planetarycomputer__sentinel-2-l2a.json",
    "earth-search__sentinel-2-l2a.json",
    "earth-search__sentinel-2-c1-l2a.json",
    "earth-search__sentinel-2-l1c.json",
    "earth-search__sentinel-1-grd.json",
)


def _features(name: str) -> list[dict[str, Any]]:
    return list(json.loads((shared_path("stac") / name).read_text())["features"])


@pytest.fixture(scope="module")
def api(pgstac: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The API loaded with every recorded item, and the same items as one static FeatureCollection file."""
    everything: list[dict[str, Any]] = []
    for name in FILES:
        features = _features(name)
        pgstac.load(features)
        everything.extend(features)
    static = tmp_path_factory.mktemp("static") / "items.json"
    static.write_text(json.dumps({"type": "FeatureCollection", "features": everything}))
    return pgstac.url, static


def _cases() -> list[tuple[str, shapely.Geometry, str, str, float | None]]:
    """(collection, area, start, end, max_cloud): boxes around real footprints, partial periods, cloud limits."""
    pc = _features(FILES[0])
    es = _features(FILES[2])
    first = shapely.geometry.shape(pc[0]["geometry"]).centroid
    other = shapely.geometry.shape(pc[200]["geometry"]).centroid
    es_centre = shapely.geometry.shape(es[5]["geometry"]).centroid
    return [
        ("sentinel-2-l2a", shapely.box(-180, -90, 180, 90), "2000-01-01", "2030-12-31", None),
        ("sentinel-2-l2a", shapely.box(-180, -90, 180, 90), "2000-01-01", "2030-12-31", 20.0),
        ("sentinel-2-l2a", first.buffer(0.5), "2000-01-01", "2030-12-31", 50.0),
        ("sentinel-2-l2a", other.buffer(2.0), "2024-01-01", "2024-06-30", 10.0),
        ("sentinel-2-c1-l2a", es_centre.buffer(8.0), "2000-01-01", "2030-12-31", 60.0),
        ("sentinel-2-l1c", shapely.box(-180, -90, 180, 90), "2025-07-17", "2025-07-17", 5.0),
        ("sentinel-1-grd", shapely.box(-180, -90, 180, 90), "2000-01-01", "2030-12-31", None),
    ]


@pytest.mark.parametrize("cloud_filter", ["cql2", "query"])
def test_api_search_equals_an_in_process_filter(api: tuple[str, Path], cloud_filter: Any) -> None:
    url, static = api
    items = list(read_static_items(static))
    for collection, area, start, end, max_cloud in _cases():
        expected = {
            i.id for i in items if i.collection_id == collection and matches(i, area, start, end, max_cloud)
        }
        result = search_api(
            url, area=area, start=start, end=end, collection=collection, max_cloud=max_cloud,
            options=ApiOptions(page_size=50, cloud_filter=cloud_filter),
        )  # fmt: skip
        got = [i.id for i in result.items]
        assert len(got) == len(set(got)), "an item came twice across pages"
        assert set(got) == expected, (collection, max_cloud, start, end)
        if len(expected) % 50:
            assert result.pages == -(-len(expected) // 50)
        assert len(expected) > 0


def test_page_count_follows_the_page_size(api: tuple[str, Path]) -> None:
    url, _ = api
    world = shapely.box(-180, -90, 180, 90)
    result = search_api(url, area=world, start="2000-01-01", end="2030-12-31", collection="sentinel-2-c1-l2a",
                        options=ApiOptions(page_size=10))  # fmt: skip
    assert len(result.items) == 33
    assert result.pages == 4


def test_static_and_api_give_the_same_selection(api: tuple[str, Path]) -> None:
    url, static = api
    pc = _features(FILES[0])
    area = shapely.geometry.shape(pc[0]["geometry"]).centroid.buffer(0.3)
    kwargs: dict[str, Any] = dict(area=area, start="2000-01-01", end="2030-12-31", collection="sentinel-2-l2a")
    from_api = search(url, **kwargs, max_cloud=60)
    from_file = search(static, **kwargs, max_cloud=60)
    assert [i.id for i in from_api] == [i.id for i in from_file]
    a = select(list(from_api), area, date(2000, 1, 1), date(2030, 12, 31), max_cloud=60, dates=5)
    b = select(list(from_file), area, date(2000, 1, 1), date(2030, 12, 31), max_cloud=60, dates=5)
    assert [i.id for i in a.items] == [i.id for i in b.items]
    assert len(a.items) > 0
    assert a.table.drop(columns=[c for c in a.table.columns if c == "item"]).equals(
        b.table.drop(columns=[c for c in b.table.columns if c == "item"])
    )


def test_unknown_collection_names_what_the_api_has(api: tuple[str, Path]) -> None:
    url, _ = api
    with pytest.raises(UnknownCollectionError, match=r"no collection 'sentinel-3-olci'.*sentinel-2-l2a"):
        search(
            url, area=shapely.box(0, 0, 1, 1), start="2020-01-01", end="2020-02-01", collection="sentinel-3-olci"
        )


def test_empty_result_is_a_clear_error(api: tuple[str, Path]) -> None:
    url, _ = api
    with pytest.raises(
        EmptySelectionError, match=r"no product of collection 'sentinel-2-l2a' in http://127\.0\.0\.1"
    ):
        search(
            url,
            area=shapely.box(0, 0, 0.1, 0.1),
            start="1990-01-01",
            end="1990-02-01",
            collection="sentinel-2-l2a",
        )


def test_a_malformed_item_the_api_serves_is_refused_by_name(api: tuple[str, Path], pgstac: Any) -> None:
    url, _ = api
    feature = _features(FILES[1])[3]
    feature = {**feature, "id": "malformed-epsg", "collection": "malformed-s2"}
    feature["properties"] = {**feature["properties"], "proj:epsg": [32632]}
    pgstac.load([feature])
    try:
        with pytest.raises(
            InvalidSourceError,
            match=r"item 'malformed-epsg' on page 1 of the STAC API http://127\.0\.0\.1:\d+.* proj:epsg \[32632\] "
            r".*tell its maintainers",
        ):
            search_api(
                url, area=shapely.box(-180, -90, 180, 90), start="2000-01-01", end="2030-12-31",
                collection="malformed-s2",
            )  # fmt: skip
    finally:
        pgstac.delete_collection("malformed-s2")


def test_items_from_the_api_are_stac_items_with_a_projection(api: tuple[str, Path]) -> None:
    url, _ = api
    query: dict[str, Any] = dict(area=shapely.box(-180, -90, 180, 90), start="2000-01-01", end="2030-12-31",
                                 collection="sentinel-2-c1-l2a")  # fmt: skip
    found = search(url, **query)
    assert all(isinstance(i, pystac.Item) for i in found)
    records = search_records(url, **query)
    assert [r.id for r in records] == [i.id for i in found]
    assert all(r.epsg is not None and 32601 <= r.epsg <= 32760 for r in records)
    assert all(r.tile is not None and r.cloud_cover is not None for r in records)


def test_signed_hrefs_lose_their_signature_when_saved() -> None:
    from eoshard.catalog.credentials import unsigned_href, unsigned_item_dict

    sas = (
        "https://x.blob.core.windows.net/c/B04.tif?st=2024-01-01&se=2024-01-02&sp=rl&sv=2021&sr=c&sig=AbC%2Bsecret"
    )
    assert unsigned_href(sas) == "https://x.blob.core.windows.net/c/B04.tif"
    s3 = "https://b.s3.amazonaws.com/k.tif?versionId=3&X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA"
    assert unsigned_href(s3) == "https://b.s3.amazonaws.com/k.tif?versionId=3"
    assert unsigned_href("https://user:pw@host.example/a.tif") == "https://host.example/a.tif"
    item = {
        "id": "a",
        "assets": {"B04": {"href": sas, "roles": ["data"]}},
        "links": [{"rel": "self", "href": sas}],
    }
    saved = json.dumps(unsigned_item_dict(item))
    assert "secret" not in saved and "sig=" not in saved
    assert json.loads(saved)["assets"]["B04"]["roles"] == ["data"]


def _signing(calls: list[str]) -> Any:
    """A modifier as users write them: it takes a pystac Item and appends a signature to each asset's href."""

    def sign(item: pystac.Item) -> None:
        calls.append(item.id)
        for asset in item.assets.values():
            asset.href = f"{asset.href}?sig=s3cret"

    return sign


@pytest.mark.parametrize("source", ["api", "static"])
def test_a_modifier_signs_every_item_once(api: tuple[str, Path], source: str) -> None:
    url, static = api
    calls: list[str] = []
    found = search(
        url if source == "api" else static, area=shapely.box(-180, -90, 180, 90), start="2000-01-01",
        end="2030-12-31", collection="sentinel-2-c1-l2a", options=ApiOptions(page_size=10, modifier=_signing(calls)),
    )  # fmt: skip
    assert len(found) == 33
    assert sorted(calls) == sorted(i.id for i in found)
    hrefs = [a.href for i in found for a in i.assets.values()]
    assert hrefs and all(h.endswith(".tif?sig=s3cret") or h.endswith("?sig=s3cret") for h in hrefs)
    assert all(h.count("?sig=") == 1 for h in hrefs)
