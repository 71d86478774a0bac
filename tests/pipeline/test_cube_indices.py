"""Spectral indices and band math against numpy on the demo's source COG pixels; the expression walker."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.windows import from_bounds

from eoshard.pipeline.cube import open_cube
from eoshard.pipeline.grid import attach_grid
from eoshard.pipeline.indices import STANDARD_INDICES, ExpressionError, compute_indices, expression_bands
from tests.pipeline.test_cube_engines import demo_grid, demo_items, source_item

BANDS = ["B03", "B04", "B08", "B11", "B12"]
CUSTOM = {"custom": "-B04 * 2 + (B11 - 0.5) / 3", "ndvi_again": "(B08 - B04) / (B08 + B04)"}
F = np.float32


def _reflectance(demo_data, acquisition: str, bounds: tuple[float, ...]) -> dict[str, np.ndarray]:
    """The native tile's bands as float32 reflectance on the 10 m grid (20 m pixels repeated), NaN nodata."""
    item = source_item(demo_items(demo_data.catalog), acquisition, 32632)
    assert item is not None
    out = {}
    for band in BANDS:
        with rasterio.open(item.assets[band].get_absolute_href()) as ds:
            dn = ds.read(1, window=from_bounds(*bounds, transform=ds.transform), boundless=True, fill_value=0)
            k = round(ds.res[0] / 10)
        dn = np.repeat(np.repeat(dn, k, axis=0), k, axis=1)
        out[band] = np.where(dn == 0, np.nan, (dn.astype(F) + F(-1000)) / F(10_000)).astype(F)
    return out


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, NaN where b is zero (some water pixels have B08 + B11 == 0 in reflectance)."""
    return np.where(b == 0, F(np.nan), a / np.where(b == 0, F(1), b))


def _numpy_indices(r: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    b3, b4, b8, b11, b12 = (r[b] for b in BANDS)
    return {
        "ndvi": _div(b8 - b4, b8 + b4),
        "ndwi": _div(b3 - b8, b3 + b8),
        "evi2": _div(F(2.5) * (b8 - b4), b8 + F(2.4) * b4 + F(1)),
        "ndbi": _div(b11 - b8, b11 + b8),
        "nbr": _div(b8 - b12, b8 + b12),
        "custom": -b4 * F(2) + (b11 - F(0.5)) / F(3),
        "ndvi_again": _div(b8 - b4, b8 + b4),
    }


@pytest.mark.parametrize("reflectance", [False, True])
def test_indices_equal_numpy_on_the_source_pixels(demo_data, reflectance: bool) -> None:
    items, grid = demo_items(demo_data.catalog), demo_grid(demo_data.aoi)
    cubes = open_cube(items, grid, BANDS, reflectance=reflectance)
    indices = compute_indices(cubes, grid, {**{k: k.upper() for k in STANDARD_INDICES}, **CUSTOM})
    first = indices["ndvi"]
    for name, values in indices.items():
        assert values.dims == ("time", "y", "x") and values.dtype == np.float32, name
        assert values.shape == (9, *grid.shape)
        np.testing.assert_array_equal(values.x.values, cubes["s2_10m"].x.values)
    computed = {k: v.compute(scheduler="synchronous").values for k, v in indices.items()}
    bounds = tuple(grid.extent.boundingbox)
    for t, acquisition in enumerate(first.acquisition.values):
        source = _reflectance(demo_data, str(acquisition), bounds)
        covered = np.all([np.isfinite(v) for v in source.values()], axis=0)  # where the native tile has data
        assert covered.mean() > 0.3  # the swath edge cuts two acquisitions
        for name, expected in _numpy_indices(source).items():
            np.testing.assert_array_equal(computed[name][t][covered], expected[covered], err_msg=name)
    assert 0.2 < np.nanmean(computed["ndvi"]) < 0.9  # vegetation, not a constant


def test_nodata_and_zero_denominators_are_nan() -> None:
    dn = np.array([[[[0, 1000, 1500]], [[0, 1000, 2500]]]], np.uint16)  # (time, band, y, x): B04, B08
    grid = GeoBox((1, 3), Affine(10.0, 0.0, 0.0, 0.0, -10.0, 10.0), "EPSG:32632")
    cube = attach_grid(xr.DataArray(
        dn, dims=("time", "band", "y", "x"),
        coords={"band": ["B04", "B08"], "y": [5.0], "x": [5.0, 15.0, 25.0], "boa_offset": ("time", [-1000])},
        attrs={"nodata": 0},
    ).chunk({"x": 1}), grid)  # fmt: skip
    ndvi = compute_indices({"s2_10m": cube}, grid, {"ndvi": "ndvi"})["ndvi"]
    assert ndvi.chunks is not None  # lazy
    # nodata, then 0 / 0 (both bands at reflectance 0), then (0.15 - 0.05) / (0.15 + 0.05) in float32
    np.testing.assert_allclose(ndvi.values, [[[np.nan, np.nan, 0.5]]], rtol=1e-6)


@pytest.fixture(scope="module")
def small_cube(demo_data) -> tuple[dict[str, xr.DataArray], GeoBox]:
    grid = demo_grid(demo_data.aoi)
    return open_cube(demo_items(demo_data.catalog), grid, ["B04", "B08"]), grid


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("B08 ** 2", "uses 'B08 \\*\\* 2'"),
        ("__import__('os').system('ls')", "uses \"__import__\\('os'\\).system\\('ls'\\)\""),
        ("B08 if B04 else 1", "uses 'B08 if B04 else 1'"),
        ("not B04", "uses 'not B04'"),
        ("True + B04", "uses 'True'"),
        ("B04[0]", "uses 'B04\\[0\\]'"),
        ("B04 +", "is not valid band math"),
        ("B04 / 0", "divides by the number 0"),
    ],
)
def test_expressions_other_than_band_math_are_refused(small_cube, expression: str, message: str) -> None:
    cubes, grid = small_cube
    with pytest.raises(ExpressionError, match=message):
        compute_indices(cubes, grid, {"x": expression})


def test_unknown_band_names_the_bands_there_are(small_cube) -> None:
    cubes, grid = small_cube
    with pytest.raises(ExpressionError, match=r"reads band\(s\) \['B99'\] .* \(it has \['B04', 'B08'\]\)"):
        compute_indices(cubes, grid, {"x": "B99 - B04"})
    assert expression_bands("evi2") == ["B08", "B04"]
