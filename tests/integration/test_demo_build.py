"""The walking skeleton end to end on freshly generated demo data, checked against the COGs themselves."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import lmdb
import numpy as np
import pystac
import pytest
import rasterio
import yaml
import zarr
from rasterio.features import rasterize
from rasterio.windows import from_bounds
from safetensors.numpy import load
from typer.testing import CliRunner

from eoshard.flows.cli import app

BANDS = ["B02", "B03", "B04", "B08", "B11"]
GROUP_OF = {
    "B02": ("s2_10m", 0),
    "B03": ("s2_10m", 1),
    "B04": ("s2_10m", 2),
    "B08": ("s2_10m", 3),
    "B11": ("s2_20m", 0),
}


@pytest.fixture(scope="module")
def built(demo_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build") / "demo"
    config = {
        "name": "demo-test",
        "catalog": {"source": str(demo_data.catalog), "collection": "sentinel-2-l2a", "max_cloud": 60},
        "aoi": str(demo_data.aoi),
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "bands": BANDS,
        "grid": {"resolution": 10, "chunksize": 256},
        "labels": {
            "path": str(demo_data.parcels),
            "class_column": "class_code",
            "class_name_column": "class_name",
            "id_column": "parcel_id",
        },
        "patches": {"size": 48},
        "output": {"path": str(out), "formats": ["zarr", "lmdb"], "shard_size": 5},
    }
    path = out.parent / "build.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.warns(UserWarning, match="1 of 480 label geometries were invalid"):
        result = CliRunner().invoke(app, ["build", str(path), "--workers", "2"])
    assert result.exit_code == 0, result.output
    return out


def _items_by_date(catalog: Path) -> dict[str, list[pystac.Item]]:
    items: dict[str, list[pystac.Item]] = {}
    for item in pystac.Catalog.from_file(str(catalog)).get_items(recursive=True):
        items.setdefault(item.datetime.strftime("%Y-%m-%dT%H:%M:%S"), []).append(item)
    return items


def _native_item(items: list[pystac.Item], epsg: int) -> pystac.Item:
    """The newest-baseline product in the grid's CRS (duplicates carry identical pixels)."""
    native = [i for i in items if i.properties["proj:code"] == f"EPSG:{epsg}"]
    return sorted(native, key=lambda i: i.id)[-1]


def test_lmdb_and_zarr_equal_the_cog_pixels(built: Path, demo_data) -> None:
    manifest = json.loads((built / "dataset.json").read_text())
    assert manifest["bands"] == BANDS
    assert manifest["crs"] == "EPSG:32632"
    # 15 products under 60 % cloud (incl. one reprocessed duplicate) form 7 acquisitions
    assert len(manifest["products"]) == 15
    assert len(manifest["dates"]) == 7
    # the AOI's grid is 474 x 618 px: 9 x 12 whole 48 px patches
    assert manifest["shape"] == [474, 618]
    assert manifest["n_samples"] == 9 * 12

    by_date = _items_by_date(demo_data.catalog)
    group = zarr.open_group(str(built / "data.zarr"), mode="r")
    assert group["s2_10m"].shape == (108, 7, 4, 48, 48)
    assert group["s2_20m"].shape == (108, 7, 1, 24, 24)
    assert group["s2_10m"].dtype == np.uint16
    env = lmdb.open(str(built / "data.lmdb"), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.stat()["entries"] == 108
        checked = 0
        for n in (0, 13, 40, 57, 100):
            key = manifest["keys"][n]
            sample = load(txn.get(key.encode()))
            assert sorted(sample) == sorted([*BANDS, "class", "parcel_id"])
            epsg, res, x0, y0 = (float(v) for v in key.split("_"))
            bounds = (x0, y0 - 48 * res, x0 + 48 * res, y0)  # the same ground at every resolution
            for t, date in enumerate(manifest["dates"]):
                item = _native_item(by_date[date], int(epsg))
                for band in BANDS:
                    with rasterio.open(item.assets[band].get_absolute_href()) as src:
                        window = from_bounds(*bounds, transform=src.transform)
                        expected = src.read(1, window=window, boundless=True, fill_value=0)
                    got_lmdb = sample[band][t]
                    name, index = GROUP_OF[band]
                    got_zarr = group[name][n, t, index]
                    valid = expected != 0  # where the native tile has no data the other zone's tile fills in
                    np.testing.assert_array_equal(got_lmdb[valid], expected[valid])
                    np.testing.assert_array_equal(got_zarr, got_lmdb)
                    checked += int(valid.sum())
    assert checked > 5 * 7 * (4 * 48 * 48 + 24 * 24) * 0.4


def test_label_patches_match_an_independent_rasterization(built: Path, demo_data) -> None:
    manifest = json.loads((built / "dataset.json").read_text())
    parcels = gpd.read_file(demo_data.parcels).to_crs(manifest["crs"])
    parcels["geometry"] = parcels.geometry.make_valid()
    group = zarr.open_group(str(built / "data.zarr"), mode="r")
    labels, ids = group["class"], group["parcel_id"]
    for n in (0, 21, 77, 107):
        _, res, x0, y0 = (float(v) for v in manifest["keys"][n].split("_"))
        transform = rasterio.transform.from_origin(x0, y0, res, res)
        expected = rasterize(
            zip(parcels.geometry, parcels["class_code"], strict=True),
            (48, 48),
            transform=transform,
            dtype="int32",
        )
        np.testing.assert_array_equal(labels[n], expected)
        expected_ids = rasterize(
            zip(parcels.geometry, parcels["parcel_id"], strict=True), (48, 48), transform=transform, dtype="int64"
        )
        np.testing.assert_array_equal(ids[n], expected_ids)
    assert manifest["labels"]["classes"] == {
        "1": "winter_wheat", "2": "maize", "3": "rapeseed", "4": "grassland", "5": "sugar_beet", "6": "potato",
    }  # fmt: skip
