"""SCL valid masks on the demo world against masks computed independently from the SCL COGs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.windows import from_bounds

from eoshard.pipeline.cube import open_cube
from eoshard.pipeline.errors import PipelineError
from eoshard.pipeline.masks import SCL_INVALID, open_valid_mask, scl_valid_mask, valid_fraction
from tests.pipeline.test_cube_engines import demo_grid, demo_items, source_item

WEST_COLUMNS = 480  # grid columns that only the EPSG:32632 tile covers (its east edge is at column 492)


def _expected(demo_data, invalid: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per acquisition: the valid mask from the native tile's SCL COG (numpy only) and where that COG has data."""
    items, grid = demo_items(demo_data.catalog), demo_grid(demo_data.aoi)
    acquisitions = open_cube(items, grid, ["B04"])["s2_10m"].acquisition.values
    masks, covered = [], []
    for acquisition in acquisitions:
        item = source_item(items, str(acquisition), 32632)
        with rasterio.open(item.assets["SCL"].get_absolute_href()) as ds:
            window = from_bounds(*grid.extent.boundingbox, transform=ds.transform)
            scl = ds.read(1, window=window, boundless=True, fill_value=0)
        scl10 = np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)
        masks.append(np.array([[v not in invalid for v in row] for row in scl10]))
        covered.append(scl10 != 0)
    return np.stack(masks), np.stack(covered)


@pytest.mark.parametrize("invalid", [SCL_INVALID, (0, 3, 9)])
def test_scl_mask_on_the_10m_grid_equals_the_cog_classes(demo_data, invalid: tuple[int, ...]) -> None:
    items, grid = demo_items(demo_data.catalog), demo_grid(demo_data.aoi)
    mask = open_valid_mask(items, grid, invalid=invalid)
    cube = open_cube(items, grid, ["B04"])["s2_10m"]
    assert mask.dims == ("time", "y", "x") and mask.dtype == bool and mask.shape == (9, *grid.shape)
    xr.testing.assert_identical(mask.time.reset_coords(), cube.time.reset_coords())
    np.testing.assert_array_equal(mask.x.values, cube.x.values)
    np.testing.assert_array_equal(mask.y.values, cube.y.values)
    got = mask.values
    expected, covered = _expected(demo_data, invalid)
    np.testing.assert_array_equal(got[covered], expected[covered])
    assert covered.mean() > 0.7 and 0.2 < expected.mean() < 0.9  # the check is not vacuous
    west = valid_fraction(mask.isel(x=slice(0, WEST_COLUMNS))).values
    # dates whose native tile has data over the whole west part (the swath edge cuts two of them)
    whole = covered[..., :WEST_COLUMNS].all(axis=(1, 2))
    assert whole.sum() == 7
    np.testing.assert_allclose(west[whole], expected[whole, :, :WEST_COLUMNS].mean(axis=(1, 2)), rtol=1e-6)


def test_mask_is_lazy_and_the_fraction_is_per_date() -> None:
    scl = xr.DataArray(
        np.array([[[4, 8], [3, 5]], [[0, 0], [6, 11]]], dtype=np.uint8), dims=("time", "y", "x")
    ).chunk({"time": 1})
    mask = scl_valid_mask(scl)
    assert mask.chunks is not None
    np.testing.assert_array_equal(mask.values, [[[True, False], [False, True]], [[False, False], [True, True]]])
    np.testing.assert_array_equal(valid_fraction(mask).values, np.array([0.5, 0.5], np.float32))
    assert mask.attrs["invalid_scl_classes"] == [0, 1, 3, 8, 9, 10]


def test_unknown_scl_class_is_refused() -> None:
    scl = xr.DataArray(np.zeros((1, 2, 2), np.uint8), dims=("time", "y", "x"))
    with pytest.raises(ValueError, match=r"SCL classes \[12\] do not exist"):
        scl_valid_mask(scl, invalid=(0, 12))


def test_a_cube_that_does_not_nest_is_refused(demo_data) -> None:
    from eoshard.pipeline.cube import onto_grid

    items, grid = demo_items(demo_data.catalog), demo_grid(demo_data.aoi)
    coarse = open_cube(items, grid, ["B01"])["s2_60m"]
    with pytest.raises(PipelineError, match="does not nest in the 10 m grid"):
        onto_grid(coarse.isel(x=slice(1, None)), grid)


def test_a_cube_repeated_onto_the_finer_grid_is_each_pixel_twice_with_one_task_per_chunk(demo_data) -> None:
    from eoshard.pipeline.cube import onto_grid

    items, grid = demo_items(demo_data.catalog), demo_grid(demo_data.aoi)
    coarse = open_cube(items, grid, ["B11"])["s2_20m"].isel(time=slice(0, 2))
    fine = onto_grid(coarse, grid)
    assert fine.shape == (2, 1, *grid.shape)
    assert fine.data.chunks[2:] == tuple(tuple(2 * c for c in sizes) for sizes in coarse.data.chunks[2:])
    assert len(fine.data.__dask_graph__()) - len(coarse.data.__dask_graph__()) == coarse.data.npartitions
    values = coarse.values
    expected = values.repeat(2, axis=2).repeat(2, axis=3)
    np.testing.assert_array_equal(fine.values, expected)
    np.testing.assert_array_equal(onto_grid(coarse.copy(data=values), grid).values, expected)  # in memory too
