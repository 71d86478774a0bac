"""Cube compute beside a plain rasterio read of the same windows, and peak memory at two AOI sizes.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_cube.py [WORKDIR]

1. Time: ``open_cube`` (stackstac, then odc-stac) computed with the threaded scheduler, against the baseline
   that opens every product's COG of every band with rasterio and reads the window covering the grid (no
   mosaic, no reprojection: the floor of what the cube must read).
2. Memory: a subprocess per AOI size computes a per-date reduction of the cube chunk by chunk and reports its
   peak resident memory (``ru_maxrss``); it should not grow with the AOI, only the chunk size matters.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import dask
import numpy as np
import pystac
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.warp import transform_bounds
from rasterio.windows import from_bounds

sys.path.insert(0, str(Path(__file__).parent))
from _demo import BANDS, demo_world

from eoshard.flows.aoi import read_aoi
from eoshard.pipeline.cube import open_cube
from eoshard.pipeline.grid import grid_for_area

CHUNK = 256
MEMORY_CHUNK = 128  # chunks small enough that every AOI size spans several of them
WORKERS = 2


def _setup(work: Path) -> tuple[list[pystac.Item], GeoBox]:
    demo = demo_world(work / "demo")
    items = list(pystac.Catalog.from_file(str(demo.catalog)).get_items(recursive=True))
    area, crs = read_aoi(demo.aoi)
    return items, grid_for_area(area, crs, resolution=10)


def _baseline(items: list[pystac.Item], grid: GeoBox) -> int:
    """Read the grid's window of every band of every product with rasterio; returns the pixels read."""
    n = 0
    for item in items:
        for band in BANDS:
            with rasterio.open(item.assets[band].get_absolute_href()) as src:
                bounds = transform_bounds(str(grid.crs), src.crs, *grid.extent.boundingbox)
                window = from_bounds(*bounds, transform=src.transform).intersection(
                    rasterio.windows.Window(0, 0, src.width, src.height)
                )
                n += src.read(1, window=window.round_offsets().round_lengths()).size
    return n


def _time(items: list[pystac.Item], grid: GeoBox) -> None:
    _baseline(items, grid)  # warm the page cache for both sides alike
    start = time.perf_counter()
    pixels = _baseline(items, grid)
    base = time.perf_counter() - start
    results = {}
    for engine in ("stackstac", "odc-stac"):
        cubes = open_cube(items, grid, BANDS, engine=engine, chunksize=CHUNK)  # type: ignore[arg-type]
        start = time.perf_counter()
        with dask.config.set(scheduler="threads", num_workers=WORKERS):
            computed = dask.compute(*[c.data for c in cubes.values()])
        results[engine] = time.perf_counter() - start
        size = sum(a.size for a in computed)
    print(f"grid {grid.shape[0]} x {grid.shape[1]} px at 10 m, {len(items)} products, bands {BANDS}")
    print(f"  baseline rasterio window reads: {base:7.2f} s ({pixels / 1e6:.1f} Mpx read)")
    for engine, seconds in results.items():
        print(f"  open_cube {engine:9s} compute:   {seconds:7.2f} s ({size / 1e6:.1f} Mpx in the cube)")
        print(f"    ratio {engine} / baseline: {seconds / base:.2f}x")


def _memory_child(work: Path, fraction: float) -> None:
    """In a subprocess: the cube over ``fraction`` of the AOI's extent, reduced chunk by chunk."""
    items, grid = _setup(work)
    ny, nx = (int(s * fraction) // 6 * 6 for s in grid.shape)
    sub = GeoBox((ny, nx), grid.transform, grid.crs)  # beyond 1.0 it reaches past the tiles: fill values
    before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    cubes = open_cube(items, sub, BANDS, chunksize=MEMORY_CHUNK)
    reductions = [c.astype(np.float64).sum(("y", "x")).data for c in cubes.values()]
    graph = dict(dask.base.collections_to_expr(reductions, optimize_graph=True).__dask_graph__())
    graph_mib, n_tasks = tracemalloc.get_traced_memory()[0] / 2**20, len(graph)
    del graph
    with dask.config.set(scheduler="threads", num_workers=WORKERS):
        sums = dask.compute(*reductions)
    traced_mib = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert all(np.all(s > 0) for s in sums)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cube_mib = sum(c.nbytes for c in cubes.values()) / 2**20
    print(json.dumps({"shape": list(sub.shape), "peak_mib": peak_mib, "before_mib": before_mib, "tasks": n_tasks,
                      "graph_mib": graph_mib, "traced_mib": traced_mib, "cube_mib": cube_mib}))  # fmt: skip


def _memory(work: Path) -> None:
    print(f"peak memory (subprocess per AOI, {MEMORY_CHUNK} px chunks, {WORKERS} threads):")
    rows = []
    for fraction in (1.0, 2.0):
        out = subprocess.run(
            [sys.executable, __file__, str(work), "--memory-child", str(fraction)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for row in rows:
        print(
            f"  AOI {row['shape'][0]} x {row['shape'][1]} px: traced peak {row['traced_mib']:6.1f} MiB, of which "
            f"task graph ({row['tasks']} tasks) {row['graph_mib']:5.1f} MiB and pixels in flight "
            f"{row['traced_mib'] - row['graph_mib']:5.1f} MiB; process peak {row['peak_mib']:6.1f} MiB "
            f"({row['before_mib']:.1f} MiB after imports); the whole cube would be {row['cube_mib']:5.1f} MiB"
        )
    area_ratio = (rows[1]["shape"][0] * rows[1]["shape"][1]) / (rows[0]["shape"][0] * rows[0]["shape"][1])
    data = [r["traced_mib"] - r["graph_mib"] for r in rows]
    print(
        f"  AOI area x{area_ratio:.2f} -> pixels in flight x{data[1] / data[0]:.2f}, "
        f"task graph x{rows[1]['graph_mib'] / rows[0]['graph_mib']:.2f}, "
        f"process peak x{rows[1]['peak_mib'] / rows[0]['peak_mib']:.2f}"
    )


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-cube-"))
    if "--memory-child" in sys.argv:
        _memory_child(work, float(sys.argv[sys.argv.index("--memory-child") + 1]))
        return
    items, grid = _setup(work)
    _time(items, grid)
    _memory(work)


if __name__ == "__main__":
    main()
