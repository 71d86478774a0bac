"""The SCL valid mask in the build: clouds, shadows and cirrus leave the timeseries, not only nodata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import zarr

from eoshard.flows.build import plan_build, run_build
from eoshard.flows.config import parse_config
from eoshard.pipeline.masks import SCL_INVALID
from tests.services.dask_cluster import in_process_client

SMALL_AOI = (11.958, 48.003, 11.99, 48.022)  # both UTM tiles' products, clouds on several dates


def _build(demo_data: Any, out: Path, mask: str) -> Any:
    config = parse_config(
        {
            "name": f"scl-{mask}",
            "catalog": {"source": str(demo_data.catalog), "max_cloud": 95},
            "aoi": list(SMALL_AOI),
            "period": {"start": "2024-04-01", "end": "2024-09-30"},
            "bands": ["B02", "B11"],
            "grid": {"chunksize": 128},
            "patches": {"size": 48},
            "timeseries": {"mask": mask, "min_valid_fraction": 0.0, "min_dates": 1},
            "output": {"path": str(out), "formats": ["zarr"], "shard_size": 4},
        },
        out.parent,
    )
    plan = plan_build(config)
    with in_process_client() as client:
        run_build(plan, client)
    return plan


def test_scl_mask_drops_clouds_and_shadows_and_equals_the_scl_classes(demo_data, tmp_path: Path) -> None:
    plain = _build(demo_data, tmp_path / "nodata", "nodata")
    scl = _build(demo_data, tmp_path / "scl", "scl")
    assert [p.key for p in plain.patches] == [p.key for p in scl.patches]
    fraction_plain = zarr.open_group(str(tmp_path / "nodata" / "data.zarr"), mode="r")["valid_fraction"][:]
    root = zarr.open_group(str(tmp_path / "scl" / "data.zarr"), mode="r")
    fraction_scl, mask_scl = root["valid_fraction"][:], root["valid_mask"][:]
    n = len(scl.patches)
    assert (fraction_scl[:n] <= fraction_plain[:n] + 1e-7).all()
    assert (fraction_scl[:n] < fraction_plain[:n] - 0.05).sum() >= 3  # clouds somewhere on several dates

    # independently: the SCL classes of the product in the grid's CRS, read with rasterio, repeated 2x onto 10 m
    valid = scl.valid.compute().values  # (T, y, x)
    t = int(np.argmax((fraction_plain[:n] - fraction_scl[:n]).max(axis=0)))  # the date clouds cut most
    native = [i for i in scl.items if i["properties"]["proj:epsg"] == 32632 and
              i["properties"]["datetime"][:10] == scl.dates[t][:10]]  # fmt: skip
    assert native, "the test expects a product in the grid's CRS on that date"
    href = sorted(native, key=lambda i: i["id"])[-1]["assets"]["SCL"]["href"]
    with rasterio.open(href) as src:
        x0, y0 = scl.grid.transform.c, scl.grid.transform.f
        col, row = ~src.transform * (x0, y0)
        ny, nx = scl.grid.shape
        window = rasterio.windows.Window(col, row, nx / 2, ny / 2)
        classes = src.read(1, window=window, boundless=True, fill_value=0)
    expected = ~np.isin(classes, SCL_INVALID)
    expected = expected.repeat(2, axis=0).repeat(2, axis=1)[:ny, :nx]
    covered = classes.repeat(2, axis=0).repeat(2, axis=1)[:ny, :nx] != 0  # where this product has data
    assert covered.mean() > 0.5
    assert (valid[t][covered] == expected[covered]).all()
    # and the stored masks are that mask, cut to each patch and combined with the nodata mask
    for n_patch, patch in enumerate(scl.patches):
        rows, cols = patch.window(1)
        assert not (mask_scl[n_patch, t] & ~valid[t][rows, cols]).any()
        inside = covered[rows, cols]
        assert (mask_scl[n_patch, t][inside] == valid[t][rows, cols][inside]).all()
    # the stored fractions are the means of the stored masks
    assert np.allclose(fraction_scl[:n, t], mask_scl[:n, t].mean(axis=(1, 2)), atol=1e-6)


def test_direct_reads_cut_the_scl_mask_where_patches_start_inside_an_scl_pixel(demo_data, tmp_path: Path) -> None:
    """10 m bands only, odd size and stride: patches start on odd base pixels, inside 20 m SCL pixels. The direct
    reads must give the masks of the cubes' graph (the reference path); the default mask is SCL on these items."""
    stored = {}
    for reads in ("graph", "direct"):
        config = parse_config(
            {
                "name": f"odd-{reads}",
                "catalog": {"source": str(demo_data.catalog), "max_cloud": 95},
                "aoi": [11.958, 48.003, 11.975, 48.013],
                "period": {"start": "2024-06-01", "end": "2024-07-31"},
                "bands": ["B02"],
                "grid": {"chunksize": 128},
                "cube": {"reads": reads},
                "patches": {"size": 25, "stride": 13},
                "timeseries": {"min_valid_fraction": 0.0},
                "output": {"path": str(tmp_path / reads), "formats": ["zarr"], "shard_size": 8},
            },
            tmp_path,
        )
        plan = plan_build(config)
        assert plan.config.timeseries.mask == "scl" and (plan.sources is not None) == (reads == "direct")
        assert any(p.row % 2 for p in plan.patches) and any(p.col % 2 for p in plan.patches)
        with in_process_client() as client:
            run_build(plan, client)
        stored[reads] = zarr.open_group(str(tmp_path / reads / "data.zarr"), mode="r")["valid_mask"][:]
    assert stored["direct"].shape == stored["graph"].shape and 0.05 < stored["graph"].mean() < 0.95
    np.testing.assert_array_equal(stored["direct"], stored["graph"])
