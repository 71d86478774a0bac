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


NEWEST = "S2A_MSIL2A_20240518T102021_N0511_R065_T32UQU_20241002T080513"  # the demo's reprocessed product
OLDER = "S2A_MSIL2A_20240518T102021_N0510_R065_T32UQU_20240518T133202"


@pytest.mark.parametrize("saved", [False, True], ids=["search", "saved selection"])
def test_a_product_whose_file_is_gone_is_left_out_by_catalog_exclude(
    demo_data, tmp_path: Path, saved: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The newest processing of a datatake lost a file: the build names it and says to leave it out; with its id
    under ``catalog.exclude`` the older processing takes its place, and the plan records the exclusion."""
    import shutil

    from eoshard.pipeline.errors import AssetReadError

    world = tmp_path / "world"
    shutil.copytree(demo_data.catalog.parent, world)
    catalog = world / demo_data.catalog.name
    gone = next(world.rglob(f"{NEWEST}/B02.tif"))
    gone.unlink()
    extra: dict[str, Any] = {"source": str(catalog)}
    if saved:
        result = _select("--source", str(catalog), "--aoi", AOI, "--start", "2024-04-01", "--end", "2024-09-30",
                         "--max-cloud", "60", "--out", str(tmp_path / "selection.json"))  # fmt: skip
        assert result.returncode == 0, result.stderr
        extra["selection"] = str(tmp_path / "selection.json")
    with pytest.raises(AssetReadError) as told:
        plan_build(parse_config(_config(demo_data, tmp_path, **extra), tmp_path))
    assert str(told.value) == (
        f"could not read asset B02 of product {NEWEST} ({gone}): {gone}: No such file or directory; the file is not "
        "there (deleted or moved since its item was written: archives withdraw products, and process them again "
        "under new names): put it back, or leave the product out (its id under catalog.exclude in the config), "
        "then run the build again"
    )
    if saved:  # the saved selection held only the newest processing
        with pytest.raises(AssetReadError, match="No such file"):
            plan_build(parse_config(_config(demo_data, tmp_path, **extra, exclude=["S2A_TYPO"]), tmp_path))
        assert caplog.messages[-1] == (
            "1 id(s) to exclude match none of the 12 products found (S2A_TYPO): check the ids"
        )
    plan = plan_build(parse_config(_config(demo_data, tmp_path, **extra, exclude=[NEWEST]), tmp_path))
    ids = {i["id"] for i in plan.items}
    assert NEWEST not in ids and (OLDER in ids) is not saved  # a search falls back on the older processing
    assert plan.fingerprint()["config"]["catalog"]["exclude"] == [NEWEST]
    unexcluded = plan_build(parse_config(_config(demo_data, tmp_path, source=str(demo_data.catalog)), tmp_path))
    assert "exclude" not in unexcluded.fingerprint()["config"]["catalog"]  # as plans of before it recorded


def test_a_refresh_may_exclude_products_the_build_did_not(demo_data, tmp_path: Path) -> None:
    """A product gone from the archive after the build: its refresh may leave it out, as the error says to."""
    from eoshard.flows.build import FINGERPRINT_EXCLUDE
    from eoshard.flows.redaction import public_config
    from eoshard.flows.refresh.errors import RefreshError
    from eoshard.flows.refresh.run import check_config
    from eoshard.pipeline.shards.layout import BUILD_DIR

    built = parse_config(_config(demo_data, tmp_path), tmp_path)
    (tmp_path / "out" / BUILD_DIR).mkdir(parents=True)
    plan = {"config": public_config(built, exclude=FINGERPRINT_EXCLUDE)}
    (tmp_path / "out" / BUILD_DIR / "plan.json").write_text(json.dumps(plan))
    refreshed = check_config(
        parse_config(_config(demo_data, tmp_path, exclude=[NEWEST]), tmp_path), tmp_path / "out"
    )
    assert refreshed.catalog.exclude == [NEWEST]
    (tmp_path / "out" / BUILD_DIR / "plan.json").unlink()  # a copy of the dataset without _build/
    with pytest.raises(RefreshError) as refused:
        check_config(built, tmp_path / "out")
    assert str(refused.value) == (
        f"{tmp_path / 'out'} has no plan.json under _build/, which a refresh compares its config with: the dataset "
        "was not made by eoshard build, or was copied without _build/ (copy that too)"
    )


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


def test_a_saved_selection_edited_out_of_shape_is_refused_by_product_and_field(demo_data, tmp_path: Path) -> None:
    """A reviewed selection edited by hand: a B11 ``proj:shape`` of one number ended in stackstac's IndexError."""
    from eoshard.pipeline.item_fields import ItemFieldError

    saved = tmp_path / "selection.json"
    result = _select("--source", str(demo_data.catalog), "--aoi", AOI, "--start", "2024-04-01", "--end",
                     "2024-09-30", "--max-cloud", "60", "--out", str(saved))  # fmt: skip
    assert result.returncode == 0, result.stderr
    items = json.loads(saved.read_text())
    edited = items["features"][2]
    edited["assets"]["B11"]["proj:shape"] = [270]
    saved.write_text(json.dumps(items))
    with pytest.raises(ItemFieldError) as told:
        plan_build(parse_config(_config(demo_data, tmp_path, selection=str(saved)), tmp_path))
    assert str(told.value).startswith(
        f"product {edited['id']} asset 'B11': proj:shape [270] is not [rows, columns] (2 whole numbers of 1 or more); "
    )
