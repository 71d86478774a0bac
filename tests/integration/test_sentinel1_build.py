"""Sentinel-1 beside Sentinel-2 (format 1.1): each sensor with its own dates and valid masks in one sample.

The demo world's Sentinel-1 overpasses (flows/eoshard/flows/demo/s1.py) fall on other days than most Sentinel-2
acquisitions, and the 2024-04-20 overpass misses the east of this AOI (swath edge). The S1 pixels are checked
against rasterio reads of the S1 COGs, and the Sentinel-2 part against a Sentinel-2-only build of the same AOI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pystac
import pytest
import rasterio
import zarr
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import from_bounds
from typer.testing import CliRunner

from eoshard.flows.build import plan_build
from eoshard.flows.cli import app
from eoshard.flows.config import parse_config
from eoshard.pipeline import open_dataset
from eoshard.pipeline.shards.xarray_view import sample_image
from tests.dataset_bytes import dataset_files, lmdb_contents, lmdb_samples
from tests.demo_config import S1_AOI, demo_s1_config, write_config
from tests.integration.test_refresh import (
    CUT,
    acquired,
    assert_same_as_a_single_build,
    build_half,
    hidden_files,
    invoke,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:1 of 480 label geometries were invalid:UserWarning"),
]

S1_DATES = ["2024-04-08T05:25:12", "2024-04-14T17:02:41", "2024-04-20T05:25:13", "2024-05-18T17:02:44"]
SIZE = 24
S1_TENSORS = {"vv", "vh", "s1_valid_mask", "s1_valid_fraction", "s1_date", "s1_doy", "s1_time_index"}


def _build(config: dict[str, Any], path: Path) -> None:
    result = CliRunner().invoke(app, ["build", str(write_config(config, path)), "--workers", "1"])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def builds(demo_data: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("s1")
    both = demo_s1_config(demo_data, root / "both", size=SIZE)
    _build(both, root / "both.yaml")
    s2_only = {k: v for k, v in both.items() if k != "s1"}
    _build(
        {**s2_only, "bands": ["B02", "B11"], "output": {**both["output"], "path": str(root / "s2")}},
        root / "s2.yaml",
    )
    return {"both": root / "both", "s2": root / "s2", "root": root}


def _manifest(path: Path) -> dict[str, Any]:
    return dict(json.loads((path / "dataset.json").read_text()))


def _s1_reads(s1: Path, transform: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(T_s1, 2, P, P)`` vv/vh of the patch as the mosaic of each overpass: read with rasterio from its 32UQU COG
    (in the grid's CRS, on top), and where that has no data, from its 33UUP COG warped onto the patch (nearest);
    and the expected valid mask ``(T_s1, P, P)`` (a band neither 0 nor NaN)."""
    items: dict[str, dict[str, pystac.Item]] = {}
    for item in pystac.ItemCollection.from_file(str(s1)):
        items.setdefault(item.datetime.strftime("%Y-%m-%dT%H:%M:%S"), {})[item.properties["proj:code"]] = item
    a, _, c, _, e, f = transform
    bounds = (c, f + e * SIZE, c + a * SIZE, f)
    patch = Affine(a, 0.0, c, 0.0, e, f)
    stack = []
    for date in S1_DATES:
        bands = []
        for band in ("vv", "vh"):
            with rasterio.open(items[date]["EPSG:32632"].assets[band].href) as src:
                native = src.read(1, window=from_bounds(*bounds, transform=src.transform))
            with (
                rasterio.open(items[date]["EPSG:32633"].assets[band].href) as src,
                WarpedVRT(
                    src, crs="EPSG:32632", transform=patch, width=SIZE, height=SIZE, resampling=Resampling.nearest
                ) as vrt,
            ):
                other = vrt.read(1)
            bands.append(np.where(native != 0, native, other))
        stack.append(np.stack(bands))
    values = np.stack(stack)
    return values, ((values != 0) & ~np.isnan(values)).any(axis=1)


def test_the_manifest_says_format_1_1_with_the_s1_dates_of_their_own(builds: dict[str, Path]) -> None:
    both, s2 = _manifest(builds["both"]), _manifest(builds["s2"])
    assert (both["format_version"], s2["format_version"]) == ("1.1", "1.0")
    assert both["dates"] == s2["dates"] and "sensor_dates" not in s2
    assert both["sensor_dates"] == {"s1": S1_DATES}
    assert both["groups"]["s1_10m"] == {"bands": ["vv", "vh"], "resolution": 10.0, "factor": 1,
                                        "shape": [4, 2, SIZE, SIZE], "dtype": "float32", "nodata": "nan"}  # fmt: skip
    assert (
        both["groups"]["s2_10m"] == s2["groups"]["s2_10m"] and both["groups"]["s2_20m"] == s2["groups"]["s2_20m"]
    )
    assert both["timeseries"] == {**s2["timeseries"], "s1": {"min_valid_fraction": 0.5, "min_dates": 1}}
    assert {k: both["statistics"][k] for k in ("B02", "B11")} == s2["statistics"]
    assert both["statistics"]["vv"]["count"] > 0 and both["statistics"]["vv"]["min"] > 0  # nodata 0.0 left out
    assert both["band_metadata"]["vv"]["units"] == "linear"
    attrs = zarr.open_group(str(builds["both"] / "data.zarr"), mode="r").attrs
    assert (attrs["format_version"], attrs["dates"], attrs["sensor_dates"]) == (
        "1.1",
        s2["dates"],
        {"s1": S1_DATES},
    )


