"""Paired sources for super-resolution: a finer image collection on the grid nested in the Sentinel-2 grid."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pystac
import stackstac
import xarray as xr
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling

from eoshard.pipeline.cube import stackstac_ready
from eoshard.pipeline.errors import BandError, GridError, PipelineError
from eoshard.pipeline.grid import attach_grid
from eoshard.pipeline.item_fields import check_one_band

NODATA = 0


def _dtype(item: Mapping[str, Any], band: str) -> str:
    raster = item["assets"][band].get("raster:bands") or [{}]
    return str(raster[0].get("data_type", "uint8"))


def open_paired(
    items: Sequence[pystac.Item | Mapping[str, Any]],
    grid: GeoBox,
    bands: Sequence[str],
    *,
    chunksize: int = 512,
) -> xr.DataArray:
    """A lazy ``(band, y, x)`` mosaic of ``items`` on ``grid`` (the nested finer grid), the newest product on top.

    Nearest-neighbour and no rescaling: where a product's pixels lie on ``grid`` they pass unchanged.
    """
    dicts = [stackstac_ready(item) for item in items]
    if not dicts:
        raise PipelineError("no HR products intersect the AOI: check hr.source and hr.collection")
    for data in dicts:
        missing = [b for b in bands if b not in data["assets"]]
        if missing:
            raise BandError(
                f"HR product {data['id']} has no asset for band(s) {missing}; it has {sorted(data['assets'])}: "
                "fix hr.bands"
            )
        check_one_band(data, bands)
    epsg = grid.crs.epsg if grid.crs is not None else None
    if epsg is None:
        raise PipelineError(f"the grid's CRS {grid.crs} has no EPSG code, which stackstac needs")
    dicts.sort(key=lambda d: (str(d["properties"].get("datetime")), d["id"]))  # the last one ends on top
    dtype = np.dtype(_dtype(dicts[0], bands[0]))
    stack = stackstac.stack(
        dicts,
        assets=list(bands),
        epsg=epsg,
        resolution=abs(grid.resolution.x),
        bounds=tuple(grid.extent.boundingbox),
        snap_bounds=False,
        resampling=Resampling.nearest,
        chunksize=chunksize,
        dtype=dtype,
        fill_value=dtype.type(NODATA),
        rescale=False,
        sortby_date=False,
        xy_coords="center",
        properties=False,
        band_coords=False,
    )
    mosaic = stackstac.mosaic(stack, dim="time", nodata=NODATA)
    if mosaic.shape[-2:] != grid.shape:
        raise GridError(f"the HR mosaic has shape {mosaic.shape[-2:]}, expected the nested grid's {grid.shape}")
    mosaic.attrs = {"nodata": NODATA}
    return attach_grid(mosaic.transpose("band", "y", "x"), grid)
