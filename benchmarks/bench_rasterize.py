"""Label rasterization on the demo world: eoshard's exact layers beside two baselines, in one run.

Baselines: ``rasterio.features.rasterize`` of the classes alone (pixel centres, no coverage, ids or masks), and a
per-pixel shapely intersection loop (the approach of older tools), timed on a window and given per pixel.
Run: .venv/bin/python benchmarks/bench_rasterize.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from rasterio.features import rasterize
from shapely.geometry import box

from eoshard.flows.demo.world import make_world
from eoshard.pipeline.grid import grid_for_area
from eoshard.pipeline.labels import InvalidGeometryWarning, prepare_parcels, rasterize_labels
from tests.pipeline.test_labels_exact import reference


def main() -> None:
    warnings.simplefilter("ignore", InvalidGeometryWarning)
    parcels = make_world().parcels
    grid = grid_for_area(box(11.955, 48.0, 12.035, 48.04))
    pixels = grid.shape[0] * grid.shape[1]

    start = time.perf_counter()
    rasterize_labels(parcels, grid, class_column="class_code", id_column="parcel_id").compute(scheduler="threads")
    ours = time.perf_counter() - start

    prepared = prepare_parcels(parcels, grid, "class_code")
    start = time.perf_counter()
    shapes = zip(prepared.geometry, prepared["class_code"], strict=True)
    rasterize(shapes, out_shape=grid.shape, transform=grid.transform, dtype="int32")
    plain = time.perf_counter() - start

    window = grid[:60, :60]
    start = time.perf_counter()
    reference(parcels, window, "class_code", "parcel_id")
    loop_per_pixel = (time.perf_counter() - start) / (60 * 60)

    print(f"grid {grid.shape.y} x {grid.shape.x} px ({pixels} px), {len(parcels)} parcels")
    print(f"eoshard rasterize_labels (coverage, class, parcel_id, double masks): {ours:.2f} s")
    print(
        f"baseline rasterio.features.rasterize, classes only: {plain:.3f} s -> eoshard / rasterio = {ours / plain:.1f}x"
    )
    loop = loop_per_pixel * pixels
    print(
        f"baseline per-pixel shapely loop: {loop_per_pixel * 1e3:.3f} ms/px -> {loop:.1f} s for the grid (from a 60 x 60 window)"
    )
    print(f"speed-up over the per-pixel loop: {loop / ours:.0f}x")
    assert np.isfinite(ours)


if __name__ == "__main__":
    main()
