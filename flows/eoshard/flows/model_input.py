"""The input stack a model package asks for, made from a catalog, an AOI and a period, written as a Zarr scene.

A model package (``item.json``, STAC MLM) names its bands, its number of dates and the grid resolution it was
trained at. This module reads those facts as plain JSON (no torch), finds the products with the same catalog
search as the build, keeps ``n_dates`` acquisitions as ``eoshard select --dates`` chooses them (spread over the
period, the least cloud), opens the same lazy cubes (``open_cube``, coarser groups repeated onto the base grid with
``onto_grid``) and streams the ``(T, C, H, W)`` stack into a Zarr array chunk by chunk. ``eoshard-train predict``
reads that array (the scene format of ``eoshard.training.scene``): the array is the one file handed between the geo
side and the torch side.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dask
import numpy as np
import shapely
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from zarr.codecs import ZstdCodec

from eoshard.catalog import search, select
from eoshard.flows.build import block_phase, cube_sources, group_factors, group_units
from eoshard.flows.config import ConfigError
from eoshard.pipeline.bands import canonical_band
from eoshard.pipeline.cube import onto_grid, open_cube, stackstac_ready
from eoshard.pipeline.direct import GroupSource, Sweep, read_alone, read_group_window, release_build
from eoshard.pipeline.grid import grid_for_area
from eoshard.pipeline.patches import STRIPE_PX
from eoshard.pipeline.shards.derived import GroupUnits


class _InputFacts(BaseModel):
    """The item's input facts as ``eoshard predict`` needs them (a JSON number may be an int)."""

    model_config = ConfigDict(strict=True)

    bands: list[str] = Field(min_length=1)
    n_dates: int = Field(ge=1)
    resolution: float = Field(gt=0, allow_inf_nan=False)
    reflectance: bool
    common_names: dict[str, str]


_INPUT_FIELDS = {
    "bands": "mlm:input[0].bands", "n_dates": "mlm:input[0].eoshard:n_dates",
    "resolution": "mlm:input[0].eoshard:resolution", "reflectance": "mlm:input[0].eoshard:reflectance",
    "common_names": "properties.bands[].eo:common_name",
}  # fmt: skip


@dataclass(frozen=True)
class ModelInput:
    """What a package's ``mlm:input`` asks for, and its bands' common names (the Item's ``bands``)."""

    bands: list[str]
    n_dates: int
    resolution: float
    reflectance: bool
    common_names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, package: Path) -> ModelInput:
        try:
            item = json.loads((package / "item.json").read_text())
            spec = item["properties"]["mlm:input"][0]
            described = item["properties"].get("bands", [])
            facts = _InputFacts.model_validate(
                {
                    "bands": spec["bands"], "n_dates": spec["eoshard:n_dates"],
                    "resolution": spec.get("eoshard:resolution", 10.0),
                    "reflectance": spec.get("eoshard:reflectance", False),
                    "common_names": {b["name"]: b["eo:common_name"] for b in described if b.get("eo:common_name")},
                }
            )  # fmt: skip
        except FileNotFoundError as err:
            raise ConfigError(f"{package} is not a model package: {err.filename} is missing") from err
        except ValidationError as err:
            first = err.errors()[0]
            where = (
                _INPUT_FIELDS.get(str(first["loc"][0]), str(first["loc"][0])) if first["loc"] else "mlm:input[0]"
            )
            raise ConfigError(
                f"{package / 'item.json'} misstates {where}: {first['msg'][0].lower()}{first['msg'][1:]}, got "
                f"{first['input']!r:.80}; export the package with `eoshard-train export`"
            ) from None
        except (KeyError, IndexError, ValueError, TypeError, AttributeError) as err:
            raise ConfigError(
                f"{package / 'item.json'} lacks the MLM input fields eoshard needs (mlm:input[0].bands and "
                f"eoshard:n_dates): {err!r}; export the package with `eoshard-train export`"
            ) from err
        return cls(facts.bands, facts.n_dates, facts.resolution, facts.reflectance, facts.common_names)

    def bands_named(self, name: str) -> list[str]:
        """The bands ``name`` stands for: itself, else those whose common name it is (any case)."""
        if name in self.bands:
            return [name]
        return [b for b in self.bands if name.lower() in (b.lower(), self.common_names.get(b, "").lower())]


