"""The DHuS source through sentinelsat, against a recorded-response server replaying real hub answers."""

from __future__ import annotations

import gzip
import json
import re
import time
from datetime import date, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
import shapely
import yaml

from eoshard.catalog import search, select
from eoshard.catalog.records import record_of
from eoshard.catalog.stac_api import CredentialsError
from tests.conftest import shared_path
from tests.services.dhus_replay import VALID_ACCOUNT, DhusReplay

# The query of sentinelsat's recorded test_s2_cloudcover: Sentinel-2 over Rondonia, 12-28 Dec 2018, cloud <= 10 %.
RONDONIA = shapely.box(-66.2695, -8.0592, -57.3047, 0.7031)


def _recorded_entries(cassette: str) -> list[dict]:
    interactions = yaml.safe_load((shared_path("dhus", "sentinelsat_cassettes") / cassette).read_text())[
        "interactions"
    ]
    entries = []
    for interaction in interactions:
        body = interaction["response"]["body"]["string"]
        if isinstance(body, bytes):  # recorded gzip-encoded
            body = gzip.decompress(body)
        feed = json.loads(body)["feed"]
        found = feed.get("entry", [])
        entries.extend([found] if isinstance(found, dict) else found)
    return entries


def test_dhus_products_become_records_the_selection_understands(dhus_replay: DhusReplay, monkeypatch) -> None:
    monkeypatch.setenv("DHUS_USER", VALID_ACCOUNT[0])
    monkeypatch.setenv("DHUS_PASSWORD", VALID_ACCOUNT[1])
    found = search(dhus_replay.url, kind="dhus", area=RONDONIA, start=datetime(2018, 12, 12),
                   end=datetime(2018, 12, 28), collection="sentinel-2", max_cloud=10)  # fmt: skip
    entries = _recorded_entries("test_s2_cloudcover.yaml")
    assert sorted(i.id for i in found) == sorted(e["title"] for e in entries)
    assert len(found) == len(entries) > 0
    by_title = {e["title"]: e for e in entries}
    for item in found:
        record = record_of(item)
        entry = by_title[item.id]
        doubles = entry["double"] if isinstance(entry["double"], list) else [entry["double"]]
        cloud = next(float(d["content"]) for d in doubles if d["name"] == "cloudcoverpercentage")
        strings = {s["name"]: s["content"] for s in entry["str"]}
        assert record.cloud_cover == cloud <= 10
        assert record.platform == item.id[:3].lower().replace("s2", "sentinel-2")
        tile = re.search(r"_T(\d\d[A-Z]{3})_", item.id)
        assert tile is not None
        assert record.tile == strings.get("tileid", tile.group(1)) == tile.group(1)
        assert record.epsg == 32700 + int(tile.group(1)[:2])  # south of the equator
        assert record.processing_baseline == strings["processingbaseline"]
        assert record.footprint.equals(shapely.from_wkt(strings["footprint"]))
        assert record.relative_orbit is not None
    chosen = select(list(found), RONDONIA, date(2018, 12, 12), date(2018, 12, 28), max_cloud=10, dates=3)
    assert 0 < len(chosen.items) <= len(found)
    assert set(chosen.table["id"]) == {i.id for i in found}


def test_paging_follows_the_hub(dhus_replay: DhusReplay) -> None:
    found = search(dhus_replay.url, kind="dhus", area=shapely.box(0, 0, 10, 10), start=datetime(2015, 12, 1),
                   end=datetime(2015, 12, 31))  # fmt: skip
    entries = _recorded_entries("test_large_query.yaml")
    assert len(found) == len({e["id"] for e in entries}) > 300
    starts = sorted(
        int(dict(parse_qsl(urlsplit(r).query))["start"])
        for r in dhus_replay.requests
        if "2015-12-31" in dict(parse_qsl(urlsplit(r).query, encoding="latin1")).get("q", "")
    )
    assert starts == list(range(0, len(found), 100))  # one request per page of 100, as the hub pages


def test_wrong_credentials_are_named_without_the_password(dhus_replay: DhusReplay, monkeypatch) -> None:
    monkeypatch.setenv("DHUS_USER", "someone")
    monkeypatch.setenv("DHUS_PASSWORD", "hunter2-secret")
    area = shapely.Polygon([(0, 0), (1, 1), (0, 1), (0, 0)])
    with pytest.raises(CredentialsError, match=r"refused the credentials .*DHUS_USER") as err:
        search(dhus_replay.url, kind="dhus", area=area, start=datetime(2015, 1, 1), end=datetime(2015, 1, 2))
    assert "hunter2-secret" not in str(err.value)


def test_an_unreachable_mirror_says_what_to_check(monkeypatch) -> None:
    from eoshard.catalog.dhus import search_dhus
    from eoshard.catalog.stac_api import ApiError

    monkeypatch.setenv("DHUS_USER", "someone")
    monkeypatch.setenv("DHUS_PASSWORD", "secret")
    start = time.monotonic()
    with pytest.raises(ApiError, match=r"DHuS mirror at http://127.0.0.1:9/dhus could not be reached: .*; check the "
                       r"URL \(the mirror's root, e.g. https://host/dhus\) and the network"):  # fmt: skip
        search_dhus("http://127.0.0.1:9/dhus", area=RONDONIA, start=date(2018, 12, 12), end=date(2018, 12, 28))
    assert time.monotonic() - start < 5.0  # the default policy: two quick retries where nothing listens
