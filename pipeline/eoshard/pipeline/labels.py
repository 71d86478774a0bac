"""Vector ground truth on the target grid, computed lazily chunk by chunk with dask."""

from __future__ import annotations

import warnings
from typing import Any

import dask.array as da
import geopandas as gpd
import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox
from rasterio.features import rasterize

from eoshard.pipeline.errors import PipelineError


class InvalidGeometryWarning(UserWarning):
    """Some parcels had invalid geometries and were repaired."""


def prepare_parcels(parcels: gpd.GeoDataFrame, grid: GeoBox, class_column: str) -> gpd.GeoDataFrame:
    """Parcels in the grid's CRS, invalid geometries repaired (with a warning that counts them), empties dropped."""
    if class_column not in parcels.columns:
        raise PipelineError(
            f"the labels have no column {class_column!r}; they have {sorted(map(str, parcels.columns))}: "
            "set labels.class_column to one of them"
        )
    if parcels.crs is None:
        raise PipelineError("the labels have no CRS: write one into the file (e.g. with ogr2ogr -a_srs)")
    out = parcels.to_crs(str(grid.crs))
    invalid = ~out.geometry.is_valid
    if invalid.any():
        warnings.warn(
            f"{int(invalid.sum())} of {len(out)} label geometries were invalid and were repaired with make_valid",
            InvalidGeometryWarning,
            stacklevel=2,
        )
        out.loc[invalid, "geometry"] = out.geometry[invalid].make_valid()
    return out[~out.geometry.is_empty & out.geometry.notna()]


def _rasterize_block(
    parcels: gpd.GeoDataFrame, grid: GeoBox, class_column: str, block_info: dict[Any, Any] | None = None
) -> np.ndarray:
    assert block_info is not None
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    sub = grid[r0:r1, c0:c1]
    hits = parcels.iloc[parcels.sindex.query(sub.extent.geom, predicate="intersects")]
    if hits.empty:
        return np.zeros((r1 - r0, c1 - c0), dtype=np.int32)
    shapes = zip(hits.geometry, hits[class_column].astype("int32"), strict=True)
    return rasterize(shapes, out_shape=(r1 - r0, c1 - c0), transform=sub.transform, fill=0, dtype="int32")


def rasterize_classes(
    parcels: gpd.GeoDataFrame, grid: GeoBox, *, class_column: str, chunksize: int = 512
) -> xr.DataArray:
    """A lazy ``(y, x)`` int32 raster of ``class_column`` (pixel centres inside a parcel; 0 elsewhere)."""
    prepared = prepare_parcels(parcels, grid, class_column)
    ny, nx = grid.shape
    template = da.empty((ny, nx), chunks=(chunksize, chunksize), dtype=np.int32)
    data = da.map_blocks(
        _rasterize_block,
        prepared,
        grid,
        class_column,
        dtype=np.int32,
        chunks=template.chunks,
        meta=np.array(()),
    )
    coords = grid.coordinates
    return xr.DataArray(
        data,
        dims=("y", "x"),
        coords={"y": coords["y"].values, "x": coords["x"].values},
        name="class",
        attrs={"crs": str(grid.crs), "transform": tuple(grid.transform)[:6], "background": 0},
    )
