"""Lazy cubes: Sentinel-2 (and Sentinel-1) or Landsat products mosaicked onto a target grid with stackstac, dtype
kept."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pystac
import stackstac
import xarray as xr
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling

from eoshard.pipeline.cube_odc import odc_band_group
from eoshard.pipeline.errors import BandError, PipelineError
from eoshard.pipeline.grid import attach_grid, grid_of, group_grid
from eoshard.pipeline.items import (
    acquisition_key,
    acquisition_order,
    acquisition_times,
    asset_bounds,
    grid_epsg,
    prepare_items,
    stackstac_ready,
)
from eoshard.pipeline.landsat import to_physical
from eoshard.pipeline.reflectance import acquisition_baselines, to_reflectance
from eoshard.pipeline.sensors import (
    DN_DTYPE,
    LS,
    NODATA,
    S1_DTYPE,
    S2,
    declared_dtype,
    declared_nodata,
    is_main,
    item_sensor,
    sensor_bands,
    split_by_sensor,
)

# Native resolution (m) of Sentinel-2 bands, used when an asset does not say its own.
S2_RESOLUTIONS: dict[str, int] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10, "B8A": 20,
    "B09": 60, "B10": 60, "B11": 20, "B12": 20, "SCL": 20, "AOT": 20, "WVP": 10, "TCI": 10,
}  # fmt: skip


def asset_resolution(item: Mapping[str, Any], band: str) -> float:
    """The native pixel size of ``band`` in ``item``: from the asset's ``proj:transform``, ``raster:bands``
    ``spatial_resolution`` or ``gsd``, the Sentinel-2 table, else the item's ``proj:transform`` (Landsat)."""
    if band not in item["assets"]:
        raise BandError(
            f"product {item.get('id')} has no asset {band!r}; it has {sorted(item['assets'])}: "
            "check the names in `bands:` against the catalog's asset keys"
        )
    asset = item["assets"][band]
    transform = asset.get("proj:transform")
    if transform:
        return abs(float(transform[0]))
    rasters = asset.get("raster:bands") or [{}]
    if rasters[0].get("spatial_resolution"):  # Landsat lwir11: a 30 m file of a 100 m instrument (gsd)
        return float(rasters[0]["spatial_resolution"])
    if asset.get("gsd"):
        return float(asset["gsd"])
    if band in S2_RESOLUTIONS:
        return float(S2_RESOLUTIONS[band])
    item_transform = item.get("properties", {}).get("proj:transform")
    if item_transform:
        return abs(float(item_transform[0]))
    raise BandError(f"cannot tell the resolution of band {band} in {item.get('id')}: give proj:transform or gsd")


def group_name(resolution: float, sensor: str = "s2") -> str:
    """``s2_10m``, ``s2_20m``, ``s2_60m``, ``s2_2.5m``, ``ls_30m``: the name of a resolution group."""
    return f"{sensor}_{resolution:g}m"


def band_groups(
    items: Sequence[pystac.Item | Mapping[str, Any]], bands: Sequence[str], grid: GeoBox, sensor: str = S2
) -> dict[str, tuple[float, list[str]]]:
    """Bands grouped by native resolution (never finer than the grid), in order of resolution then band order."""
    first = stackstac_ready(items[0]) if items else {"assets": {}}
    base = abs(grid.resolution.x)
    groups: dict[float, list[str]] = {}
    for band in bands:
        res = max(asset_resolution(first, band), base)
        groups.setdefault(res, []).append(band)
    return {group_name(res, sensor): (res, groups[res]) for res in sorted(groups)}


Engine = Literal["stackstac", "odc-stac"]
ENGINES: tuple[str, ...] = ("stackstac", "odc-stac")


