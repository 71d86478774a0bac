"""Builds with float32 bands: reflectance and spectral indices in Zarr and LMDB, their statistics, verify, training."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import zarr
from safetensors.numpy import load

from eoshard.flows.build import BuildPlan, plan_build, run_build
from eoshard.flows.config import ConfigError, parse_config
from eoshard.flows.verify import verify_dataset
from eoshard.pipeline.shards.reader import open_shards
from tests.services.dask_cluster import in_process_client

SMALL_AOI = [11.958, 48.003, 11.99, 48.022]  # both UTM tiles' products, clouds on several dates
INDICES = {"ndvi": "ndvi", "nd11": "(B11 - B08) / (B11 + B08)"}  # nd11 reads a 20 m band


def _config(demo_data: Any, out: Path, **cube: Any) -> Any:
    return parse_config(
        {
            "name": "float-demo",
            "catalog": {"source": str(demo_data.catalog), "max_cloud": 95},
            "aoi": SMALL_AOI,
            "period": {"start": "2024-04-01", "end": "2024-09-30"},
            "bands": ["B04", "B08", "B11"],
            "grid": {"chunksize": 128},
            "cube": cube,
            "patches": {"size": 48},
            "timeseries": {"mask": "nodata", "min_valid_fraction": 0.6, "min_dates": 1},
            "output": {"path": str(out), "formats": ["zarr", "lmdb"], "shard_size": 4, "lmdb_parts": 1},
        },
        out.parent,
    )


@pytest.fixture(scope="module")
def built(demo_data: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[BuildPlan, BuildPlan]:
    """The reflectance + indices dataset (built), and the plan of the same config in digital numbers."""
    out = tmp_path_factory.mktemp("float-build") / "ds"
    plan = plan_build(_config(demo_data, out, reflectance=True, indices=INDICES))
    with in_process_client() as client:
        run_build(plan, client)
    return plan, plan_build(_config(demo_data, out.parent / "dn"))


def _offsets(plan: BuildPlan) -> np.ndarray:
    """The BOA offset of each date, from the products' processing baselines (-1000 from 04.00 on)."""
    by_day: dict[str, set[int]] = {}
    for item in plan.items:
        baseline = tuple(int(v) for v in item["properties"]["s2:processing_baseline"].split("."))
        by_day.setdefault(item["properties"]["datetime"][:10], set()).add(-1000 if baseline >= (4, 0) else 0)
    assert all(len(v) == 1 for v in by_day.values())
    return np.array([by_day[d[:10]].pop() for d in plan.dates], dtype=np.float32)


def _expected(plan: BuildPlan, dn_plan: BuildPlan) -> dict[str, np.ndarray]:
    """Reflectance (T, y, x) per band from the digital numbers, computed here with numpy."""
    offsets = _offsets(dn_plan)
    assert (offsets == -1000).all(), "2024 products are of baseline 04.00 or later: DN carry the offset"
    out = {}
    for name, cube in dn_plan.cubes.items():
        dn = cube.values
        refl = (dn.astype(np.float32) + offsets[:, None, None, None]) / np.float32(10000)
        refl = np.where(dn == 0, np.float32(np.nan), refl)
        f = dn_plan.factors[name]
        for i, band in enumerate(cube.band.values):
            out[str(band)] = refl[:, i].repeat(f, axis=1).repeat(f, axis=2) if f > 1 else refl[:, i]
    return out


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((b != 0) & ~np.isnan(b), (a / np.where(b == 0, 1, b)).astype(np.float32), np.nan)


