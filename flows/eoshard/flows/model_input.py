"""The input stack a model package asks for, made from a catalog, an AOI and a period, written as a Zarr scene.

A model package (``item.json``, STAC MLM) names its bands, its number of dates and the grid resolution it was
trained at. This module reads those facts as plain JSON (no torch), finds the products with the same catalog
search as the build, opens the same lazy cubes (``open_cube``, coarser groups repeated onto the base grid with
``onto_grid``), keeps ``n_dates`` acquisitions spread over the period and streams the ``(T, C, H, W)`` stack into a
Zarr array chunk by chunk. ``eoshard-train predict`` reads that array (the scene format of
``eoshard.training.scene``): the array is the one file handed between the geo side and the torch side.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dask
import numpy as np
import shapely
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox

from eoshard.catalog import search, select, spread_dates
from eoshard.flows.config import ConfigError
from eoshard.pipeline.bands import canonical_band
from eoshard.pipeline.cube import onto_grid, open_cube
from eoshard.pipeline.grid import grid_for_area


@dataclass(frozen=True)
class ModelInput:
    """What a package's ``mlm:input`` asks for."""

    bands: list[str]
    n_dates: int
    resolution: float
    reflectance: bool

    @classmethod
    def read(cls, package: Path) -> ModelInput:
        try:
            item = json.loads((package / "item.json").read_text())
            spec = item["properties"]["mlm:input"][0]
            bands, n_dates = [str(b) for b in spec["bands"]], int(spec["eoshard:n_dates"])
        except FileNotFoundError as err:
            raise ConfigError(f"{package} is not a model package: {err.filename} is missing") from err
        except (KeyError, IndexError, ValueError, TypeError) as err:
            raise ConfigError(
                f"{package / 'item.json'} lacks the MLM input fields eoshard needs (mlm:input[0].bands and "
                f"eoshard:n_dates): {err!r}; export the package with `eoshard-train export`"
            ) from err
        resolution = float(spec.get("eoshard:resolution", 10.0))
        return cls(bands, n_dates, resolution, bool(spec.get("eoshard:reflectance", False)))


def check_mask(expression: str, bands: list[str]) -> None:
    """The mask's syntax and band names, before any stacking (``eoshard-train predict`` checks the rest of it)."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as err:
        raise ConfigError(f"--mask {expression!r} is not a valid expression: {err.msg}") from err
    unknown = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - set(bands))
    if unknown:
        raise ConfigError(
            f"--mask {expression!r} names {unknown}, which are not among the model's bands {bands}: use those names"
        )


@dataclass(frozen=True)
class StackPlan:
    """The lazy model input on the AOI's grid and the products and dates it was made from."""

    stack: xr.DataArray  # (time, band, y, x), dask-backed
    grid: GeoBox
    products: list[str]
    dates: list[str]


def plan_stack(
    spec: ModelInput, source: str, area: shapely.Geometry, area_crs: str, area_4326: shapely.Geometry,
    start: date, end: date, *, collection: str | None = None, max_cloud: float | None = None,
    chunksize: int = 256,
) -> StackPlan:  # fmt: skip
    """Search, select, cube and choose dates exactly as the build does; reads no pixels.

    The products are those ``eoshard select`` and the build keep (reprocessed copies and tiles the AOI does not
    need left out), not every product the search finds. The package's band names may be any the cube knows
    (``red`` or ``B04``): the stack's bands carry the package's names, in its order.
    """
    grid = grid_for_area(area, area_crs, resolution=spec.resolution)
    found = search(source, area=area_4326, start=start, end=end, collection=collection, max_cloud=max_cloud)
    items = list(select(list(found), area_4326, start, end, max_cloud=max_cloud).items)
    wanted = [canonical_band(b) for b in spec.bands]
    cubes = open_cube(items, grid, wanted, chunksize=chunksize, reflectance=spec.reflectance)
    on_base = {b: onto_grid(c, grid).sel(band=b) for c in cubes.values() for b in c.band.values if b in wanted}
    stack = xr.concat([on_base[b] for b in wanted], dim="band").transpose("time", "band", "y", "x")
    stack = stack.assign_coords(band=spec.bands)
    days = [date.fromisoformat(str(t)[:10]) for t in stack.time.values]
    if len(days) < spec.n_dates:
        raise ConfigError(
            f"the model expects {spec.n_dates} dates but the catalog has {len(days)} acquisitions over the AOI "
            f"from {start} to {end}{'' if max_cloud is None else f' (max cloud {max_cloud:g} %)'}: widen the "
            "period" + ("" if max_cloud is None else " or raise --max-cloud")
        )
    keep = spread_dates(days, spec.n_dates, start, end) if len(days) > spec.n_dates else list(range(len(days)))
    stack = stack.isel(time=sorted(keep))
    ids = sorted({str(i.id) for i in items})
    return StackPlan(stack, grid, ids, [str(t)[:19] for t in stack.time.values])


def write_stack(plan: StackPlan, path: Path) -> Path:
    """Stream the stack into a Zarr ``(T, C, H, W)`` array with the scene attributes, one window at a time.

    A window is one chunk of the cube in y and x with every date and band (Zarr chunks are the same windows per
    date and band). Each window is computed on its own (synchronous scheduler, the graph culled to it) and written
    before the next, so memory holds one window and its graph, whatever the AOI size; computing the whole store at
    once keeps a task graph that grows with the number of chunks.
    """
    stack = plan.stack
    dtype = np.dtype(stack.dtype)
    ys, xs = (np.cumsum((0, *c)) for c in stack.data.chunks[2:])
    arr = zarr.create_array(
        str(path), shape=tuple(int(s) for s in stack.shape), dtype=dtype,
        chunks=(1, 1, int(ys[1]), int(xs[1])), overwrite=True, fill_value=float("nan") if dtype.kind == "f" else 0,
    )  # fmt: skip
    t = plan.grid.transform
    arr.attrs.update({
        "bands": [str(b) for b in stack.band.values], "dates": plan.dates, "products": plan.products,
        "crs": str(plan.grid.crs), "transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "nodata": "nan" if dtype.kind == "f" else 0,
    })  # fmt: skip
    with dask.config.set(scheduler="synchronous"):
        for y0, y1 in itertools.pairwise(ys):
            for x0, x1 in itertools.pairwise(xs):
                arr[:, :, y0:y1, x0:x1] = stack.data[:, :, y0:y1, x0:x1].compute()
    return path


def stack_bytes(plan: StackPlan) -> int:
    """Size of the whole stack in memory (what a whole-scene read would hold)."""
    return math.prod(int(s) for s in plan.stack.shape) * np.dtype(plan.stack.dtype).itemsize


def model_input_summary(plan: StackPlan) -> dict[str, Any]:
    return {
        "products": len(plan.products), "dates": plan.dates, "grid": [int(plan.grid.shape.y), int(plan.grid.shape.x)],
        "crs": str(plan.grid.crs),
    }  # fmt: skip
