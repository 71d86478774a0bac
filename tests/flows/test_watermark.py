"""The watermark search on the demo catalog: only acquisitions after the newest date a dataset holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from eoshard.catalog import search
from eoshard.flows.config import parse_config
from eoshard.flows.refresh import newer_items, reprocessed_items, search_newer, watermark
from eoshard.flows.refresh.watermark import ManifestError


@pytest.fixture(scope="module")
def config(demo_data: Any) -> Any:
    data = {
        "name": "demo-refresh",
        "catalog": {"source": str(demo_data.catalog), "collection": "sentinel-2-l2a", "max_cloud": 60},
        "aoi": str(demo_data.aoi),
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": ["B04"],
        "output": {"path": "out"},
    }
    return parse_config(data, demo_data.catalog.parent)


def _second(item: Any) -> str:
    return item.datetime.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_search_newer_returns_exactly_the_acquisitions_after_the_watermark(config: Any, demo_data: Any) -> None:
    from eoshard.flows.aoi import read_aoi

    area, _ = read_aoi(config.aoi)
    everything = list(search(config.catalog.source, area=area, start="2024-04-01", end="2024-09-30",
                             collection="sentinel-2-l2a", max_cloud=60))  # fmt: skip
    dates = sorted({_second(i) for i in everything})
    assert (len(everything), len(dates)) == (15, 7)  # the demo world's known selection
    manifest = {
        "name": "half",
        "dates": dates[:4],
        "products": [i.id for i in everything if _second(i) in dates[:4]],
    }
    mark = watermark(manifest)
    assert mark == datetime.fromisoformat(dates[3]).replace(tzinfo=UTC)
    newer = search_newer(config, mark)
    assert sorted({_second(i) for i in newer}) == dates[4:]
    assert sorted(i.id for i in newer) == sorted(i.id for i in everything if _second(i) > dates[3])
    # up to date: nothing newer than the last date
    assert search_newer(config, watermark({"dates": dates})) == []


def test_reprocessed_products_of_held_dates_are_found(config: Any) -> None:
    from eoshard.flows.aoi import read_aoi

    area, _ = read_aoi(config.aoi)
    everything = list(search(config.catalog.source, area=area, start="2024-04-01", end="2024-09-30",
                             collection="sentinel-2-l2a", max_cloud=60))  # fmt: skip
    dates = sorted({_second(i) for i in everything})
    left_out = everything[5]
    manifest = {"dates": dates, "products": [i.id for i in everything if i.id != left_out.id]}
    assert [i.id for i in reprocessed_items(everything, manifest)] == [left_out.id]
    assert newer_items(everything, watermark(manifest)) == []


def test_a_manifest_without_dates_is_a_clear_error() -> None:
    with pytest.raises(ManifestError, match=r"lists no dates .*build it again before refreshing"):
        watermark({"name": "x", "dates": []})
