"""Cube compute beside a plain rasterio read of the same windows, and peak memory at two AOI sizes.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_cube.py [WORKDIR]

1. Time: ``open_cube`` (stackstac, then odc-stac) computed with the threaded scheduler, against the baseline
   that opens every product's COG of every band with rasterio and reads the window covering the grid (no
   mosaic, no reprojection: the floor of what the cube must read).
2. Memory: a subprocess per AOI size computes a per-date reduction of the cube, once in one compute over the
   whole AOI and once window by window (as the build's shard tasks do), and reports the peak of traced
   allocations (tracemalloc: task graph and pixels) and of resident memory (``ru_maxrss``).
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
from typing import Any

import dask
import numpy as np
import pystac
import rasterio
import xarray as xr
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
WINDOW = 240  # px at 10 m: a multiple of 6, so that every group's window is whole
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


def _memory_child(work: Path, fraction: float, mode: str) -> None:
    """In a subprocess: the cube over ``fraction`` of the AOI's extent, reduced per date.

    ``whole``: one dask compute over the whole AOI; ``windows``: one compute per 240 px window, as the build's
    shard tasks read the cube.
    """
    items, grid = _setup(work)
    ny, nx = (int(s * fraction) // 6 * 6 for s in grid.shape)
    sub = GeoBox((ny, nx), grid.transform, grid.crs)  # beyond 1.0 it reaches past the tiles: fill values
    before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    cubes = open_cube(items, sub, BANDS, chunksize=MEMORY_CHUNK if mode == "whole" else WINDOW)
    if mode == "whole":
        parts = [[c.astype(np.float64).sum(("y", "x")).data for c in cubes.values()]]
    else:
        parts = [_window_sums(cubes, r, c) for r in range(0, ny, WINDOW) for c in range(0, nx, WINDOW)]
    graph = dict(dask.base.collections_to_expr(parts[0], optimize_graph=True).__dask_graph__())
    graph_mib, n_tasks = tracemalloc.get_traced_memory()[0] / 2**20, len(graph)
    del graph
    total = 0.0
    for part in parts:
        with dask.config.set(scheduler="threads", num_workers=WORKERS):
            total += sum(float(np.sum(s)) for s in dask.compute(*part))
    traced_mib = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    assert total > 0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cube_mib = sum(c.nbytes for c in cubes.values()) / 2**20
    print(json.dumps({"shape": list(sub.shape), "peak_mib": peak_mib, "before_mib": before_mib, "tasks": n_tasks,
                      "graph_mib": graph_mib, "traced_mib": traced_mib, "cube_mib": cube_mib}))  # fmt: skip


def _window_sums(cubes: dict[str, xr.DataArray], row: int, col: int) -> list[Any]:
    out = []
    for cube in cubes.values():
        k = round(float(cube.x[1] - cube.x[0]) / 10)
        window = cube[..., row // k : (row + WINDOW) // k, col // k : (col + WINDOW) // k]
        out.append(window.astype(np.float64).sum(("y", "x")).data)
    return out


def _memory(work: Path) -> None:
    for mode, label in (("whole", f"one compute, {MEMORY_CHUNK} px chunks"), ("windows", f"{WINDOW} px windows")):
        print(f"peak memory, {label} ({WORKERS} threads, a subprocess per AOI size):")
        rows = []
        for fraction in (1.0, 2.0):
            out = subprocess.run(
                [sys.executable, __file__, str(work), "--memory-child", str(fraction), mode],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        for row in rows:
            print(
                f"  AOI {row['shape'][0]} x {row['shape'][1]} px: traced peak {row['traced_mib']:6.1f} MiB, "
                f"graph of one compute ({row['tasks']} tasks) {row['graph_mib']:5.1f} MiB, pixels in flight "
                f"{row['traced_mib'] - row['graph_mib']:5.1f} MiB; process peak {row['peak_mib']:6.1f} MiB "
                f"({row['before_mib']:.1f} MiB before); the whole cube would be {row['cube_mib']:5.1f} MiB"
            )
        area_ratio = (rows[1]["shape"][0] * rows[1]["shape"][1]) / (rows[0]["shape"][0] * rows[0]["shape"][1])
        data = [r["traced_mib"] - r["graph_mib"] for r in rows]
        print(
            f"  AOI area x{area_ratio:.2f} -> traced peak x{rows[1]['traced_mib'] / rows[0]['traced_mib']:.2f}, "
            f"pixels in flight x{data[1] / data[0]:.2f}, process peak x{rows[1]['peak_mib'] / rows[0]['peak_mib']:.2f}"
        )


def main() -> None:
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-cube-"))
    if "--memory-child" in sys.argv:
        at = sys.argv.index("--memory-child")
        _memory_child(work, float(sys.argv[at + 1]), sys.argv[at + 2])
        return
    items, grid = _setup(work)
    _time(items, grid)
    _memory(work)


if __name__ == "__main__":
    main()