def open_cube(
    items: Sequence[pystac.Item | Mapping[str, Any]],
    grid: GeoBox,
    bands: Sequence[str],
    *,
    chunksize: int = 512,
    resampling: Resampling = Resampling.nearest,
    dtype: str = DN_DTYPE,
    single_resolution: bool = False,
    engine: Engine = "stackstac",
    reflectance: bool = False,
) -> dict[str, xr.DataArray]:
    """Lazy ``(time, band, y, x)`` cubes, one per sensor and resolution group (``s2_10m``, ``s2_20m``,
    ``s2_60m``, and ``s1_10m`` when Sentinel-1 products and bands such as ``vv``/``vh`` are given; ``ls_30m`` for
    Landsat products, whose band names resolve as Landsat's: ``red`` and ``SR_B4`` are its red).

    Each group lies on ``grid`` zoomed out to its native resolution, so the grids nest exactly and every band
    keeps its source pixels; with ``single_resolution`` every band is resampled onto ``grid`` itself.
    The groups of a sensor share its time steps (its acquisitions): Sentinel-2 steps carry the processing
    baseline and BOA offset as coordinates; Sentinel-1 steps are Sentinel-1 overpasses, not Sentinel-2 dates.
    Sentinel-2 and Landsat groups are ``dtype`` with nodata 0; Sentinel-1 groups keep the dtype and nodata the
    products declare in ``raster:bands`` (float32 and NaN where they do not).
    ``engine`` picks the reader (stackstac, or odc-stac as a cross-check); ``reflectance`` turns the
    Sentinel-2 digital numbers into float32 reflectance (``(DN + offset) / 10000``, nodata -> NaN), and Landsat's
    into ``DN * scale + offset`` as their ``raster:bands`` declare.
    """
    if engine not in ENGINES:
        raise PipelineError(f"unknown cube engine {engine!r}: use one of {', '.join(ENGINES)}")
    if not items:
        raise PipelineError("no products to build a cube from: the selection is empty")
    base = abs(grid.resolution.x)
    cubes = {}
    for sensor, (products, wanted) in split_by_sensor([stackstac_ready(i) for i in items], bands).items():
        if single_resolution:
            groups = {group_name(base, sensor): (base, wanted)}
        else:
            groups = band_groups(products, wanted, grid, sensor)
        kind = dtype if is_main(sensor) else declared_dtype(products, wanted, S1_DTYPE)
        nodata = NODATA if is_main(sensor) else declared_nodata(products, wanted, _default_nodata(kind))
        for name, (res, group) in groups.items():
            factor = res / base
            sub = group_grid(grid, res)
            if engine == "odc-stac":  # odc-stac fills a grid off every product with nodata
                _refuse_a_grid_off_the_assets(products, group, sub)
            cube = open_band_group(
                products, sub, group, chunksize=max(64, int(chunksize / factor)), resampling=resampling,
                dtype=kind, engine=engine, nodata=nodata,
            )  # fmt: skip
            _refuse_missing_bands(cube, group, products, sub)
            if reflectance and sensor == S2:
                cube = to_reflectance(cube)
            elif reflectance and sensor == LS:
                cube = to_physical(cube, products)
            cubes[name] = cube
    return cubes


def _refuse_missing_bands(cube: xr.DataArray, group: Sequence[str], products: Sequence[Any], grid: GeoBox) -> None:
    """stackstac drops the assets whose footprint (``proj:bbox``, ``proj:transform``) misses the grid: a grid no
    product touches came back as a cube without bands."""
    _refuse_bands_off_the_grid([b for b in group if b not in {str(v) for v in cube.band.values}], products, grid)


def _refuse_a_grid_off_the_assets(
    products: Sequence[Mapping[str, Any]], group: Sequence[str], grid: GeoBox
) -> None:
    """The bands none of whose assets' footprints (as stackstac reads them) meet the grid, refused before reading."""
    epsg = grid_epsg(grid)
    x0, y0, x1, y1 = grid.extent.boundingbox
    banded = [(b, [asset_bounds(p, b, epsg) for p in products if b in p["assets"]]) for b in group]
    missing = [
        band
        for band, footprints in banded
        if footprints
        and not any(f is None or (f[0] < x1 and f[2] > x0 and f[1] < y1 and f[3] > y0) for f in footprints)
    ]
    _refuse_bands_off_the_grid(missing, products, grid)


