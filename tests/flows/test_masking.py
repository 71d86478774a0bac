"""timeseries.mask: auto resolves on the real items of each catalog; refresh keeps the mask its build resolved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eoshard.flows.build import FINGERPRINT_EXCLUDE
from eoshard.flows.config import ConfigError, parse_config
from eoshard.flows.masking import has_scl, mask_note, resolve_bands, resolve_mask, with_landsat_bands
from eoshard.flows.redaction import public_config
from eoshard.flows.refresh.errors import RefreshError
from eoshard.flows.refresh.run import check_config
from eoshard.pipeline.shards.layout import BUILD_DIR
from tests.flows.test_config import _valid
from tests.real_items import recorded_items

C1 = "earth-search__sentinel-2-c1-l2a"  # asset `scl`
PC = "planetarycomputer__sentinel-2-l2a"  # asset `SCL`
L1C = "earth-search__sentinel-2-l1c"  # no scene classification
CDSE = "cdse__sentinel-2-l2a"  # asset `SCL_20m` (tests/catalog/recorded)
LANDSAT = "landsat-c2-l2"  # asset `qa_pixel` (tests/catalog/recorded)


def _config(tmp_path: Path, **timeseries: object):  # type: ignore[no-untyped-def]
    return parse_config({**_valid(tmp_path), "timeseries": timeseries}, tmp_path)


def test_auto_is_scl_only_when_every_product_carries_one(tmp_path: Path) -> None:
    c1, pc, l1c = recorded_items(C1)[:3], recorded_items(PC)[:3] + recorded_items(CDSE), recorded_items(L1C)[:3]
    assert all(map(has_scl, c1 + pc)) and not any(map(has_scl, l1c))
    auto = _config(tmp_path)
    assert auto.timeseries.mask == "auto"
    assert resolve_mask(auto, c1 + pc).timeseries.mask == "scl"
    assert resolve_mask(auto, l1c).timeseries.mask == "nodata"
    assert resolve_mask(auto, c1 + l1c).timeseries.mask == "nodata"  # one product without SCL: no SCL mask
    assert resolve_mask(auto, []).timeseries.mask == "nodata"
    assert resolve_mask(_config(tmp_path, mask="nodata"), c1).timeseries.mask == "nodata"  # a choice is kept
    assert resolve_mask(_config(tmp_path, mask="scl"), l1c).timeseries.mask == "scl"


def test_the_note_names_the_classes_masked() -> None:
    scl = {"mask": "scl", "scl_invalid": (3, 9)}
    assert mask_note("auto", scl) == (
        "valid mask: SCL (by default, as the products carry SCL); invalid classes: 3 cloud shadows, "
        "9 cloud high probability. timeseries.mask: nodata keeps them"
    )
    assert "not every product carries an SCL asset" in mask_note("auto", {"mask": "nodata"})
    assert "(timeseries.mask: nodata)" in mask_note("nodata", {"mask": "nodata"})


def test_auto_is_qa_pixel_for_landsat_scenes_and_each_mask_needs_its_source(tmp_path: Path) -> None:
    landsat, c1, l1c = recorded_items(LANDSAT), recorded_items(C1)[:2], recorded_items(L1C)[:2]
    auto = _config(tmp_path)
    assert resolve_mask(auto, landsat).timeseries.mask == "qa_pixel"
    assert resolve_mask(auto, landsat + l1c).timeseries.mask == "nodata"  # not every product has qa_pixel
    no_qa = [{**landsat[0], "assets": {k: v for k, v in landsat[0]["assets"].items() if k != "qa_pixel"}}]
    assert resolve_mask(auto, no_qa).timeseries.mask == "nodata"
    with pytest.raises(ConfigError, match=r"mask: qa_pixel needs Landsat scenes .* 2 product\(s\) are not"):
        resolve_mask(_config(tmp_path, mask="qa_pixel"), c1)
    with pytest.raises(ConfigError, match=r"mask: scl reads the Sentinel-2 scene classification, but .* Landsat"):
        resolve_mask(_config(tmp_path, mask="scl"), landsat)
    with pytest.raises(ValueError, match=r"QA_PIXEL bits \['clouds'\] do not exist"):
        _config(tmp_path, qa_pixel_invalid=["cloud", "clouds"])
    note = mask_note("auto", resolve_mask(auto, landsat).timeseries.model_dump())
    assert note == (
        "valid mask: Landsat QA_PIXEL (by default, as the products carry qa_pixel); invalid bits: bit 0 fill, "
        "bit 1 dilated cloud, bit 2 cirrus, bit 3 cloud, bit 4 cloud shadow. timeseries.mask: nodata keeps them"
    )
    # the bits are stored only with the Landsat mask: the fingerprints of other datasets stay as they were
    assert "qa_pixel_invalid" not in public_config(resolve_mask(auto, c1))["timeseries"]
    assert public_config(resolve_mask(auto, landsat))["timeseries"]["qa_pixel_invalid"] == [
        "fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow"
    ]  # fmt: skip


def test_landsat_bands_resolve_per_plan_and_refresh_keeps_them(tmp_path: Path) -> None:
    config = parse_config({**_valid(tmp_path), "bands": ["red", "SR_B5", "qa_pixel"]}, tmp_path)
    assert config.bands == ("B04", "SR_B5", "qa_pixel")  # the config does not know the sensor yet
    landsat = resolve_bands(config, recorded_items(LANDSAT))
    assert landsat.bands == ("red", "nir08", "qa_pixel")
    assert resolve_bands(config, recorded_items(C1)[:1]).bands == config.bands  # Sentinel-2 names are kept
    assert with_landsat_bands(config, ["red", "nir08", "qa_pixel"]).bands == landsat.bands  # a refresh
    assert with_landsat_bands(config, ["B04", "SR_B5", "qa_pixel"]).bands == config.bands


@pytest.mark.parametrize("built", ["scl", "nodata", "qa_pixel"])
def test_refresh_pins_auto_to_the_mask_the_build_resolved(tmp_path: Path, built: str) -> None:
    dataset = tmp_path / "out"
    (dataset / BUILD_DIR).mkdir(parents=True)
    resolved = _config(tmp_path, mask=built)
    plan = {"config": public_config(resolved, exclude=FINGERPRINT_EXCLUDE)}
    (dataset / BUILD_DIR / "plan.json").write_text(json.dumps(plan))
    assert check_config(_config(tmp_path), dataset).timeseries.mask == built
    other = "nodata" if built == "scl" else "scl"
    with pytest.raises(RefreshError, match=r"differs from the one .* in timeseries\.mask"):
        check_config(_config(tmp_path, mask=other), dataset)
