"""Datasets that describe themselves: GeoCroissant (validated and read by ``mlcroissant``), the STAC label extension,
band metadata in ``dataset.json`` and each sample's centre and days of year in ``index.parquet``."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any

import geopandas as gpd
import mlcroissant as mlc
import numpy as np
import pytest
from pyproj import Transformer

from tests.integration.test_refresh import BBOX, invoke, write_config

# mlcroissant 1.1.1 builds an rdflib ConjunctiveGraph, which rdflib 7.1+ deprecates (their warning, not ours)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def built(demo_data: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cards")
    out = root / "cards"
    config = write_config(root / "cards.yaml", demo_data.catalog, out, parcels=demo_data.parcels, aoi=BBOX)
    result = invoke("build", str(config))
    assert result.exit_code == 0, result.output
    return out


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_croissant_is_valid_and_mlcroissant_reads_the_samples(built: Path) -> None:
    dataset = mlc.Dataset(jsonld=str(built / "croissant.json"))
    issues = dataset.metadata.ctx.issues
    assert not issues.errors, issues.report()
    assert all("is recommended, but does not exist" in w for w in issues.warnings), issues.report()
    records = list(dataset.records("samples"))
    index = gpd.read_parquet(built / "index.parquet")
    assert [r["samples/key"].decode() for r in records] == index["key"].tolist()
    assert [r["samples/n_dates"] for r in records] == index["n_dates"].tolist()
    assert [r["samples/center_lat"] for r in records] == index["center_lat"].tolist()
    assert len(records) == json.loads((built / "dataset.json").read_text())["n_samples"]


def test_croissant_names_the_files_with_their_checksums_and_the_bands(built: Path) -> None:
    card = json.loads((built / "croissant.json").read_text())
    assert card["conformsTo"] == ["http://mlcommons.org/croissant/1.0", "http://mlcommons.org/croissant/geo/1.0"]
    files = {f["@id"]: f for f in card["distribution"]}
    # dataset.json is written after the card: the card holds the SHA-256 of the bytes that were then written
    for file_id, name in (
        ("manifest", "dataset.json"),
        ("collection", "collection.json"),
        ("index", "index.parquet"),
    ):
        assert files[file_id]["sha256"] == sha256(built / name), name
    assert files["zarr"]["includes"] == "data.zarr/**" and files["lmdb"]["includes"] == "data.lmdb/*/data.mdb"
    manifest = json.loads((built / "dataset.json").read_text())
    assert card["geocr:coordinateReferenceSystem"] == manifest["crs"] == "EPSG:32632"
    assert card["geocr:bandConfiguration"]["geocr:bandNameList"] == ["B02", "B11"]
    blue, swir = card["geocr:spectralBandMetadata"]
    assert (blue["name"], blue["geocr:centerWavelength"]["value"], blue["geocr:bandwidth"]["value"]) == (
        "B02", 492.4, 66.0)  # fmt: skip
    assert (swir["name"], swir["geocr:spatialResolution"]["value"]) == ("B11", 20.0)
    start, end = card["temporalCoverage"].split("/")
    assert (start, end) == (manifest["dates"][0] + "Z", manifest["dates"][-1] + "Z")


def test_band_metadata_in_dataset_json_says_how_values_are_stored(built: Path) -> None:
    bands = json.loads((built / "dataset.json").read_text())["band_metadata"]
    assert list(bands) == ["B02", "B11"]
    assert bands["B02"] == {
        "sensor": "sentinel-2", "common_name": "blue", "wavelength_nm": 492.4, "bandwidth_nm": 66.0, "gsd_m": 10.0,
        "units": "DN", "scale": 1e-4, "offset_applied": False,
    }  # fmt: skip
    assert (bands["B11"]["common_name"], bands["B11"]["gsd_m"]) == ("swir16", 20.0)


def test_index_has_each_sample_centre_and_days_of_year(built: Path) -> None:
    index = gpd.read_parquet(built / "index.parquet")
    to_wgs84 = Transformer.from_crs("EPSG:32632", "EPSG:4326", always_xy=True)
    for row in index.itertuples():
        a, _, c, _, e, f = row.transform
        lon, lat = to_wgs84.transform(c + a * 12, f + e * 12)  # 24 px patches: the centre is 12 px in
        assert (row.center_lon, row.center_lat) == pytest.approx((lon, lat), abs=1e-9)
        assert list(row.doy) == [date.fromisoformat(d[:10]).timetuple().tm_yday for d in row.dates]
    west, south, east, north = BBOX
    assert ((index["center_lon"] > west - 0.01) & (index["center_lon"] < east + 0.01)).all()
    assert ((index["center_lat"] > south - 0.01) & (index["center_lat"] < north + 0.01)).all()


def test_collection_carries_the_label_extension(built: Path) -> None:
    collection = json.loads((built / "collection.json").read_text())
    assert "https://stac-extensions.github.io/label/v1.0.1/schema.json" in collection["stac_extensions"]
    summaries = collection["summaries"]
    assert (summaries["label:type"], summaries["label:tasks"]) == (["raster"], ["segmentation", "classification"])
    counts = json.loads((built / "dataset.json").read_text())["labels"]["class_counts"]
    expected = sorted(int(c) for c in counts if int(c) != 0)
    assert summaries["label:classes"] == [{"name": None, "classes": expected}]
    assert len(expected) > 2 and np.all(np.diff(expected) > 0)
    assert collection["assets"]["croissant"]["href"] == "./croissant.json"
    assert collection["summaries"]["eo:bands"] == [
        {"name": "B02", "common_name": "blue", "center_wavelength": 0.4924, "full_width_half_max": 0.066},
        {"name": "B11", "common_name": "swir16", "center_wavelength": 1.6137, "full_width_half_max": 0.091},
    ]
