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
    parcels: gpd.GeoDataFrame,
    grid: GeoBox,
    column: str,
    dtype: type,
    background: int,
    block_info: dict[Any, Any] | None = None,
) -> np.ndarray:
    assert block_info is not None
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    sub = grid[r0:r1, c0:c1]
    hits = parcels.iloc[parcels.sindex.query(sub.extent.geom, predicate="intersects")]
    if hits.empty:
        return np.full((r1 - r0, c1 - c0), background, dtype=dtype)
    shapes = zip(hits.geometry, hits[column].astype(dtype), strict=True)
    return rasterize(
        shapes, out_shape=(r1 - r0, c1 - c0), transform=sub.transform, fill=background, dtype=np.dtype(dtype).name
    )


def _lazy_layer(
    parcels: gpd.GeoDataFrame, grid: GeoBox, column: str, dtype: type, chunksize: int, background: int
) -> da.Array:
    ny, nx = grid.shape
    chunks = da.empty((ny, nx), chunks=(chunksize, chunksize), dtype=dtype).chunks
    return da.map_blocks(
        _rasterize_block, parcels, grid, column, dtype, background, dtype=dtype, chunks=chunks, meta=np.array(())
    )


def rasterize_labels(
    parcels: gpd.GeoDataFrame,
    grid: GeoBox,
    *,
    class_column: str,
    id_column: str | None = None,
    background: int = 0,
    chunksize: int = 512,
) -> xr.Dataset:
    """Lazy label layers on ``grid``: ``class`` (int32) and, with ``id_column``, ``parcel_id`` (int64).

    A pixel takes the value of the parcel that holds its centre; ``background`` where none does.
    """
    prepared = prepare_parcels(parcels, grid, class_column)
    layers = {"class": _lazy_layer(prepared, grid, class_column, np.int32, chunksize, background)}
    if id_column is not None:
        if id_column not in prepared.columns:
            raise PipelineError(
                f"the labels have no column {id_column!r}; they have {sorted(map(str, parcels.columns))}: "
                "set labels.id_column to one of them"
            )
        layers["parcel_id"] = _lazy_layer(prepared, grid, id_column, np.int64, chunksize, 0)
    coords = grid.coordinates
    return xr.Dataset(
        {name: (("y", "x"), data) for name, data in layers.items()},
        coords={"y": coords["y"].values, "x": coords["x"].values},
        attrs={"crs": str(grid.crs), "transform": tuple(grid.transform)[:6], "background": background},
    )
