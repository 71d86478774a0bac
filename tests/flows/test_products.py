"""Where a job's products come from: a STAC API, a static catalog, or a saved selection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pystac
import pytest

from eoshard.catalog import read_static_items
from eoshard.flows.build import plan_build
from eoshard.flows.config import ConfigError, parse_config
from eoshard.flows.products import api_options
from tests.services.pgstac import PgStac, with_file_uris

DEMO_COLLECTION = "sentinel-2-l2a"
AOI = "11.955,48.0,12.035,48.04"


def _config(demo_data: Any, tmp_path: Path, **catalog: Any) -> dict[str, Any]:
    return {
        "name": "products",
        "catalog": {"source": str(demo_data.catalog), "max_cloud": 60, **catalog},
        "aoi": str(demo_data.aoi),
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": ["B02", "B11"],
        "patches": {"size": 48},
        "output": {"path": str(tmp_path / "out")},
    }


@pytest.fixture
def demo_api(pgstac: PgStac, demo_data: Any) -> Any:
    items = list(read_static_items(demo_data.catalog))
    pgstac.load(with_file_uris(items))
    yield pgstac.url
    pgstac.delete_collection(DEMO_COLLECTION)


def _select(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from eoshard.flows.cli import main; main()", "select", *args],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def test_a_build_planned_from_the_api_equals_one_from_the_static_catalog(demo_data, demo_api, tmp_path) -> None:
    static = plan_build(parse_config(_config(demo_data, tmp_path), tmp_path))
    api = plan_build(
        parse_config(_config(demo_data, tmp_path, source=demo_api, collection=DEMO_COLLECTION), tmp_path)
    )
    assert [i["id"] for i in api.items] == [i["id"] for i in static.items]
    assert api.dates == static.dates and len(api.dates) == 7
    for a, s in zip(api.items, static.items, strict=True):
        assert a["assets"]["B02"]["href"] == Path(s["assets"]["B02"]["href"]).resolve().as_uri()
    for name in static.cubes:
        assert api.cubes[name].shape == static.cubes[name].shape
        assert (api.cubes[name].x.values == static.cubes[name].x.values).all()
    # pixels read through the API's file:// hrefs equal those of the static catalog
    window = dict(time=3, y=slice(100, 140), x=slice(200, 260))
    assert (api.cubes["s2_10m"].isel(window).values == static.cubes["s2_10m"].isel(window).values).all()


def test_select_from_the_api_equals_select_from_the_static_catalog(demo_data, demo_api) -> None:
    common = ["--aoi", AOI, "--start", "2024-04-01", "--end", "2024-09-30", "--max-cloud", "60", "--dates", "4",
              "--json", "--collection", DEMO_COLLECTION]  # fmt: skip
    from_api, from_file = (
        _select("--source", demo_api, *common),
        _select("--source", str(demo_data.catalog), *common),
    )
    assert from_api.returncode == 0, from_api.stderr
    assert from_file.returncode == 0, from_file.stderr
    assert json.loads(from_api.stdout) == json.loads(from_file.stdout)
    assert len({r["datetime"][:10] for r in json.loads(from_api.stdout)}) == 4


def test_the_build_uses_a_saved_selection(demo_data, tmp_path: Path) -> None:
    saved = tmp_path / "selection.json"
    result = _select("--source", str(demo_data.catalog), "--aoi", AOI, "--start", "2024-04-01", "--end",
                     "2024-09-30", "--max-cloud", "60", "--dates", "3", "--out", str(saved))  # fmt: skip
    assert result.returncode == 0, result.stderr
    chosen = pystac.ItemCollection.from_file(str(saved))
    plan = plan_build(parse_config(_config(demo_data, tmp_path, selection=str(saved)), tmp_path))
    assert sorted(i["id"] for i in plan.items) == sorted(i.id for i in chosen)
    assert plan.dates == sorted({str(i.datetime)[:19].replace(" ", "T") for i in chosen})
    assert len(plan.dates) == 3


def test_catalog_config_keeps_urls_and_reads_header_values_from_the_environment(
    demo_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://planetarycomputer.microsoft.com/api/stac/v1"
    config = parse_config(
        _config(demo_data, tmp_path, source=url, headers_from_env={"Authorization": "EOSHARD_TEST_TOKEN"}),
        tmp_path,
    )
    assert config.catalog.source == url
    with pytest.raises(ConfigError, match="EOSHARD_TEST_TOKEN, which is not set"):
        api_options(config.catalog)
    monkeypatch.setenv("EOSHARD_TEST_TOKEN", "Bearer abc")
    assert dict(api_options(config.catalog).headers) == {"Authorization": "Bearer abc"}
    with pytest.raises(ConfigError, match=r"catalog.source: file not found: .*nowhere.json"):
        parse_config(_config(demo_data, tmp_path, source="nowhere.json"), tmp_path)
