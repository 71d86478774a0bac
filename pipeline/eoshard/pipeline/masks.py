"""Valid-pixel masks from the Sentinel-2 scene classification (SCL) or the Landsat QA_PIXEL bits, lazily, and
per-date valid fractions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox

from eoshard.pipeline.cube import Engine, band_groups, onto_grid, open_band_group
from eoshard.pipeline.grid import group_grid
from eoshard.pipeline.items import stackstac_ready
from eoshard.pipeline.landsat import QA_BAND, qa_valid
from eoshard.pipeline.scl import SCL_INVALID, check_scl_classes
from eoshard.pipeline.sensors import declared_nodata


def scl_valid_mask(scl: xr.DataArray, invalid: Iterable[int] = SCL_INVALID) -> xr.DataArray:
    """Lazy bool: valid where the SCL class is not one of ``invalid`` (nodata 0 is invalid unless left out)."""
    valid = ~scl.isin(list(check_scl_classes(invalid)))
    valid.attrs = {**scl.attrs, "invalid_scl_classes": list(check_scl_classes(invalid))}
    valid.attrs.pop("nodata", None)
    return valid.rename("valid")


def valid_fraction(mask: xr.DataArray, dims: Sequence[str] = ("y", "x")) -> xr.DataArray:
    """The share of valid pixels per date (float32), over the AOI the mask covers."""
    return mask.mean(dims).astype(np.float32).rename("valid_fraction")


def open_valid_mask(
    items: Sequence[pystac.Item | Mapping[str, Any]],
    grid: GeoBox,
    *,
    invalid: Iterable[int] = SCL_INVALID,
    engine: Engine = "stackstac",
    chunksize: int = 512,
) -> xr.DataArray:
    """The lazy ``(time, y, x)`` SCL valid mask on ``grid``: SCL read on its own 20 m grid, repeated exactly.

    Its time steps are those of ``open_cube`` on the same items.
    """
    ((_, (res, _)),) = band_groups(items, ["SCL"], grid).items()
    factor = res / abs(grid.resolution.x)
    sub = group_grid(grid, res)
    scl = open_band_group(
        items, sub, ["SCL"], chunksize=max(64, int(chunksize / factor)), dtype="uint8", engine=engine
    )
    mask = scl_valid_mask(scl.isel(band=0, drop=True), invalid)
    return onto_grid(mask, grid)


def qa_nodata(items: Sequence[pystac.Item | Mapping[str, Any]]) -> float:
    """The fill value the products declare for ``qa_pixel`` (1, the fill bit, where they say none): outside a
    product's footprint the QA_PIXEL reads as fill, so it is invalid."""
    return declared_nodata([stackstac_ready(i) for i in items], [QA_BAND], 1)


def open_qa_valid_mask(
    items: Sequence[pystac.Item | Mapping[str, Any]],
    grid: GeoBox,
    bits: int,
    *,
    engine: Engine = "stackstac",
    chunksize: int = 512,
) -> xr.DataArray:
    """The lazy ``(time, y, x)`` Landsat valid mask on ``grid``: valid where none of ``bits`` of ``qa_pixel`` is
    set, read on its own grid and repeated exactly. Its time steps are those of ``open_cube`` on the same items."""
    ((_, (res, _)),) = band_groups(items, [QA_BAND], grid).items()
    factor = res / abs(grid.resolution.x)
    qa = open_band_group(
        items, group_grid(grid, res), [QA_BAND], chunksize=max(64, int(chunksize / factor)), dtype="uint16",
        engine=engine, nodata=qa_nodata(items),
    )  # fmt: skip
    valid = qa_valid(qa.isel(band=0, drop=True), bits)
    valid.attrs = {**qa.attrs, "invalid_qa_pixel_bits": bits}
    valid.attrs.pop("nodata", None)
    return onto_grid(valid.rename("valid"), grid)