def test_reflectance_and_indices_equal_numpy_on_the_source_pixels(built: tuple[BuildPlan, BuildPlan]) -> None:
    plan, dn_plan = built
    out = plan.config.output.path
    refl = _expected(plan, dn_plan)
    ndvi = _ratio(refl["B08"] - refl["B04"], refl["B08"] + refl["B04"])
    nd11 = _ratio(refl["B11"] - refl["B08"], refl["B11"] + refl["B08"])
    root = zarr.open_group(str(out / "data.zarr"), mode="r")
    assert root["s2_10m"].dtype == np.float32 and np.isnan(root["s2_10m"].fill_value)
    assert list(root["indices"].attrs.get("dimension_names") or root["indices"].metadata.dimension_names) == [
        "sample", "time", "band_indices", "y_indices", "x_indices"
    ]  # fmt: skip
    kept_any = dropped_dates = 0
    for n, patch in enumerate(plan.patches):
        kept = root["time_mask"][n]
        rows, cols = patch.window(1)
        s10, s20, idx = root["s2_10m"][n], root["s2_20m"][n], root["indices"][n]
        if not kept.any():  # a dropped candidate: NaN everywhere
            assert np.isnan(s10).all() and np.isnan(idx).all()
            continue
        kept_any += 1
        dropped_dates += int((~kept).sum())
        assert np.isnan(s10[~kept]).all() and np.isnan(idx[~kept]).all()  # padding of dropped dates
        for i, band in enumerate(["B04", "B08"]):
            assert np.array_equal(s10[kept, i], refl[band][kept][:, rows, cols], equal_nan=True)
        b11 = refl["B11"][kept][:, rows, cols]
        assert np.array_equal(s20[kept, 0].repeat(2, axis=1).repeat(2, axis=2), b11, equal_nan=True)
        assert np.array_equal(idx[kept, 0], nd11[kept][:, rows, cols], equal_nan=True)
        assert np.array_equal(idx[kept, 1], ndvi[kept][:, rows, cols], equal_nan=True)
        assert np.isfinite(idx[kept, 1]).mean() > 0.5
    assert kept_any >= 3 and dropped_dates >= 1


def test_reading_through_the_cubes_graph_gives_the_same_bytes(
    built: tuple[BuildPlan, BuildPlan], demo_data: Any, tmp_path: Path
) -> None:
    """The shard tasks make reflectance and indices from the digital numbers they read: the same float32 bits as
    the lazy cubes' graph (the reference path), in every file and LMDB value."""
    from tests.dataset_bytes import dataset_files, lmdb_contents

    plan, _ = built
    assert plan.sources is not None and plan.sources.derived is not None  # the fixture's build read directly
    out = tmp_path / "ds"
    graph = plan_build(_config(demo_data, out, reflectance=True, indices=INDICES, reads="graph"))
    assert graph.sources is None
    with in_process_client() as client:
        run_build(graph, client)
    direct = {k: v for k, v in dataset_files(plan.config.output.path).items() if not k.startswith("_build")}
    through_graph = {k: v for k, v in dataset_files(out).items() if not k.startswith("_build")}
    assert sorted(direct) == sorted(through_graph) and "data.zarr/indices/c/0/0/0/0/0" in direct
    assert [k for k in direct if direct[k] != through_graph[k]] == []
    assert lmdb_contents(plan.config.output.path) == lmdb_contents(out)


def test_reflectance_equals_the_product_pixels_read_with_rasterio(built: tuple[BuildPlan, BuildPlan]) -> None:
    """Independently of the cube: B04 of a product in the grid's CRS, read with rasterio, scaled here."""
    plan, _ = built
    root = zarr.open_group(str(plan.config.output.path / "data.zarr"), mode="r")
    time_mask = root["time_mask"][:]
    t = int(np.argmax(time_mask.sum(axis=0)))  # the date most samples kept
    native = [i for i in plan.items if i["properties"]["proj:epsg"] == 32632 and
              i["properties"]["datetime"][:10] == plan.dates[t][:10]]  # fmt: skip
    assert native, "the test expects a product in the grid's CRS on that date"
    item = sorted(native, key=lambda i: i["id"])[-1]
    assert item["properties"]["s2:processing_baseline"] >= "04.00"
    with rasterio.open(item["assets"]["B04"]["href"]) as src:
        col, row = ~src.transform * (plan.grid.transform.c, plan.grid.transform.f)
        ny, nx = plan.grid.shape
        dn = src.read(1, window=rasterio.windows.Window(col, row, nx, ny), boundless=True, fill_value=0)
    expected = (dn.astype(np.float32) - np.float32(1000)) / np.float32(10000)
    compared = 0
    for n, patch in enumerate(plan.patches):
        if not time_mask[n, t]:
            continue
        rows, cols = patch.window(1)
        covered = dn[rows, cols] != 0
        stored = root["s2_10m"][n, t, 0]
        assert np.array_equal(stored[covered], expected[rows, cols][covered])
        compared += int(covered.sum())
    assert compared > 5000


