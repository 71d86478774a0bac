"""End to end on the real Sentinel-2 L1C excerpt (T33UUU, JPEG2000, 13 bands at 10/20/60 m)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import lmdb
import numpy as np
import pystac
import pytest
import rasterio
import shapely
import yaml
import zarr
from odc.geo.geobox import GeoBox
from safetensors.numpy import load
from typer.testing import CliRunner

from eoshard.flows.cli import app
from eoshard.pipeline.labels import rasterize_labels
from tests.conftest import shared_path

pytestmark = pytest.mark.slow

BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
# 2880 m x 2880 m inside the excerpt: 288 x 288 px at 10 m, 4 x 4 patches of 72 px (36 at 20 m, 12 at 60 m)
AOI = (333000.0, 5816040.0, 335880.0, 5818920.0)


def _catalog(folder: Path, data: Path) -> Path:
    """A static STAC catalog with one item whose assets are the excerpt's JPEG2000 files."""
    catalog = pystac.Catalog("t33uuu", "the T33UUU L1C excerpt")
    collection = pystac.Collection(
        "sentinel-2-l1c", "L1C", pystac.Extent(pystac.SpatialExtent([[12.0, 52.0, 13.0, 53.0]]),
        pystac.TemporalExtent([[datetime(2017, 2, 16, tzinfo=UTC), None]])),
    )  # fmt: skip
    with rasterio.open(data / "T33UUU_20170216T102101_B02.jp2") as src:
        footprint = shapely.box(*src.bounds)
    geometry = gpd.GeoSeries([footprint], crs=32633).to_crs(4326).iloc[0]
    item = pystac.Item(
        "S2A_MSIL1C_20170216T102101_T33UUU", shapely.geometry.mapping(geometry), list(geometry.bounds),
        datetime(2017, 2, 16, 10, 21, 1, tzinfo=UTC),
        {"platform": "sentinel-2a", "eo:cloud_cover": 0.0, "proj:code": "EPSG:32633", "sat:relative_orbit": 65},
        collection="sentinel-2-l1c",
    )  # fmt: skip
    for band in BANDS:
        path = data / f"T33UUU_20170216T102101_{band}.jp2"
        with rasterio.open(path) as src:
            extra = {"proj:transform": list(src.transform)[:6], "proj:shape": list(src.shape)}
        item.add_asset(
            band, pystac.Asset(path.as_uri(), media_type="image/jp2", roles=["data"], extra_fields=extra)
        )
    collection.add_item(item)
    catalog.add_child(collection)
    catalog.normalize_hrefs(str(folder))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return folder / "catalog.json"


@pytest.fixture(scope="module")
def t33uuu(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = shared_path("s2-l1c-T33UUU")
    folder = tmp_path_factory.mktemp("t33uuu")
    catalog = _catalog(folder / "catalog", root / "IMG_DATA")
    aoi = folder / "aoi.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.box(*AOI)], crs=32633).to_file(aoi)
    out = folder / "out"
    config = {
        "name": "t33uuu",
        "catalog": {"source": str(catalog), "collection": "sentinel-2-l1c"},
        "aoi": str(aoi),
        "period": {"start": "2017-02-01", "end": "2017-02-28"},
        "bands": BANDS,
        "grid": {"resolution": 10, "crs": "EPSG:32633", "chunksize": 144},
        "labels": {"path": str(root / "s2l1c_ref.gpkg"), "class_column": "cid", "id_column": "pid"},
        "patches": {"size": 72},
        "output": {"path": str(out), "shard_size": 3, "lmdb_parts": 2},
    }
    path = folder / "build.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["build", str(path), "--workers", "2"])
    assert result.exit_code == 0, result.output
    return out, root, path


def test_shards_equal_the_jpeg2000_pixels_and_the_label_stage(t33uuu: tuple[Path, Path, Path]) -> None:
    out, root, _ = t33uuu
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["shape"] == [288, 288] and manifest["n_candidates"] == 16
    assert {g: s["bands"] for g, s in manifest["groups"].items()} == {
        "s2_10m": ["B02", "B03", "B04", "B08"],
        "s2_20m": ["B05", "B06", "B07", "B8A", "B11", "B12"],
        "s2_60m": ["B01", "B09", "B10"],
    }
    index = gpd.read_parquet(out / "index.parquet")
    assert len(index) == manifest["n_samples"] == 16  # one clear date, every patch valid
    group = zarr.open_group(str(out / "data.zarr"), mode="r")
    grid = GeoBox((288, 288), rasterio.Affine(*manifest["transform"]), manifest["crs"])
    labels = rasterize_labels(gpd.read_file(root / "s2l1c_ref.gpkg"), grid, class_column="cid", id_column="pid")
    expected_labels = {name: labels[name].values for name in ("class", "parcel_id")}
    assert (expected_labels["class"] != 0).sum() > 300  # reference polygons do fall in the AOI
    readers = {
        part.name: lmdb.open(str(part), readonly=True, lock=False) for part in (out / "data.lmdb").iterdir()
    }
    for row in index.itertuples():
        with readers[row.lmdb_part].begin() as txn:
            sample = load(txn.get(row.key.encode()))
        assert sample["date"].tolist() == [17213]  # 2017-02-16
        x0, y0 = row.transform[2], row.transform[5]
        for name, spec in manifest["groups"].items():
            res = spec["resolution"]
            for i, band in enumerate(spec["bands"]):
                with rasterio.open(root / "IMG_DATA" / f"T33UUU_20170216T102101_{band}.jp2") as src:
                    c, r = ~src.transform * (x0, y0)
                    n = int(72 * 10 / res)
                    window = rasterio.windows.Window(round(c), round(r), n, n)
                    expected = src.read(1, window=window)
                np.testing.assert_array_equal(sample[band][0], expected, err_msg=f"{row.key} {band}")
                np.testing.assert_array_equal(group[name][row.zarr_index, 0, i], expected)
        rs = slice(row.row, row.row + 72)
        cs = slice(row.col, row.col + 72)
        for layer, values in expected_labels.items():
            np.testing.assert_array_equal(sample[layer], values[rs, cs])
            np.testing.assert_array_equal(group[layer][row.zarr_index], values[rs, cs])
    for env in readers.values():
        env.close()
    assert sum(manifest["labels"]["class_counts"].values()) == 16 * 72 * 72


def test_verify_rereads_the_jpeg2000_sources(t33uuu: tuple[Path, Path, Path]) -> None:
    out, _, _ = t33uuu
    result = CliRunner().invoke(app, ["verify", str(out), "--sources", "3"])
    assert result.exit_code == 0, result.output