def test_s1_pixels_dates_and_masks_equal_rasterio_reads(builds: dict[str, Path], demo_data: Any) -> None:
    path = builds["both"]
    index = gpd.read_parquet(path / "index.parquet")
    store = zarr.open_group(str(path / "data.zarr"), mode="r")
    samples = lmdb_samples(path)
    assert store["s1_10m"].metadata.dimension_names == ("sample", "time_s1", "band_s1_10m", "y_s1_10m", "x_s1_10m")
    assert store["s1_valid_mask"].metadata.dimension_names == ("sample", "time_s1", "y", "x")
    kept_0420 = 0
    for row in index.itertuples():
        values, mask = _s1_reads(demo_data.s1, list(row.transform))
        fraction = mask.reshape(4, -1).mean(axis=1).astype(np.float32)
        kept = (fraction >= 0.5) & (fraction > 0)
        kept_0420 += int(kept[2])
        slot = row.zarr_index
        np.testing.assert_array_equal(store["s1_time_mask"][slot], kept)
        np.testing.assert_array_equal(store["s1_valid_fraction"][slot], fraction)
        np.testing.assert_array_equal(store["s1_valid_mask"][slot], mask & kept[:, None, None])
        zarr_values = store["s1_10m"][slot]
        assert zarr_values[kept].view(np.uint32).tolist() == values[kept].view(np.uint32).tolist()  # bit for bit
        assert np.isnan(zarr_values[~kept]).all()  # dates the sample did not keep: NaN padding
        sample = samples[row.key]
        for i, band in enumerate(("vv", "vh")):
            assert sample[band].view(np.uint32).tolist() == values[kept, i].view(np.uint32).tolist()
        np.testing.assert_array_equal(sample["s1_valid_mask"], mask[kept])
        np.testing.assert_array_equal(sample["s1_time_index"], np.flatnonzero(kept))
        np.testing.assert_array_equal(sample["s1_doy"], np.array([99, 105, 111, 139])[kept])
        assert list(row.s1_dates) == [d for d, k in zip(S1_DATES, kept, strict=True) if k]
        assert row.s1_n_dates == kept.sum()
    assert 0 < kept_0420 < len(index)  # the swath edge crosses the AOI: some samples keep 04-20, some do not


def test_the_s2_part_equals_a_sentinel_2_only_build(builds: dict[str, Path]) -> None:
    both, s2 = (zarr.open_group(str(builds[k] / "data.zarr"), mode="r") for k in ("both", "s2"))
    s2_arrays = sorted(name for name, _ in s2.arrays())
    assert sorted(name for name, _ in both.arrays()) == sorted(
        [*s2_arrays, "s1_10m", "s1_valid_mask", "s1_valid_fraction", "s1_time_mask"]
    )
    for name in s2_arrays:
        np.testing.assert_array_equal(both[name][:], s2[name][:], err_msg=name)
    lmdb_both, lmdb_s2 = lmdb_samples(builds["both"]), lmdb_samples(builds["s2"])
    assert sorted(lmdb_both) == sorted(lmdb_s2)
    for key, sample in lmdb_s2.items():
        assert set(lmdb_both[key]) == set(sample) | S1_TENSORS
        for name, values in sample.items():
            np.testing.assert_array_equal(lmdb_both[key][name], values, err_msg=f"{key} {name}")
    index_both, index_s2 = (gpd.read_parquet(builds[k] / "index.parquet") for k in ("both", "s2"))
    same = [c for c in index_s2.columns if c not in ("lmdb_sha256", "lmdb_crc32c")]
    assert set(index_both.columns) - set(same) == {
        "lmdb_sha256", "lmdb_crc32c", "s1_dates", "s1_n_dates", "s1_valid_fraction"
    }  # fmt: skip
    assert index_both[same].equals(index_s2[same])


def test_a_1_1_dataset_refreshes_to_a_single_build(demo_data: Any, tmp_path: Path) -> None:
    """The second half of the Sentinel-2 season arrives: the refresh reuses the held Sentinel-2 steps (their files
    are hidden), reads the Sentinel-1 steps again, and gives the single build's bytes."""
    s1 = {"source": str(demo_data.s1), "collection": "sentinel-1-rtc"}
    sensors = {"aoi": S1_AOI, "bands": ["B02", "B11", "vv", "vh"], "s1": s1,
               "grid": {"resolution": 10, "chunksize": 128, "crs": "EPSG:32632"}}  # fmt: skip
    case = build_half(tmp_path, demo_data, lambda i: acquired(i) < CUT, **sensors)
    half = case["half"]
    assert half["format_version"] == "1.1" and half["sensor_dates"] == {"s1": S1_DATES}
    with hidden_files(case["first"], tmp_path / "hidden"):
        result = invoke("refresh", str(case["config"]))
    assert result.exit_code == 0 and "new product(s)" in " ".join(result.output.split()), result.output
    refreshed = _manifest(case["out"])
    assert refreshed["sensor_dates"] == half["sensor_dates"]
    assert refreshed["dates"][: len(half["dates"])] == half["dates"] and len(refreshed["dates"]) > len(
        half["dates"]
    )
    assert_same_as_a_single_build(case)


