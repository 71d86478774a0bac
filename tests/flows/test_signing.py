"""Each product is signed by the modifier of its own source, at the search and again in the middle of a build
(``eoshard.flows.signing``): Sentinel-1 by ``s1.modifier``, the others by ``catalog.modifier``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest

from eoshard.flows.aoi import read_aoi
from eoshard.flows.build import BuildPlan, plan_build, s1_products
from eoshard.flows.config import BuildConfig, parse_config
from eoshard.flows.redaction import public_config
from eoshard.flows.signing import SigningError, signed_again
from eoshard.pipeline.sensors import S1, item_sensor
from tests.demo_config import demo_build_config, demo_s1_config

pytestmark = pytest.mark.filterwarnings("ignore:1 of 480 label geometries were invalid:UserWarning")

S2_SIGNS = "tests.services.signing:stamp_s2"
S1_SIGNS = "tests.services.signing:stamp_s1"
HR_SIGNS = "tests.services.signing:stamp_hr"


def _config(demo_data: Any, tmp_path: Path, s1_modifier: str | None = None) -> BuildConfig:
    data = demo_s1_config(demo_data, tmp_path / "out")
    data["s1"]["modifier"] = s1_modifier
    return parse_config(data, tmp_path)


def _with_modifiers(config: BuildConfig) -> BuildConfig:
    assert config.s1 is not None
    return config.model_copy(update={
        "catalog": config.catalog.model_copy(update={"modifier": S2_SIGNS}),
        "s1": config.s1.model_copy(update={"modifier": S1_SIGNS}),
    })  # fmt: skip


def test_the_sentinel_1_search_signs_with_s1_modifier(demo_data: Any, tmp_path: Path) -> None:
    config = _config(demo_data, tmp_path, S1_SIGNS)
    area, crs = read_aoi(config.aoi)
    items = list(s1_products(config, gpd.GeoSeries([area], crs=crs).to_crs(4326).iloc[0]))
    hrefs = [a.href for i in items for a in i.assets.values()]
    assert len(items) == 8 and len(hrefs) >= 16  # 4 overpasses x 2 tiles
    assert all(h.endswith("?sig=s1") and h.count("?") == 1 for h in hrefs)


def _hrefs(plan: BuildPlan, hr: bool = False) -> dict[str, set[str]]:
    """Product id -> the hrefs of its assets in the shard tasks' sources (the paired HR source's, with ``hr``)."""
    assert plan.sources is not None
    groups = [*plan.sources.groups.values(), *(g for g in (plan.sources.scl, plan.sources.qa) if g is not None)]
    if hr:
        assert plan.sources.hr is not None
        groups = [plan.sources.hr]
    found: dict[str, set[str]] = {}
    for group in groups:
        for step in group.steps:
            for product in step:
                found.setdefault(product.id, set()).update(a.href for a in product.assets.values())
    return found


def test_signing_again_gives_each_product_its_own_sources_signature_once(demo_data: Any, tmp_path: Path) -> None:
    plan = plan_build(_config(demo_data, tmp_path))  # unsigned local files: the planning opens them
    plan = replace(plan, config=_with_modifiers(plan.config))
    sensors = {str(i["id"]): item_sensor(i) for i in plan.items}
    assert S1 in sensors.values() and len(set(sensors.values())) == 2
    before = _hrefs(plan)
    for _ in range(2):  # the second time, each old signature is removed before the new one
        plan = signed_again(plan)
        for product, hrefs in _hrefs(plan).items():
            mark = "?sig=s1" if sensors[product] == S1 else "?sig=s2"
            assert {h.removesuffix(mark) for h in hrefs} == before[product]
            assert all(h.endswith(mark) and h.count("?") == 1 for h in hrefs)
        for item in plan.items:
            mark = "?sig=s1" if item_sensor(item) == S1 else "?sig=s2"
            assert all(str(a["href"]).endswith(mark) for a in item["assets"].values())


def test_a_config_without_s1_modifier_stores_what_it_stored_before(demo_data: Any, tmp_path: Path) -> None:
    """The build's fingerprint and ``plan.json`` hold the config: one without ``s1.modifier`` keeps the fields it
    had before the field existed (a build resumes, a dataset refreshes), one with it records it."""
    before = {"source", "kind", "collection", "min_valid_fraction", "min_dates"}
    assert set(public_config(_config(demo_data, tmp_path))["s1"]) == before
    assert public_config(_config(demo_data, tmp_path, S1_SIGNS))["s1"]["modifier"] == S1_SIGNS


def test_without_s1_modifier_the_catalogs_signs_the_sentinel_1_products_again(
    demo_data: Any, tmp_path: Path
) -> None:
    """A saved selection's Sentinel-1 products were signed by ``catalog.modifier``: so they are signed again."""
    plan = plan_build(_config(demo_data, tmp_path))
    catalog = plan.config.catalog.model_copy(update={"modifier": S2_SIGNS})
    plan = signed_again(replace(plan, config=plan.config.model_copy(update={"catalog": catalog})))
    assert all(h.endswith("?sig=s2") for hrefs in _hrefs(plan).values() for h in hrefs)


def test_a_modifier_that_fails_when_signing_again_is_one_clear_error(demo_data: Any, tmp_path: Path) -> None:
    plan = plan_build(_config(demo_data, tmp_path))
    catalog = plan.config.catalog.model_copy(update={"modifier": "tests.services.signing:unreachable"})
    with pytest.raises(SigningError) as failed:
        signed_again(replace(plan, config=plan.config.model_copy(update={"catalog": catalog})))
    message = str(failed.value)
    assert "signing product S2" in message and "ConnectionError: token service http://127.0.0.1:9/token" in message
    assert message.endswith("check the modifier's service and the network, then rerun the same build to finish")
    assert "s3cret" not in message


def test_the_hr_products_are_signed_by_hr_modifier_at_the_search_and_again(demo_data: Any, tmp_path: Path) -> None:
    """The paired HR source (a static catalog, e.g. of the Planetary Computer's NAIP) has its own modifier."""
    hr = {"source": str(demo_data.hr), "bands": ["red", "green", "blue"], "resolution": 2.5, "modifier": HR_SIGNS}
    config = parse_config(demo_build_config(demo_data, tmp_path / "out", hr=hr), tmp_path)
    plan = plan_build(config)  # the HR files are opened only by the shard tasks
    assert [i["id"] for i in plan.hr_items] == ["VHR_20230804_DEMO", "VHR_20240612_DEMO_WEST"]
    assert all(str(a["href"]).endswith("?sig=hr") for i in plan.hr_items for a in i["assets"].values())
    assert all(h.endswith("?sig=hr") for hrefs in _hrefs(plan, hr=True).values() for h in hrefs)
    # signed again by the HR modifier (here another one, to tell them apart), the old signature removed first
    other = config.model_copy(update={"hr": config.hr.model_copy(update={"modifier": S2_SIGNS})})  # type: ignore[union-attr]
    again = signed_again(replace(plan, config=other))
    hrefs = [h for product in _hrefs(again, hr=True).values() for h in product]
    assert hrefs and all(h.endswith(".tif?sig=s2") and h.count("?") == 1 for h in hrefs), hrefs
    assert all(str(a["href"]).endswith(".tif?sig=s2") for i in again.hr_items for a in i["assets"].values())
    assert _hrefs(again) == _hrefs(plan)  # the Sentinel-2 products: no catalog.modifier, untouched
    assert (
        "modifier"
        not in public_config(
            config.model_copy(
                update={
                    "hr": config.hr.model_copy(  # type: ignore[union-attr]
                        update={"modifier": None}
                    )
                }
            )
        )["hr"]
    )