def check_mask(expression: str, spec: ModelInput) -> None:
    """The mask's syntax and band names (the model's bands or their common names, in any case), before any
    stacking (``eoshard-train predict`` checks the rest of it)."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as err:
        raise ConfigError(f"--mask {expression!r} is not a valid expression: {err.msg}") from err
    matches = {n: spec.bands_named(n) for n in sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)})}
    unknown = [n for n, same in matches.items() if not same]
    shared = [n for n, same in matches.items() if len(same) > 1]
    if shared or unknown:
        what = (
            f"{shared[0]!r} stands for {matches[shared[0]]}, more than one of the model's bands"
            if shared
            else f"{unknown}, which are not among the model's bands"
        )
        bands = ", ".join(f"{b} ({spec.common_names[b]})" if b in spec.common_names else b for b in spec.bands)
        raise ConfigError(
            f"--mask {expression!r} names {what} {bands}: use those names"
            + (" or their common names" if spec.common_names else "")
        )


@dataclass(frozen=True)
class DirectStack:
    """How to read a window of the stack straight from the files, as the build's shard tasks do: each group's read
    recipe at the kept dates, how it holds the numbers it reads (reflectance or not), how many base pixels one of
    its pixels spans, and where each of the stack's bands comes from (group, position)."""

    sources: dict[str, GroupSource]
    units: dict[str, GroupUnits]
    factors: dict[str, int]
    picks: list[tuple[str, int]]
    dtype: str
    shape: tuple[int, int]  # of the base grid
    phase: int  # base pixels from a stripe edge on the products' block edges to the grid's first column
    stripe: int = STRIPE_PX  # a multiple of the products' block width, in base pixels

    def windows(self, rows: Sequence[int], cols: Sequence[int]) -> list[tuple[slice, slice]]:
        """The windows between the edges ``rows`` and ``cols`` (the stack's chunks), also cut at the edges of
        vertical stripes of ``stripe`` px on the products' block edges; top to bottom in each stripe, stripes left
        to right, as the build walks its patches. No source block then spans two stripes, and the blocks held at
        once are a block row of one stripe, whatever the AOI's size."""
        width = self.shape[1]
        cuts = sorted({*cols, *range(self.stripe - self.phase % self.stripe, width, self.stripe)})
        stripes: dict[int, list[slice]] = {}
        for x0, x1 in itertools.pairwise(cuts):
            stripes.setdefault((x0 + self.phase) // self.stripe, []).append(slice(x0, x1))
        spans = [slice(y0, y1) for y0, y1 in itertools.pairwise(rows)]
        return [(r, c) for stripe in stripes.values() for r in spans for c in stripe]

    def window(self, rows: slice, cols: slice) -> np.ndarray:
        """``(time, band, h, w)`` of the stack over ``rows``/``cols`` of the base grid: the lazy stack's values."""
        y0, y1, x0, x1 = rows.start, rows.stop, cols.start, cols.stop
        held = {}
        for name, source in self.sources.items():
            f = self.factors[name]
            r0, c0 = y0 // f, x0 // f
            # blocks that end above this window's last row and left of its last column (past the grid's last ones:
            # every block) are needed by no later window
            sweep = Sweep(
                done_row=y1 // f if y1 < self.shape[0] else math.inf,
                done_col=x1 // f if x1 < self.shape[1] else math.inf,
            )
            numbers = read_group_window(source, slice(r0, -(-y1 // f)), slice(c0, -(-x1 // f)), sweep)
            units = self.units[name]
            values = np.asarray(units.as_held(units.as_read(numbers)).data)
            if f > 1:  # onto the base grid, as ``onto_grid`` repeats a coarser group's pixels
                values = values.repeat(f, axis=2).repeat(f, axis=3)
                values = values[:, :, y0 - r0 * f : y1 - r0 * f, x0 - c0 * f : x1 - c0 * f]
            held[name] = values
        out = np.empty((*held[self.picks[0][0]].shape[:1], len(self.picks), y1 - y0, x1 - x0), dtype=self.dtype)
        for i, (name, position) in enumerate(self.picks):
            out[:, i] = held[name][:, position]
        return out


@dataclass(frozen=True)
class StackPlan:
    """The lazy model input on the AOI's grid and the products and dates it was made from; ``direct``: how to read
    its windows without the graph (None: the graph is the way)."""

    stack: xr.DataArray  # (time, band, y, x), dask-backed
    grid: GeoBox
    products: list[str]
    dates: list[str]
    direct: DirectStack | None = None


def plan_stack(
    spec: ModelInput, source: str, area: shapely.Geometry, area_crs: str, area_4326: shapely.Geometry,
    start: date, end: date, *, collection: str | None = None, max_cloud: float | None = None,
    chunksize: int = 256,
) -> StackPlan:  # fmt: skip
    """Search, select and cube as the build does, and choose the dates as ``eoshard select --dates``; reads no
    pixels.

    The products are those ``eoshard select`` and the build keep (reprocessed copies and tiles the AOI does not
    need left out), of the ``n_dates`` acquisitions ``select`` chooses: the largest gap in the period as small as
    it can be, then the least cloud and the most of the AOI covered, then the most even gaps. The package's band
    names may be any the cube knows (``red`` or ``B04``): the stack's bands carry the package's names, in its
    order.
    """
    grid = grid_for_area(area, area_crs, resolution=spec.resolution)
    found = search(source, area=area_4326, start=start, end=end, collection=collection, max_cloud=max_cloud)
    # the dates as `eoshard select --dates N` chooses them: spread over the period, the least cloud, the most AOI
    items = list(select(list(found), area_4326, start, end, max_cloud=max_cloud, dates=spec.n_dates).items)
    wanted = [canonical_band(b) for b in spec.bands]
    cubes = open_cube(items, grid, wanted, chunksize=chunksize, reflectance=spec.reflectance)
    on_base = {b: onto_grid(c, grid).sel(band=b) for c in cubes.values() for b in c.band.values if b in wanted}
    stack = xr.concat([on_base[b] for b in wanted], dim="band").transpose("time", "band", "y", "x")
    stack = stack.assign_coords(band=spec.bands)
    # one time step per acquisition (the cube's acquisitions are select's): at most n_dates
    if stack.sizes["time"] < spec.n_dates:
        raise ConfigError(
            f"the model expects {spec.n_dates} dates but the catalog has {stack.sizes['time']} acquisitions over "
            f"the AOI from {start} to {end}{'' if max_cloud is None else f' (max cloud {max_cloud:g} %)'}: widen "
            "the period" + ("" if max_cloud is None else " or raise --max-cloud")
        )
    ids = sorted({str(i.id) for i in items})
    direct = _direct(cubes, [stackstac_ready(i) for i in items], grid, wanted, chunksize, spec.reflectance)
    return StackPlan(stack, grid, ids, [str(t)[:19] for t in stack.time.values], direct)


def _direct(
    cubes: dict[str, xr.DataArray], items: list[dict[str, Any]], grid: GeoBox, wanted: list[str], chunksize: int,
    reflectance: bool,
) -> DirectStack | None:  # fmt: skip
    """The direct reads of the stack, where every group has the same dates (one sensor); else None."""
    times = [cube.time.values for cube in cubes.values()]
    if any(len(t) != len(times[0]) or (t != times[0]).any() for t in times):
        return None
    factors = group_factors(grid, cubes)
    units = group_units(cubes, items, reflectance=reflectance)
    sources = cube_sources(cubes, items, grid, factors, chunksize=chunksize, resampling="nearest", units=units)
    where = {str(b): (name, i) for name, cube in cubes.items() for i, b in enumerate(cube.band.values)}
    dtype = np.result_type(*(cube.dtype for cube in cubes.values()))
    picks = [where[b] for b in wanted]
    shape = (int(grid.shape.y), int(grid.shape.x))
    return DirectStack(sources, units, factors, picks, str(dtype), shape, block_phase(grid, items))


def write_stack(
    plan: StackPlan, path: Path, *, graph: bool = False, on_progress: Callable[[int, int], None] | None = None
) -> Path:
    """Stream the stack into a Zarr ``(T, C, H, W)`` array with the scene attributes, one window at a time.

    A window is one chunk of the cube in y and x with every date and band (one Zarr chunk), written before the
    next, so memory holds one window (and the source blocks the next windows read), whatever the AOI size. The
    windows are read straight from the files as the build reads them (``plan.direct``: each source block decoded
    once, files read concurrently); with ``graph`` (or without a direct way), each is computed from the lazy stack
    on its own (synchronous scheduler, the graph culled to it: slower, the reference). ``on_progress(done, total)``
    is called after each window is written.
    """
    stack = plan.stack
    dtype = np.dtype(stack.dtype)
    ys, xs = (np.cumsum((0, *c)) for c in stack.data.chunks[2:])
    arr = zarr.create_array(
        str(path), shape=tuple(int(s) for s in stack.shape), dtype=dtype,
        chunks=(*(int(s) for s in stack.shape[:2]), int(ys[1]), int(xs[1])), overwrite=True, fill_value=float("nan") if dtype.kind == "f" else 0,
        compressors=ZstdCodec(level=1), config={"write_empty_chunks": True},
    )  # fmt: skip
    t = plan.grid.transform
    arr.attrs.update({
        "bands": [str(b) for b in stack.band.values], "dates": plan.dates, "products": plan.products,
        "crs": str(plan.grid.crs), "transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "nodata": "nan" if dtype.kind == "f" else 0,
    })  # fmt: skip
    direct = None if graph else plan.direct
    windows = (
        direct.windows([int(y) for y in ys], [int(x) for x in xs])
        if direct
        else [(slice(*r), slice(*c)) for r in itertools.pairwise(ys) for c in itertools.pairwise(xs)]
    )
    if direct is not None:
        read_alone(True)  # one window reads at a time: the blocks it leaves behind go at once
    # one thread writes (in order: two windows may share a chunk) while the next window is read
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eoshard-stack-write")
    written: Future[None] | None = None

    def wait_for_write(done: int) -> None:
        if written is not None:
            written.result()
            if on_progress is not None:
                on_progress(done, len(windows))

    try:
        with dask.config.set(scheduler="synchronous"):
            for done, (rows, cols) in enumerate(windows):
                window = direct.window(rows, cols) if direct else stack.data[:, :, rows, cols].compute()
                wait_for_write(done)
                written = writer.submit(arr.__setitem__, (slice(None), slice(None), rows, cols), window)
            wait_for_write(len(windows))
    finally:
        writer.shutdown(wait=True)
        if direct is not None:
            read_alone(False)
            release_build(None)  # the decoded blocks and open files: the model runs next, in another process
    return path


def stack_bytes(plan: StackPlan) -> int:
    """Size of the whole stack in memory (what a whole-scene read would hold)."""
    return math.prod(int(s) for s in plan.stack.shape) * np.dtype(plan.stack.dtype).itemsize


def model_input_summary(plan: StackPlan) -> dict[str, Any]:
    return {
        "products": len(plan.products), "dates": plan.dates, "grid": [int(plan.grid.shape.y), int(plan.grid.shape.x)],
        "crs": str(plan.grid.crs),
    }  # fmt: skip