def _refuse_bands_off_the_grid(missing: Sequence[str], products: Sequence[Any], grid: GeoBox) -> None:
    if missing:
        x0, y0, x1, y1 = grid.extent.to_crs("EPSG:4326").boundingbox
        raise PipelineError(
            f"none of the {len(products)} products has pixels of {list(missing)} on the grid (its bounds in "
            f"degrees: {x0:.4f}, {y0:.4f}, {x1:.4f}, {y1:.4f}): the grid lies outside their footprints; check the "
            "AOI and its CRS, or the products"
        )


def _default_nodata(dtype: str) -> float:
    return float("nan") if np.issubdtype(np.dtype(dtype), np.floating) else NODATA


def open_band_group(
    items: Sequence[pystac.Item | Mapping[str, Any]],
    grid: GeoBox,
    bands: Sequence[str],
    *,
    chunksize: int = 512,
    resampling: Resampling = Resampling.nearest,
    dtype: str = "uint16",
    engine: Engine = "stackstac",
    nodata: float = NODATA,
) -> xr.DataArray:
    """A lazy ``(time, band, y, x)`` cube of ``bands`` on ``grid``, one time step per acquisition.

    Products of the same acquisition (tiles, UTM zones) are mosaicked; where they overlap, a product in the
    grid's own CRS wins, so its pixels pass unresampled. Nothing is read until the cube is computed.
    """
    bands = sensor_bands([stackstac_ready(i) for i in items], bands)  # "red" and "B04" read the same asset
    dicts = prepare_items(items, grid, bands)
    # acquisitions in time order (a stable sort: the products of one keep their mosaic order), so that the cube
    # needs no reordering of its own (``finish_cube``)
    rank = {key: i for i, key in enumerate(acquisition_order(dicts))}
    dicts = sorted(dicts, key=lambda d: rank[acquisition_key(d)])
    if engine == "odc-stac":
        by_acquisition = odc_band_group(
            dicts, grid, bands, chunksize=chunksize, resampling=resampling, dtype=dtype, nodata=nodata
        )
    else:
        by_acquisition = _stackstac_band_group(
            dicts, grid, bands, chunksize=chunksize, resampling=resampling, dtype=dtype, nodata=nodata
        )
    return finish_cube(by_acquisition, dicts, grid, nodata)


def _stackstac_band_group(
    dicts: list[dict[str, Any]],
    grid: GeoBox,
    bands: Sequence[str],
    *,
    chunksize: int,
    resampling: Resampling,
    dtype: str,
    nodata: float,
) -> xr.DataArray:
    """``(acquisition, band, y, x)``: the products stacked by stackstac, then mosaicked per acquisition."""
    stack = stackstac.stack(
        dicts,
        assets=list(bands),
        epsg=grid_epsg(grid),
        resolution=abs(grid.resolution.x),
        bounds=tuple(grid.extent.boundingbox),
        snap_bounds=False,
        resampling=resampling,
        chunksize=chunksize,
        dtype=np.dtype(dtype),
        fill_value=np.dtype(dtype).type(nodata),
        rescale=False,
        sortby_date=False,
        xy_coords="center",
        properties=False,
        band_coords=False,
    )
    # stackstac drops products that miss the grid: label what it kept, by id, not by position
    key_of = {str(d["id"]): acquisition_key(d) for d in dicts}
    acquisitions = [key_of[str(i)] for i in stack["id"].values]
    stack = stack.assign_coords(acquisition=("time", acquisitions))
    if len(set(acquisitions)) == len(acquisitions):
        # one product per acquisition (an AOI within one tile): the mosaic of one layer is that layer, and the
        # groupby below cost 1.1 s of a quarter tile's 2.2 s plan; ``finish_cube`` orders and labels both alike
        return stack.swap_dims(time="acquisition").drop_vars("time")
    groups = stack.groupby("acquisition", squeeze=False)
    return groups.map(stackstac.mosaic, dim="time", nodata=nodata).drop_vars("time", errors="ignore")


