"""Lazy cubes: Sentinel-2 products mosaicked onto a target grid with stackstac, native dtype kept."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pystac
import stackstac
import xarray as xr
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling

from eoshard.pipeline.errors import BandError, PipelineError

NODATA = 0
# Native resolution (m) of Sentinel-2 bands, used when an asset does not say its own.
S2_RESOLUTIONS: dict[str, int] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10, "B8A": 20,
    "B09": 60, "B10": 60, "B11": 20, "B12": 20, "SCL": 20, "AOT": 20, "WVP": 10, "TCI": 10,
}  # fmt: skip


def _epsg_of(properties: Mapping[str, Any]) -> int | None:
    if properties.get("proj:epsg") is not None:
        return int(properties["proj:epsg"])
    code = properties.get("proj:code")
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":")[1])
    return None


def stackstac_ready(item: pystac.Item | Mapping[str, Any]) -> dict[str, Any]:
    """The item as a dict that stackstac reads: ``proj:epsg`` filled from ``proj:code`` where missing.

    stackstac reads only ``proj:epsg``, while pystac 1.15 writes only ``proj:code``; asset hrefs are made absolute.
    """
    if isinstance(item, pystac.Item):
        data = item.to_dict(transform_hrefs=False)
        for key, asset in item.assets.items():
            data["assets"][key]["href"] = asset.get_absolute_href() or asset.href
    else:
        data = {**item, "properties": dict(item["properties"]), "assets": dict(item["assets"])}
    epsg = _epsg_of(data["properties"])
    if epsg is None:
        raise PipelineError(
            f"item {data.get('id')} has neither proj:epsg nor an EPSG proj:code: cannot place its pixels on a grid"
        )
    data["properties"]["proj:epsg"] = epsg
    return data


def acquisition_key(item: Mapping[str, Any]) -> str:
    """Products of one satellite, day and relative orbit form one acquisition (mosaicked together)."""
    props = item["properties"]
    day = str(props["datetime"])[:10]
    return f"{props.get('platform', '')}_{day}_R{props.get('sat:relative_orbit', '')}"


def asset_resolution(item: Mapping[str, Any], band: str) -> float:
    """The native pixel size of ``band`` in ``item``: from ``proj:transform``, ``gsd`` or the Sentinel-2 table."""
    asset = item["assets"].get(band, {})
    transform = asset.get("proj:transform")
    if transform:
        return abs(float(transform[0]))
    if asset.get("gsd"):
        return float(asset["gsd"])
    if band in S2_RESOLUTIONS:
        return float(S2_RESOLUTIONS[band])
    raise BandError(f"cannot tell the resolution of band {band} in {item.get('id')}: give proj:transform or gsd")


def group_name(resolution: float, sensor: str = "s2") -> str:
    """``s2_10m``, ``s2_20m``, ``s2_60m``, ``s2_2.5m``: the name of a resolution group."""
    return f"{sensor}_{resolution:g}m"


def band_groups(
    items: Sequence[pystac.Item | Mapping[str, Any]], bands: Sequence[str], grid: GeoBox
) -> dict[str, tuple[float, list[str]]]:
    """Bands grouped by native resolution (never finer than the grid), in order of resolution then band order."""
    first = stackstac_ready(items[0]) if items else {"assets": {}}
    base = abs(grid.resolution.x)
    groups: dict[float, list[str]] = {}
    for band in bands:
        res = max(asset_resolution(first, band), base)
        groups.setdefault(res, []).append(band)
    return {group_name(res): (res, groups[res]) for res in sorted(groups)}


def open_cube(
    items: Sequence[pystac.Item | Mapping[str, Any]],
    grid: GeoBox,
    bands: Sequence[str],
    *,
    chunksize: int = 512,
    resampling: Resampling = Resampling.nearest,
    dtype: str = "uint16",
    single_resolution: bool = False,
) -> dict[str, xr.DataArray]:
    """Lazy ``(time, band, y, x)`` cubes, one per resolution group (``s2_10m``, ``s2_20m``, ``s2_60m``).

    Each group lies on ``grid`` zoomed out to its native resolution, so the grids nest exactly and every band
    keeps its source pixels; with ``single_resolution`` every band is resampled onto ``grid`` itself.
    All groups share the same time steps.
    """
    if single_resolution:
        name = group_name(abs(grid.resolution.x))
        return {name: open_band_group(items, grid, bands, chunksize=chunksize, resampling=resampling, dtype=dtype)}
    base = abs(grid.resolution.x)
    cubes = {}
    for name, (res, group) in band_groups(items, bands, grid).items():
        factor = res / base
        sub = grid if factor == 1 else grid.zoom_out(factor)
        cubes[name] = open_band_group(
            items, sub, group, chunksize=max(64, int(chunksize / factor)), resampling=resampling, dtype=dtype
        )
    return cubes


def open_band_group(
    items: Sequence[pystac.Item | Mapping[str, Any]],
    grid: GeoBox,
    bands: Sequence[str],
    *,
    chunksize: int = 512,
    resampling: Resampling = Resampling.nearest,
    dtype: str = "uint16",
) -> xr.DataArray:
    """A lazy ``(time, band, y, x)`` cube of ``bands`` on ``grid``, one time step per acquisition.

    Products of the same acquisition (tiles, UTM zones) are mosaicked; where they overlap, a product in the
    grid's own CRS wins, so its pixels pass unresampled. Nothing is read until the cube is computed.
    """
    dicts = [stackstac_ready(item) for item in items]
    if not dicts:
        raise PipelineError("no products to build a cube from: the selection is empty")
    for data in dicts:
        missing = [b for b in bands if b not in data["assets"]]
        if missing:
            raise BandError(
                f"product {data['id']} has no asset for band(s) {missing}; it has {sorted(data['assets'])}: "
                "fix the config's bands"
            )
    epsg = grid.crs.epsg if grid.crs is not None else None
    if epsg is None:
        raise PipelineError(f"the grid's CRS {grid.crs} has no EPSG code, which stackstac needs")
    # Within an acquisition the last product is on top: products in the grid's CRS go last.
    dicts.sort(key=lambda d: (acquisition_key(d), d["properties"]["proj:epsg"] == epsg, d["id"]))
    res = abs(grid.resolution.x)
    stack = stackstac.stack(
        dicts,
        assets=list(bands),
        epsg=epsg,
        resolution=res,
        bounds=tuple(grid.extent.boundingbox),
        snap_bounds=False,
        resampling=resampling,
        chunksize=chunksize,
        dtype=np.dtype(dtype),
        fill_value=np.dtype(dtype).type(NODATA),
        rescale=False,
        sortby_date=False,
        xy_coords="center",
        properties=False,
        band_coords=False,
    )
    keys = [acquisition_key(d) for d in dicts]
    times = {k: d["properties"]["datetime"] for k, d in zip(keys, dicts, strict=True)}
    stack = stack.assign_coords(acquisition=("time", keys))
    cube = stack.groupby("acquisition", squeeze=False).map(_mosaic)
    cube = cube.rename(acquisition="time")
    order = sorted(times, key=lambda k: (times[k], k))
    cube = cube.sel(time=order)
    cube = cube.assign_coords(
        time=np.array([np.datetime64(str(times[k]).replace("Z", "")[:19], "ns") for k in order]),
        acquisition=("time", order),
    )
    cube.attrs = {"crs": str(grid.crs), "transform": tuple(grid.transform)[:6], "nodata": NODATA}
    return cube.transpose("time", "band", "y", "x")


def _mosaic(group: xr.DataArray) -> xr.DataArray:
    return stackstac.mosaic(group, dim="time", nodata=NODATA)
