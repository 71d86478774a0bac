"""``eoshard refresh`` of datasets with an SCL mask, float groups (reflectance and indices) and paired HR layers:
the refreshed dataset equals a single build over the whole season, file for file, as for the simple case in
``test_refresh.py``. The first half's Sentinel-2 files (pixels and SCL) are hidden during the refresh, so what the
dataset held can only come from its own shards."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pystac
import pytest
import yaml

from eoshard.flows.build import plan_build
from eoshard.flows.config import parse_config
from eoshard.flows.refresh.reuse import OldDataset, open_old
from tests.integration.test_refresh import (
    BBOX,
    CUT,
    EAST,
    acquired,
    assert_same_as_a_single_build,
    hidden_files,
    invoke,
    season_items,
    write_config,
    write_items,
)

pytestmark = pytest.mark.slow

HR_BANDS = ["red", "green", "blue"]
INDICES = {"nd11": "(B11 - B02) / (B11 + B02)"}


def build_half(root: Path, demo_data: Any, aoi: list[float], first_end: str, **extra: Any) -> dict[str, Any]:
    """Build the first half of the season (products before ``CUT``, period ending ``first_end``), then let the
    catalog file hold the whole season and the config reach to the season's end (as a user's refresh does)."""
    shutil.copytree(demo_data.catalog.parent, root / "catalog")
    items = season_items(root / "catalog" / "catalog.json")
    first = [i for i in items if acquired(i) < CUT]
    catalog = root / "items.json"
    write_items(first, catalog)
    layers = {
        "aoi": aoi,
        "hr": {"source": str(demo_data.hr), "bands": HR_BANDS, "resolution": 2.5},
        "timeseries": {"mask": "scl"},
        "cube": {"reflectance": True, "indices": INDICES},
        **extra,
    }
    out, config = root / "refreshed", root / "refreshed.yaml"
    write_config(config, catalog, out, parcels=demo_data.parcels, **layers)
    whole = yaml.safe_load(config.read_text())
    first_config = {**whole, "period": {**whole["period"], "end": first_end}}
    config.write_text(yaml.safe_dump(first_config))
    result = invoke("build", str(config))
    assert result.exit_code == 0, result.output
    half = json.loads((out / "dataset.json").read_text())
    write_items(items, catalog)  # the rest of the season arrives, and the period reaches to its end
    config.write_text(yaml.safe_dump(whole))
    reference = root / "reference"
    config_ref = write_config(root / "reference.yaml", catalog, reference, parcels=demo_data.parcels, **layers)
    return {"root": root, "config": config, "out": out, "half": half, "first": first,
            "reference": reference, "reference_config": config_ref}  # fmt: skip


def old_dataset(case: dict[str, Any], tmp_path: Path) -> OldDataset:
    """What the refresh will read back from the first half (the demo parcels' invalid geometry is expected)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="1 of 480 label geometries were invalid", category=UserWarning)
        plan = plan_build(parse_config(yaml.safe_load(case["config"].read_text()), tmp_path))
    return open_old(case["out"], plan, case["half"])


def refresh_hiding(case: dict[str, Any], hidden: list[Any]) -> dict[str, Any]:
    """Refresh with the files of ``hidden`` moved away; the refreshed manifest."""
    with hidden_files(hidden, case["root"] / "hidden"):
        result = invoke("refresh", str(case["config"]))
    assert result.exit_code == 0, result.output
    assert "new product(s)" in " ".join(result.output.split())
    return dict(json.loads((case["out"] / "dataset.json").read_text()))


def refresh_hiding_the_hr_too(case: dict[str, Any], demo_data: Any) -> None:
    """A refresh with the first half's products and the HR files hidden keeps the HR products, adds dates, and
    equals a single build."""
    half = case["half"]
    hr_items = list(pystac.ItemCollection.from_file(str(demo_data.hr)))
    refreshed = refresh_hiding(case, [*case["first"], *hr_items])
    assert refreshed["hr"]["products"] == half["hr"]["products"]
    assert refreshed["dates"][: len(half["dates"])] == half["dates"] and len(refreshed["dates"]) > len(
        half["dates"]
    )
    assert_same_as_a_single_build(case)


def test_scl_float_and_new_hr_products_refresh_to_a_single_build(demo_data: Any, tmp_path: Path) -> None:
    """Zarr + LMDB (held steps read from Zarr). West, where a second HR product (2024-06-12) covers the AOI: the
    first half's period ends before it, so the refresh's mosaic differs and every HR window comes from the
    sources, while the SCL masks and float pixels of held steps come from the shards."""
    case = build_half(tmp_path, demo_data, BBOX, "2024-06-10")
    half = case["half"]
    assert half["hr"]["products"] == ["VHR_20230804_DEMO"]
    assert half["timeseries"]["mask"] == "scl" and half["groups"]["indices"]["dtype"] == "float32"
    old = old_dataset(case, tmp_path)
    assert (old.read_mask, old.hr_bands) == (True, ())  # masks read back, HR from the sources
    assert any(step is not None for step in old.steps) and any(step is None for step in old.steps)
    refreshed = refresh_hiding(case, case["first"])
    assert refreshed["hr"]["products"] == ["VHR_20230804_DEMO", "VHR_20240612_DEMO_WEST"]
    assert refreshed["dates"][: len(half["dates"])] == half["dates"] and len(refreshed["dates"]) > len(
        half["dates"]
    )
    assert_same_as_a_single_build(case)


def test_an_lmdb_only_scl_float_hr_dataset_refreshes_from_its_lmdb(demo_data: Any, tmp_path: Path) -> None:
    """LMDB only (held steps and their masks from the kept-date tensors). East, where only the first HR product
    lies: the mosaic is unchanged, so held samples' HR layers are read back too (the HR files are hidden as well)."""
    case = build_half(tmp_path, demo_data, EAST, "2024-09-30", output={"formats": ["lmdb"]})
    half = case["half"]
    assert not (case["out"] / "data.zarr").exists()
    assert half["hr"]["products"] == ["VHR_20230804_DEMO"]
    assert old_dataset(case, tmp_path).hr_bands == tuple(HR_BANDS)
    refresh_hiding_the_hr_too(case, demo_data)


def test_a_direct_read_scl_hr_dataset_refreshes_reading_only_new_steps(demo_data: Any, tmp_path: Path) -> None:
    """uint16 pixels read directly, as builds read (no reflectance, no indices): the refresh's shard tasks read the
    new steps only, and held samples' HR layers come back from the shards. East: the HR mosaic is unchanged, and
    the first half's products and the HR files are hidden during the refresh."""
    case = build_half(tmp_path, demo_data, EAST, "2024-09-30", cube={})
    half = case["half"]
    assert half["groups"]["s2_10m"]["dtype"] == "uint16" and half["hr"]["products"] == ["VHR_20230804_DEMO"]
    old = old_dataset(case, tmp_path)
    assert old.hr_bands == tuple(HR_BANDS) and old.read_mask
    refresh_hiding_the_hr_too(case, demo_data)
