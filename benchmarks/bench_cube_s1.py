"""The Sentinel-1 group of the cube beside a plain rasterio read of the same windows.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_cube_s1.py [WORKDIR]

``open_cube`` over the demo world's Sentinel-1 RTC-like products (float32 VV/VH, two UTM zones, mosaicked per
overpass) computed with the threaded scheduler, stackstac then odc-stac, against the baseline that opens every
product's COG of each band with rasterio and reads the window covering the grid (no mosaic, no reprojection).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import dask
import pystac
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from eoshard.flows.aoi import read_aoi
from eoshard.flows.demo.products import write_demo_data
from eoshard.pipeline.cube import open_cube
from eoshard.pipeline.grid import grid_for_area

BANDS = ["vv", "vh"]
CHUNK = 256
WORKERS = 2


def _read_windows(items: list[pystac.Item], grid: GeoBox) -> int:
    n = 0
    for item in items:
        for band in BANDS:
            with rasterio.open(item.assets[band].get_absolute_href()) as src:
                bounds = transform_bounds(str(grid.crs), src.crs, *grid.extent.boundingbox)
                window = from_bounds(*bounds, transform=src.transform).intersection(
                    Window(0, 0, src.width, src.height)
                )
                n += src.read(1, window=window.round_offsets().round_lengths()).size
    return n


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-cube-s1-"))
    s1 = work / "demo" / "s1" / "items.json"
    if not s1.exists():
        write_demo_data(work / "demo")
    items = list(pystac.ItemCollection.from_file(str(s1)))
    area, crs = read_aoi(work / "demo" / "aoi.geojson")
    grid = grid_for_area(area, crs, resolution=10)
    _read_windows(items, grid)  # warm the page cache for both sides alike
    start = time.perf_counter()
    pixels = _read_windows(items, grid)
    base = time.perf_counter() - start
    print(f"grid {grid.shape[0]} x {grid.shape[1]} px at 10 m, {len(items)} Sentinel-1 products, bands {BANDS}")
    print(f"  baseline rasterio window reads: {base:7.3f} s ({pixels / 1e6:.2f} Mpx read)")
    for engine in ("stackstac", "odc-stac"):
        cube = open_cube(items, grid, BANDS, engine=engine, chunksize=CHUNK)["s1_10m"]  # type: ignore[arg-type]
        start = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=WORKERS):
            values = cube.compute()
        seconds = time.perf_counter() - start
        print(
            f"  open_cube {engine:9s} compute:   {seconds:7.3f} s ({values.size / 1e6:.2f} Mpx float32 in the cube)"
        )
        print(f"    ratio {engine} / baseline: {seconds / base:.2f}x")


if __name__ == "__main__":
    main()
