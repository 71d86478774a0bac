"""The odc-stac cube engine: the same grid, mosaic rule, dims, dtype and nodata as the stackstac engine.

It serves as a cross-check of stackstac (and as an alternative reader): products go to ``odc.stac.load``
with the target ``GeoBox`` itself and one group per acquisition.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import odc.stac
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling

from eoshard.pipeline.errors import PipelineError
from eoshard.pipeline.items import acquisition_key
from eoshard.pipeline.sensors import NODATA


def odc_band_group(
    dicts: list[dict[str, Any]],
    grid: GeoBox,
    bands: Sequence[str],
    *,
    chunksize: int,
    resampling: Resampling,
    dtype: str,
    nodata: float = NODATA,
) -> xr.DataArray:
    """``(acquisition, band, y, x)`` from ``dicts`` in mosaic order (the last product of an acquisition on top).

    odc-stac's default fuser keeps the first valid pixel, so the products go in reversed order, with
    ``preserve_original_order`` so that odc-stac does not re-sort them by time and id.
    """
    ordered = list(reversed(dicts))
    keys = {d["id"]: acquisition_key(d) for d in ordered}
    first_time: dict[str, datetime] = {}
    items = []
    for data in ordered:
        item = pystac.Item.from_dict(data)
        items.append(item)
        assert item.datetime is not None  # stackstac_ready has checked the item
        first_time.setdefault(keys[item.id], item.datetime.replace(tzinfo=None))
    by_time = {np.datetime64(t, "ns"): k for k, t in first_time.items()}
    if len(by_time) != len(first_time):
        raise PipelineError(
            "two acquisitions start at the same instant, which the odc-stac engine cannot tell apart: "
            "use engine 'stackstac'"
        )
    ds = odc.stac.load(
        items,
        bands=list(bands),
        geobox=grid,
        groupby=lambda item, _parsed, _index: keys[item.id],
        preserve_original_order=True,
        chunks={"y": chunksize, "x": chunksize},
        dtype=dtype,
        nodata=nodata,
        resampling=resampling.name,
        fail_on_error=True,
    )
    cube = ds[list(bands)].to_dataarray("band").drop_vars("spatial_ref", errors="ignore")
    acquisitions = [by_time[np.datetime64(t, "ns")] for t in cube.time.values]
    cube = cube.assign_coords(acquisition=("time", acquisitions)).swap_dims(time="acquisition")
    return cube.drop_vars("time").transpose("acquisition", "band", "y", "x")
