"""Processing baselines and BOA offsets on the cube's time steps; reflectance only when asked."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds

from eoshard.pipeline.cube import open_cube, stackstac_ready
from eoshard.pipeline.errors import PipelineError
from eoshard.pipeline.reflectance import boa_offset
from eoshard.pipeline.timeseries import nodata_mask
from tests.pipeline.test_cube_engines import demo_grid, demo_items, source_item


def test_baseline_and_offset_are_recorded_per_time_step(demo_data) -> None:
    cube = open_cube(demo_items(demo_data.catalog), demo_grid(demo_data.aoi), ["B04"])["s2_10m"]
    assert cube.dtype == np.uint16
    # acquisition 3 has a reprocessed copy (05.11) of one tile beside 05.10 products: the newest is recorded
    assert list(cube.processing_baseline.values) == ["05.10", "05.10", "05.11"] + ["05.10"] * 6
    assert cube.boa_offset.dtype == np.int16 and set(cube.boa_offset.values) == {-1000}


@pytest.mark.parametrize(
    ("baseline", "offset"), [("05.10", -1000), ("04.00", -1000), ("03.01", 0), ("02.14", 0), ("", 0)]
)
def test_offset_applies_from_baseline_04_00(baseline: str, offset: int) -> None:
    assert boa_offset(baseline) == offset


def test_malformed_baseline_is_refused() -> None:
    with pytest.raises(PipelineError, match=r"processing baseline 'N0510' is not of the form NN\.NN"):
        boa_offset("N0510")


def test_reflectance_is_float32_dn_plus_offset_over_10000(demo_data) -> None:
    items, grid = demo_items(demo_data.catalog), demo_grid(demo_data.aoi)
    cubes = open_cube(items, grid, ["B04", "B11", "SCL"], reflectance=True)
    digital = open_cube(items, grid, ["B04", "B11", "SCL"])
    for name, cube in cubes.items():
        assert cube.dtype == np.float32, name
        values = cube.compute(scheduler="synchronous").values
        res = float(cube.x[1] - cube.x[0])
        bounds = (float(cube.x[0]) - res / 2, float(cube.y[-1]) - res / 2,
                  float(cube.x[-1]) + res / 2, float(cube.y[0]) + res / 2)  # fmt: skip
        for t, acquisition in enumerate(cube.acquisition.values):
            item = source_item(items, str(acquisition), 32632)
            assert item is not None
            for k, band in enumerate(cube.band.values):
                with rasterio.open(item.assets[str(band)].get_absolute_href()) as ds:
                    dn = ds.read(
                        1, window=from_bounds(*bounds, transform=ds.transform), boundless=True, fill_value=0
                    )
                valid = dn != 0
                if band == "SCL":  # classes are no reflectance: values kept
                    expected = dn.astype(np.float32)
                else:
                    expected = (dn.astype(np.float32) + np.float32(-1000)) / np.float32(10_000)
                np.testing.assert_array_equal(values[t, k][valid], expected[valid])
        # nodata -> NaN, everywhere in the mosaic (the swath edge of the 3rd acquisition leaves some)
        missing = digital[name].compute(scheduler="synchronous").values == 0
        np.testing.assert_array_equal(np.isnan(values), missing)
        assert missing[2].any()


def test_nan_is_no_data_in_the_timeseries_mask() -> None:
    images = {"s2_10m": np.array([[[[np.nan, 0.1]], [[np.nan, np.nan]]]], np.float32)}  # (T, C, H, W)
    np.testing.assert_array_equal(nodata_mask(images, {"s2_10m": 1}), [[[False, True]]])


def test_mixed_offsets_in_one_acquisition_are_refused(demo_data) -> None:
    """The offset comes from the products' raster:bands where they declare one, else from the baseline."""
    items = [stackstac_ready(i) for i in demo_items(demo_data.catalog)]
    reprocessed = next(d for d in items if d["properties"]["s2:processing_baseline"] == "05.11")
    reprocessed["properties"]["s2:processing_baseline"] = "03.01"
    open_cube(items, demo_grid(demo_data.aoi), ["B04"])  # raster:bands still say -0.1: no mix
    for data in items:  # without raster:bands scale/offset the baseline decides
        data["assets"]["B04"] = {**data["assets"]["B04"], "raster:bands": [{"nodata": 0, "data_type": "uint16"}]}
    with pytest.raises(
        PipelineError,
        match=r"mixes processing baselines \['03.01', '05.10'\] with different BOA offsets \[-1000, 0\]",
    ):
        open_cube(items, demo_grid(demo_data.aoi), ["B04"])