def test_verify_finds_a_changed_float_value(built: tuple[BuildPlan, BuildPlan], tmp_path: Path) -> None:
    plan, _ = built
    copy = tmp_path / "ds"
    shutil.copytree(plan.config.output.path, copy)
    index = gpd.read_parquet(copy / "index.parquet")
    slot = int(index.iloc[0].zarr_index)
    array = zarr.open_group(str(copy / "data.zarr"), mode="r+")["indices"]
    kept = zarr.open_group(str(copy / "data.zarr"), mode="r")["time_mask"][slot]
    values = array[slot]
    t = int(np.flatnonzero(kept)[0])
    y, x = np.argwhere(~np.isnan(values[t, 1]))[0]
    values[t, 1, y, x] = np.nextafter(values[t, 1, y, x], np.float32(2))  # one ulp
    array[slot] = values
    problems = verify_dataset(copy, n_source=0)
    assert f"sample {index.iloc[0].key}: band ndvi differs between Zarr and LMDB" in problems
    assert any(p.startswith("checksum mismatch in data.zarr/indices/c/") for p in problems)


def test_lmdb_holds_float32_tensors_equal_to_zarr_and_verify_passes(built: tuple[BuildPlan, BuildPlan]) -> None:
    plan, _ = built
    out = plan.config.output.path
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["groups"]["s2_10m"]["dtype"] == "float32" and manifest["groups"]["s2_10m"]["nodata"] == "nan"
    assert manifest["groups"]["indices"]["bands"] == ["nd11", "ndvi"]  # sorted by name
    assert manifest["groups"]["indices"]["expressions"]["ndvi"] == "(B08 - B04) / (B08 + B04)"
    assert manifest["groups"]["indices"]["factor"] == 1
    index = gpd.read_parquet(out / "index.parquet")
    root = zarr.open_group(str(out / "data.zarr"), mode="r")
    row = index.iloc[0]
    with open_shards(out) as dataset:
        value = dataset.read_value(row.key, row.lmdb_part)
    assert value is not None and hashlib.sha256(value).hexdigest() == row.lmdb_sha256
    sample = load(value)
    kept = root["time_mask"][row.zarr_index]
    assert sample["ndvi"].dtype == np.float32 and sample["B04"].dtype == np.float32
    assert np.array_equal(sample["ndvi"], root["indices"][row.zarr_index][kept, 1], equal_nan=True)
    assert verify_dataset(out, n_source=2) == []