def finish_cube(
    by_acquisition: xr.DataArray, dicts: list[dict[str, Any]], grid: GeoBox, nodata: float = NODATA
) -> xr.DataArray:
    """Acquisitions in time order with their time (and Sentinel-2 baseline and BOA offset) coordinates."""
    keys = [acquisition_key(d) for d in dicts]
    times = acquisition_times(dicts)
    order = acquisition_order(dicts)
    if [str(a) for a in by_acquisition["acquisition"].values] == order:
        # every acquisition there, in time order: reindex would add a task per chunk to the graph all the same
        # (44 MiB in the planning driver for a whole tile's 12 dates)
        cube = by_acquisition.rename(acquisition="time")
    else:
        # an acquisition whose products all miss the grid is all nodata, as a product that misses part of it
        cube = by_acquisition.reindex(acquisition=order, fill_value=nodata).rename(acquisition="time")
    extra = [c for c in cube.coords if c not in ("acquisition", "band", "y", "x")]
    cube = cube.drop_vars(extra).rename(None)  # engine-specific coordinates (epsg, spatial_ref) and names
    cube = cube.assign_coords(
        band=np.array([str(b) for b in cube.band.values]),
        time=np.array([np.datetime64(str(times[k]).replace("Z", "")[:19], "ns") for k in order]),
        acquisition=("time", order),
    )
    if item_sensor(dicts[0]) == S2:
        baselines = acquisition_baselines(dicts, keys, [str(b) for b in cube.band.values])
        cube = cube.assign_coords(
            processing_baseline=("time", [baselines[k][0] for k in order]),
            boa_offset=("time", np.array([baselines[k][1] for k in order], dtype=np.int16)),
        )
    for dim in ("y", "x"):
        cube[dim].attrs = {}
    cube.attrs = {"nodata": nodata}
    return attach_grid(cube.transpose("time", "band", "y", "x"), grid)


def _repeated(block: np.ndarray, factor: int, axes: tuple[int, int]) -> np.ndarray:
    return block.repeat(factor, axis=axes[0]).repeat(factor, axis=axes[1])


def onto_grid(cube: xr.DataArray, grid: GeoBox) -> xr.DataArray:
    """``cube`` (on a grid nested in ``grid``, ``factor`` times coarser) with every pixel repeated onto ``grid``.

    Lazy and exact: a 20 m pixel becomes its 2 x 2 10 m pixels, with ``grid``'s pixel-centre coordinates.
    """
    source = grid_of(cube)
    res, base = abs(source.resolution.x), abs(grid.resolution.x)
    f = round(res / base)
    ny, nx = grid.shape
    t, s = grid.transform, source.transform
    shape = (cube.sizes["y"] * f, cube.sizes["x"] * f)
    moved = max(abs(s.c - t.c), abs(s.f - t.f))
    if f < 1 or f * base != res or shape != (ny, nx) or moved > 1e-6 * base or source.crs != grid.crs:
        raise PipelineError(
            f"a {res:g} m cube of {cube.sizes['y']} x {cube.sizes['x']} px does not nest in the "
            f"{base:g} m grid of {ny} x {nx} px: build both from the same grid"
        )
    axes = (cube.dims.index("y"), cube.dims.index("x"))
    data = cube.data
    if f > 1 and isinstance(data, np.ndarray):
        data = _repeated(data, f, axes)
    elif f > 1:  # one task per chunk (dask's own repeat slices and concatenates every chunk: a task per piece)
        chunks = [tuple(c * f for c in sizes) if i in axes else sizes for i, sizes in enumerate(data.chunks)]
        data = data.map_blocks(_repeated, factor=f, axes=axes, chunks=tuple(chunks), dtype=data.dtype)
    coords = {k: v for k, v in cube.coords.items() if "y" not in v.dims and "x" not in v.dims}
    coords["y"] = t.f + (np.arange(ny) + 0.5) * t.e
    coords["x"] = t.c + (np.arange(nx) + 0.5) * t.a
    coords.pop("spatial_ref", None)
    return attach_grid(xr.DataArray(data, dims=cube.dims, coords=coords, attrs=cube.attrs, name=cube.name), grid)