def test_reading_through_the_cubes_graph_gives_the_same_bytes(builds: dict[str, Path], demo_data: Any) -> None:
    """The S1 group read directly (another group with its own steps) equals the lazy cube's graph, byte for byte."""
    out = builds["root"] / "graph"
    config = demo_s1_config(demo_data, out, size=SIZE, cube={"reads": "graph"})
    _build(config, builds["root"] / "graph.yaml")
    direct = {k: v for k, v in dataset_files(builds["both"]).items() if not k.startswith("_build")}
    graph = {k: v for k, v in dataset_files(out).items() if not k.startswith("_build")}
    assert sorted(direct) == sorted(graph) and [k for k in direct if direct[k] != graph[k]] == []
    assert lmdb_contents(builds["both"]) == lmdb_contents(out)


def test_verify_and_the_xarray_view_read_a_1_1_dataset(builds: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["verify", str(builds["both"])])
    assert result.exit_code == 0 and "no difference" in " ".join(result.output.split()), result.output
    ds = open_dataset(builds["both"])
    assert [str(t)[:19] for t in ds["time_s1"].values] == S1_DATES and ds.sizes["time"] == len(
        _manifest(builds["s2"])["dates"]
    )
    key, slot = str(ds.sample.values[0]), int(gpd.read_parquet(builds["both"] / "index.parquet").zarr_index[0])
    image = sample_image(ds, key, "s1_10m")
    assert image.dims == ("time_s1", "band", "y", "x")
    store = zarr.open_group(str(builds["both"] / "data.zarr"), mode="r")
    np.testing.assert_array_equal(image.values, store["s1_10m"][slot])


def test_an_scl_mask_plan_reads_scl_of_the_sentinel_2_products_only(demo_data: Any, tmp_path: Path) -> None:
    config = parse_config(demo_s1_config(demo_data, tmp_path / "scl", timeseries={"mask": "scl"}), tmp_path)
    plan = plan_build(config)
    assert plan.valid is not None and plan.valid.sizes["time"] == len(plan.dates)
    assert plan.sensor_dates["s1"] == S1_DATES and plan.layouts()["s1_valid_mask"][0] == (4, SIZE, SIZE)
    assert plan.sources is not None and plan.sources.scl is not None
    assert len(plan.sources.scl.steps) == len(plan.dates) and len(plan.sources.groups["s1_10m"].steps) == 4
    products = {p.id for step in plan.sources.groups["s1_10m"].steps for p in step}
    assert all(p.startswith("S1A_IW_GRDH") for p in products) and len(products) == 8  # 4 overpasses x 2 tiles


def test_no_s1_product_in_the_period_is_a_clear_error(demo_data: Any, tmp_path: Path) -> None:
    config = demo_s1_config(demo_data, tmp_path / "none", period={"start": "2024-06-01", "end": "2024-09-30"})
    result = CliRunner().invoke(app, ["build", str(write_config(config, tmp_path / "none.yaml"))])
    assert result.exit_code == 1
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "s1: no Sentinel-1 product of" in said and "check the s1 section" in said
    assert "Traceback" not in result.output and not (tmp_path / "none").exists()


def test_the_quicklooks_of_a_dataset_without_lmdb_read_the_lmdb_samples_from_zarr(
    builds: dict[str, Path], tmp_path: Path
) -> None:
    """``eoshard inspect`` drew its quicklooks from LMDB alone: a dataset built without LMDB was an AssertionError
    in the reader (found by the manifest fuzz test). The samples it draws from Zarr equal the LMDB values, bands of
    both sensors with their own dates, valid fractions and classes; the reader asked for LMDB there says what to do."""
    from dataclasses import replace

    from eoshard.flows.quicklooks import _sample
    from eoshard.pipeline.errors import DatasetError
    from eoshard.pipeline.shards.reader import ShardedDataset, open_shards

    with open_shards(builds["both"]) as both:
        zarr_only = ShardedDataset(both.path, replace(both.layout, lmdb=None))
        rows = list(both.index(["key", "lmdb_part", "zarr_index"]).itertuples())
        for row in rows:
            expected = both.read_sample(str(row.key), str(row.lmdb_part))
            got = _sample(zarr_only, row)
            assert {"B02", "vv", "vh", "valid_fraction", "class"} <= set(got) <= set(expected)
            for name, values in got.items():
                np.testing.assert_array_equal(values, expected[name], err_msg=f"{row.key} {name}", strict=True)
        with pytest.raises(DatasetError, match=r"was built without LMDB \(formats: zarr only\): read its samples"):
            zarr_only.read_sample(str(rows[0].key), str(rows[0].lmdb_part))
