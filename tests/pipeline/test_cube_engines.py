"""stackstac and odc-stac cubes on the demo world: the same grid, coordinates and values, and the COG pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.windows import from_bounds

from eoshard.flows.aoi import read_aoi
from eoshard.pipeline.cube import open_cube
from eoshard.pipeline.errors import PipelineError
from eoshard.pipeline.grid import grid_for_area
from tests.conftest import shared_path

# odc-stac reprojects from in-memory windows, which rasterio reports as not georeferenced (harmless)
pytestmark = pytest.mark.filterwarnings(
    "ignore:Dataset has no geotransform:rasterio.errors.NotGeoreferencedWarning"
)

BANDS = ["B04", "B08", "B11", "SCL", "B01"]
GDAL_TOLERANCE_PX = 0.125  # the approximate transformer's error bound in stackstac's WarpedVRT


def demo_items(catalog: Path) -> list[pystac.Item]:
    return list(pystac.Catalog.from_file(str(catalog)).get_items(recursive=True))


def demo_grid(aoi: Path):  # type: ignore[no-untyped-def]
    area, crs = read_aoi(aoi)
    return grid_for_area(area, crs, resolution=10)


@pytest.fixture(scope="module")
def cubes(demo_data) -> dict[str, dict[str, xr.DataArray]]:
    items, grid = demo_items(demo_data.catalog), demo_grid(demo_data.aoi)
    return {
        engine: {
            k: v.compute(scheduler="synchronous") for k, v in open_cube(items, grid, BANDS, engine=engine).items()
        }
        for engine in ("stackstac", "odc-stac")
    }


def source_item(items: list[pystac.Item], acquisition: str, epsg: int) -> pystac.Item | None:
    day = acquisition.split("_")[1]
    found = [
        i
        for i in items
        if i.properties["proj:code"] == f"EPSG:{epsg}" and i.datetime.strftime("%Y-%m-%d") == day  # type: ignore[union-attr]
    ]
    return sorted(found, key=lambda i: i.id)[-1] if found else None


def test_both_engines_give_the_same_cube(cubes, demo_data) -> None:
    a, b = cubes["stackstac"], cubes["odc-stac"]
    assert list(a) == list(b) == ["s2_10m", "s2_20m", "s2_60m"]
    assert [list(c.band.values) for c in a.values()] == [["B04", "B08"], ["B11", "SCL"], ["B01"]]
    items = demo_items(demo_data.catalog)
    to_33 = Transformer.from_crs(32632, 32633, always_xy=True)
    for name in a:
        x, y = a[name], b[name]
        assert x.dims == y.dims == ("time", "band", "y", "x")
        assert x.dtype == y.dtype == np.uint16
        assert x.attrs == y.attrs
        xr.testing.assert_identical(x.coords.to_dataset(), y.coords.to_dataset())
        assert x.sizes["time"] == 9
        differ = np.argwhere(x.values != y.values)
        # the engines agree everywhere but at near-ties of the reprojection from the other UTM zone, where
        # GDAL's approximate transformer (stackstac) may pick the neighbour of the exact nearest pixel
        assert len(differ) < 1e-4 * x.size
        for t, k, r, c in differ:
            src = source_item(items, str(x.acquisition.values[t]), 32633)
            assert src is not None
            with rasterio.open(src.assets[str(x.band.values[k])].get_absolute_href()) as ds:
                col, row = ~ds.transform * to_33.transform(float(x.x[c]), float(x.y[r]))
                exact = ds.read(1)[int(row), int(col)]
            edge = min(abs(col - round(col)), abs(row - round(row)))
            assert edge < GDAL_TOLERANCE_PX, (name, t, k, r, c, col, row)
            assert y.values[t, k, r, c] == exact


def test_cube_values_are_the_source_cog_pixels(cubes, demo_data) -> None:
    items = demo_items(demo_data.catalog)
    for engine, groups in cubes.items():
        checked = 0
        for cube in groups.values():
            res = float(cube.x[1] - cube.x[0])
            bounds = (float(cube.x[0]) - res / 2, float(cube.y[-1]) - res / 2,
                      float(cube.x[-1]) + res / 2, float(cube.y[0]) + res / 2)  # fmt: skip
            for t, acquisition in enumerate(cube.acquisition.values):
                item = source_item(items, str(acquisition), 32632)
                assert item is not None
                for k, band in enumerate(cube.band.values):
                    with rasterio.open(item.assets[str(band)].get_absolute_href()) as ds:
                        window = from_bounds(*bounds, transform=ds.transform)
                        expected = ds.read(1, window=window, boundless=True, fill_value=0)
                    assert expected.shape == cube.shape[2:]
                    valid = expected != 0  # elsewhere the product of the other UTM zone fills in
                    np.testing.assert_array_equal(cube.values[t, k][valid], expected[valid], err_msg=engine)
                    checked += int(valid.sum())
        assert checked > 0.6 * sum(c.size for c in groups.values())


def test_unknown_engine_is_refused(demo_data) -> None:
    with pytest.raises(PipelineError, match="unknown cube engine 'gdal'"):
        open_cube(demo_items(demo_data.catalog), demo_grid(demo_data.aoi), BANDS, engine="gdal")  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["stackstac", "odc-stac"])
def test_resampling_applies_only_where_products_are_reprojected(demo_data, engine) -> None:
    items, grid = demo_items(demo_data.catalog), demo_grid(demo_data.aoi)
    nearest = open_cube(items, grid, ["B04"], engine=engine)["s2_10m"].compute(scheduler="synchronous").values
    bilinear = open_cube(items, grid, ["B04"], engine=engine, resampling=Resampling.bilinear)["s2_10m"]
    smooth = bilinear.compute(scheduler="synchronous").values
    # only the grid-CRS tile covers these columns, so its pixels pass unresampled; the swath edge of the 3rd and
    # 6th acquisitions leaves gaps there that the other zone's (reprojected) product fills
    whole = [0, 1, 3, 4, 6, 7, 8]
    native = nearest[whole, ..., :480]
    np.testing.assert_array_equal(smooth[whole, ..., :480], native)
    assert native.all()
    east = (nearest[..., 500:] != 0) & (smooth[..., 500:] != 0)  # the other UTM zone's product, reprojected
    assert east.sum() > 10_000
    assert (nearest[..., 500:][east] != smooth[..., 500:][east]).mean() > 0.5


def test_both_engines_equal_the_real_t33uuu_jpeg2000_pixels(tmp_path: Path) -> None:
    """Real L1C JPEG2000 (13 bands at 10/20/60 m) in the grid's CRS: identical cubes, equal to the source."""
    import shapely

    from tests.integration.test_t33uuu_build import AOI, BANDS, _catalog

    data = shared_path("s2-l1c-T33UUU") / "IMG_DATA"
    items = demo_items(_catalog(tmp_path / "catalog", data))
    grid = grid_for_area(shapely.box(*AOI), "EPSG:32633", resolution=10, crs="EPSG:32633")
    a, b = (open_cube(items, grid, BANDS, engine=e, chunksize=144) for e in ("stackstac", "odc-stac"))
    assert [list(c.band.values) for c in a.values()] == [
        ["B02", "B03", "B04", "B08"], ["B05", "B06", "B07", "B8A", "B11", "B12"], ["B01", "B09", "B10"],
    ]  # fmt: skip
    for name in a:
        x, y = a[name].compute(scheduler="synchronous"), b[name].compute(scheduler="synchronous")
        xr.testing.assert_identical(x, y)
        assert x.dtype == np.uint16 and list(x.processing_baseline.values) == [""]  # L1C: no offset
        res = float(x.x[1] - x.x[0])
        for k, band in enumerate(x.band.values):
            with rasterio.open(data / f"T33UUU_20170216T102101_{band}.jp2") as ds:
                expected = ds.read(1, window=from_bounds(*AOI, transform=ds.transform))
            assert expected.shape == x.shape[2:] == (round(2880 / res),) * 2 and (expected > 0).all()
            np.testing.assert_array_equal(x.values[0, k], expected, err_msg=str(band))