def test_float_statistics_from_the_stored_values(built: tuple[BuildPlan, BuildPlan]) -> None:
    plan, _ = built
    out = plan.config.output.path
    manifest = json.loads((out / "dataset.json").read_text())
    root = zarr.open_group(str(out / "data.zarr"), mode="r")
    kept = root["time_mask"][:]
    for group, i, band in (("s2_10m", 0, "B04"), ("indices", 1, "ndvi")):
        values = root[group][:, :, i][kept]  # NaN where nodata and in dropped candidates' slots
        values = values[~np.isnan(values)].astype(np.float64)
        stats = manifest["statistics"][band]
        assert stats["count"] == values.size > 1000
        assert stats["min"] == values.min() and stats["max"] == values.max()
        assert stats["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert stats["std"] == pytest.approx(values.std(), rel=1e-9)
        for p, got in stats["percentiles"].items():
            want = np.percentile(values, float(p), method="inverted_cdf")
            assert abs(got - want) <= abs(want) * 2.0**-12 + 1e-30, (band, p, got, want)


def test_training_reads_float_datasets_as_finite_normalised_tensors(built: tuple[BuildPlan, BuildPlan]) -> None:
    from eoshard.training.data import make_dataset
    from eoshard.training.manifest import Manifest

    plan, _ = built
    manifest = Manifest.read(plan.config.output.path)
    assert manifest.bands == ["B04", "B08", "B11", "nd11", "ndvi"]
    bands = ["B04", "ndvi"]
    lmdb, zarr_ds = (make_dataset(manifest, fmt, bands=bands) for fmt in ("lmdb", "zarr"))
    stats = manifest.raw["statistics"]
    for n in range(len(lmdb)):
        a, b = lmdb[n]["image"], zarr_ds[n]["image"]
        assert a.dtype.is_floating_point and bool(a.isfinite().all()) and a.equal(b)
    root = zarr.open_group(str(manifest.root / "data.zarr"), mode="r")
    with_nodata = 0
    for n, slot in enumerate(manifest.slots):
        kept = root["time_mask"][slot]
        stored = {"B04": root["s2_10m"][slot][kept, 0], "ndvi": root["indices"][slot][kept, 1]}  # NaN: no data
        image = lmdb[n]["image"].numpy()[: int(kept.sum())]
        for c, band in enumerate(bands):
            valid = ~np.isnan(stored[band])
            with_nodata += int((~valid).any())
            want = (stored[band][valid] - np.float32(stats[band]["mean"])) / np.float32(stats[band]["std"])
            assert np.allclose(image[:, c][valid], want, rtol=1e-5, atol=1e-5)
            assert (image[:, c][~valid] == 0).all()
    assert with_nodata >= 2


def test_index_names_must_not_take_band_or_tensor_names(demo_data: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cube.indices name\(s\) \['B04', 'valid_mask'\]"):
        plan_build(_config(demo_data, tmp_path / "ds", indices={"B04": "ndvi", "valid_mask": "ndvi", "x": "ndvi"}))


def test_indices_beside_digital_numbers(demo_data: Any, tmp_path: Path) -> None:
    """Without reflectance the groups stay uint16 (nodata 0, integer statistics); the indices group is float32."""
    out = tmp_path / "ds"
    plan = plan_build(_config(demo_data, out, indices={"ndvi": "ndvi"}))
    assert plan.nan_fill() == ("indices",)
    with in_process_client() as client:
        run_build(plan, client)
    manifest = json.loads((out / "dataset.json").read_text())
    assert {g: (v["dtype"], v["nodata"]) for g, v in manifest["groups"].items()} == {
        "s2_10m": ("uint16", 0), "s2_20m": ("uint16", 0), "indices": ("float32", "nan")
    }  # fmt: skip
    assert "histogram" not in manifest["statistics"]["B04"] and manifest["statistics"]["B04"]["min"] >= 1
    assert "histogram" in manifest["statistics"]["ndvi"]
    root = zarr.open_group(str(out / "data.zarr"), mode="r")
    assert root["s2_10m"].fill_value == 0 and np.isnan(root["indices"].fill_value)
    n = int(np.flatnonzero(root["sample_mask"][:])[0])
    kept = root["time_mask"][n]
    dn = root["s2_10m"][n][kept].astype(np.float32)
    offset = np.float32(-1000)  # 2024: baseline 04.00 or later
    red, nir = [np.where(dn[:, i] == 0, np.nan, (dn[:, i] + offset) / np.float32(10000)) for i in (0, 1)]
    ndvi = _ratio((nir - red).astype(np.float32), (nir + red).astype(np.float32))
    assert np.array_equal(root["indices"][n][kept, 0], ndvi, equal_nan=True)
    assert verify_dataset(out, n_source=1) == []
