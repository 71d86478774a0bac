"""Cubes whose acquisitions each have one product (an AOI within one tile): the layer is taken as it is, without
stackstac's mosaic, and it is the product's own pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import shapely
from rasterio.windows import from_bounds

from eoshard.flows.demo.tile import write_tile_world
from eoshard.pipeline.cube import Engine, open_cube
from eoshard.pipeline.grid import grid_for_area
from eoshard.pipeline.masks import open_valid_mask
from eoshard.pipeline.scl import SCL_INVALID
from tests.laziness import computing_forbidden


def test_each_acquisition_is_its_product_as_read_by_rasterio(tmp_path: Path) -> None:
    world = write_tile_world(tmp_path, "small", dates=3)
    items = sorted(
        pystac.Catalog.from_file(str(world.catalog)).get_items(recursive=True), key=lambda i: i.datetime
    )
    area = shapely.geometry.shape(json.loads(world.aoi.read_text())["features"][0]["geometry"])
    grid = grid_for_area(area, "EPSG:4326", resolution=10)
    with computing_forbidden():
        cubes = open_cube(items, grid, ["B04", "B11"])
        valid = open_valid_mask(items, grid)
    assert [str(t)[:10] for t in cubes["s2_10m"].time.values] == [i.datetime.strftime("%Y-%m-%d") for i in items]
    assert list(cubes["s2_10m"].acquisition.values) == list(cubes["s2_20m"].acquisition.values)
    assert cubes["s2_10m"].dims == ("time", "band", "y", "x") and cubes["s2_10m"].dtype == np.uint16
    for name, band in (("s2_10m", "B04"), ("s2_20m", "B11")):
        cube = cubes[name]
        got = cube.sel(band=band).isel(y=slice(37, 301), x=slice(5, 250)).values
        y, x = cube.y.values, cube.x.values
        res = float(x[1] - x[0])
        bounds = (x[5] - res / 2, y[300] - res / 2, x[249] + res / 2, y[37] + res / 2)
        for t, item in enumerate(items):
            with rasterio.open(item.assets[band].get_absolute_href() or "") as src:
                want = src.read(1, window=from_bounds(*bounds, transform=src.transform).round_offsets())
            np.testing.assert_array_equal(got[t], want, err_msg=f"{name} {band} date {t}")
    # the SCL valid mask: classes read at 20 m by rasterio, each pixel repeated 2 x 2 onto the 10 m grid
    got_valid = valid.isel(y=slice(40, 300), x=slice(6, 250)).values
    y, x = valid.y.values, valid.x.values
    bounds = (x[6] - 5, y[299] - 5, x[249] + 5, y[40] + 5)
    wanted = []
    for t, item in enumerate(items):
        with rasterio.open(item.assets["SCL"].get_absolute_href() or "") as src:
            scl = src.read(1, window=from_bounds(*bounds, transform=src.transform).round_offsets())
        wanted.append(~np.isin(scl, SCL_INVALID).repeat(2, axis=0).repeat(2, axis=1))
        np.testing.assert_array_equal(got_valid[t], wanted[t], err_msg=f"SCL date {t}")
    assert 0 < np.mean(wanted) < 1  # pixels of both kinds


def test_products_listed_out_of_time_order_need_no_reordering_in_the_graph(tmp_path: Path) -> None:
    """Catalogs list products in any order (here: newest first). The cube is the same, in time order, and its
    graph holds stackstac's reads alone: no reordering step per chunk (44 MiB of the planning driver's memory for
    a whole tile's 12 dates)."""
    world = write_tile_world(tmp_path, "small", dates=3)
    items = list(pystac.Catalog.from_file(str(world.catalog)).get_items(recursive=True))
    area = shapely.geometry.shape(json.loads(world.aoi.read_text())["features"][0]["geometry"])
    grid = grid_for_area(area, "EPSG:4326", resolution=10)
    newest_first = sorted(items, key=lambda i: i.datetime, reverse=True)
    oldest_first = newest_first[::-1]
    with computing_forbidden():
        cubes = [open_cube(order, grid, ["B04", "B11"]) for order in (newest_first, oldest_first)]
    for name in ("s2_10m", "s2_20m"):
        reversed_cube, cube = cubes[0][name], cubes[1][name]
        assert [str(t)[:10] for t in reversed_cube.time.values] == [
            i.datetime.strftime("%Y-%m-%d") for i in oldest_first
        ]
        layers = reversed_cube.data.__dask_graph__().layers
        assert [k for k in layers if k.startswith(("getitem", "reindex", "take"))] == []
        window = {"y": slice(0, 64), "x": slice(100, 164)}
        np.testing.assert_array_equal(reversed_cube.isel(window).values, cube.isel(window).values)


@pytest.mark.parametrize("engine", ["stackstac", "odc-stac"])
def test_a_grid_no_product_touches_is_refused_not_a_cube_without_bands_or_of_nodata(
    tmp_path: Path, engine: Engine
) -> None:
    from eoshard.flows.demo.products import write_demo_data
    from eoshard.pipeline.errors import PipelineError

    demo = write_demo_data(tmp_path / "demo")
    items = list(pystac.Catalog.from_file(str(demo.catalog)).get_items(recursive=True))
    with pytest.raises(
        PipelineError, match=rf"none of the {len(items)} products has pixels of \[.B04.\] on the grid"
    ):
        open_cube(items, grid_for_area(shapely.box(10.0, 50.0, 10.05, 50.03)), ["B04", "B11"], engine=engine)
