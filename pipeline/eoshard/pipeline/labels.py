"""Vector ground truth on the target grid, computed lazily chunk by chunk with dask.

Each chunk sees only the parcels that touch it (spatial index) and computes exact polygon shares per pixel
(``eoshard.pipeline.coverage``); every value depends on the pixel and its parcels alone, so the result is the same
whatever the chunking and the number of workers.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox

from eoshard.pipeline.classes import encode_classes, nested_values
from eoshard.pipeline.errors import PipelineError
from eoshard.pipeline.grid import attach_grid
from eoshard.pipeline.label_windows import LAYERS, STACKED_ROWS, LabelSource, label_window, layer_values


class InvalidGeometryWarning(UserWarning):
    """Some parcels had invalid geometries and were repaired."""


class UnclassifiedParcelsWarning(UserWarning):
    """Some parcels on the grid have no class: their pixels are background in the class layer."""


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
    geoms = out.geometry.to_numpy()  # missing and empty alike: nothing to repair or rasterize (shapely's test;
    out = out[~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)]  # geopandas' notna() warns about empties)
    unprojected = ~np.isfinite(shapely.bounds(out.geometry.to_numpy())).all(axis=1)
    if unprojected.any():
        rows = [str(r) for r in out.index[unprojected][:3]]
        raise PipelineError(
            f"{int(unprojected.sum())} label geometries have points that do not exist in the grid's CRS {grid.crs} "
            f"(rows {', '.join(rows)}; their coordinates in {parcels.crs} are far outside its area of use): fix or "
            "drop those geometries"
        )
    invalid = ~out.geometry.is_valid
    if invalid.any():
        warnings.warn(
            f"{int(invalid.sum())} of {len(out)} label geometries were invalid and were repaired with make_valid",
            InvalidGeometryWarning,
            stacklevel=2,
        )
        out.loc[invalid, "geometry"] = out.geometry[invalid].make_valid()
    return out[~out.geometry.is_empty]


def _label_block(source: LabelSource, grid: GeoBox, block_info: dict[Any, Any] | None = None) -> np.ndarray:
    assert block_info is not None
    _, (r0, r1), (c0, c1) = block_info[None]["array-location"]
    return label_window(source, grid[r0:r1, c0:c1])


def label_source(
    parcels: gpd.GeoDataFrame,
    grid: GeoBox,
    *,
    class_column: str,
    id_column: str | None = None,
    background: int = 0,
    double_by: Literal["class", "id"] = "class",
    class_codes: Mapping[str, int] | None = None,
) -> LabelSource:
    """The parcels of ``parcels`` prepared for ``label_window`` on ``grid`` (see ``rasterize_labels``)."""
    prepared = prepare_parcels(parcels, grid, class_column)
    if id_column is not None and id_column not in prepared.columns:
        raise PipelineError(
            f"the labels have no column {id_column!r}; they have {sorted(map(str, parcels.columns))}: "
            "set labels.id_column to one of them"
        )
    if double_by == "id" and id_column is None:
        raise PipelineError("double_by='id' needs an id_column: name the parcel id column")
    ids = parcel_ids(prepared[id_column], id_column) if id_column else np.zeros(len(prepared), np.int64)
    if id_column is not None:  # by the ids as numbers: a column of mixed types has no order of its own
        order = np.argsort(ids, kind="stable")
        prepared, ids = prepared.iloc[order], ids[order]
    geoms = prepared.geometry.to_numpy()
    codes, _ = encode_classes(prepared[class_column], class_codes, class_column)
    compare = ids if double_by == "id" else codes
    names = tuple(n for n in LAYERS if n != "parcel_id" or id_column is not None)
    return LabelSource(geoms, codes, ids, compare, background, names)


def _warn_unclassified(source: LabelSource, grid: GeoBox, class_column: str) -> None:
    """Parcels without a class (a blank or missing name, or the background's own code) on the grid are labelled
    as background: said once, since whole crops can go missing that way (29 of Brandenburg's 100 have no code)."""
    on_grid = shapely.intersects(source.geoms, shapely.box(*grid.extent.boundingbox))
    unclassified = int(np.count_nonzero(source.codes[on_grid] == source.background))
    if unclassified:
        warnings.warn(
            f"{unclassified} of the {int(on_grid.sum())} parcels on the grid have no class in column {class_column!r} "
            f"(blank, missing or {source.background}): their pixels are background ({source.background}) in the class "
            "layer; give them a class, or drop them from the labels if that is not what they are",
            UnclassifiedParcelsWarning,
            stacklevel=3,
        )


def parcel_ids(values: pd.Series, column: str) -> np.ndarray:
    """The parcel ids as int64, or a ``PipelineError`` that names the column and what it holds instead: text, empty
    ids, fractions or numbers past int64 would be cut, wrapped or fail deep in the build. Text that is all whole
    numbers (``"0042"``) is read as numbers."""

    def refuse(what: str, examples: list[Any]) -> PipelineError:
        return PipelineError(
            f"the parcel id column {column!r} holds {what} (e.g. {examples[:3]}): parcel ids are integers (the "
            "parcel_id layer is int64); name an integer column as labels.id_column, or leave it out"
        )

    nested = nested_values(values)
    if nested:
        raise refuse("lists or objects, not single numbers", nested)
    if values.isna().any():
        rows = list(values.index[values.isna()][:3])
        raise refuse(f"{int(values.isna().sum())} empty id(s)", [f"row {r}" for r in rows])
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        text = values.astype(str).str.strip()
        numeric = pd.to_numeric(text, errors="coerce")
        if numeric.isna().any():
            raise refuse("text", list(dict.fromkeys(text[numeric.isna()].tolist())))
        values = numeric
    numbers = values.to_numpy()
    if numbers.dtype.kind == "f" and not np.array_equal(numbers, np.round(numbers)):
        raise refuse("fractions", sorted({float(v) for v in numbers[numbers != np.round(numbers)]}))
    past = [v for v in numbers.tolist() if not -(2**63) <= v < 2**63]
    if past:
        raise refuse("numbers past int64", past)
    if (numbers == 0).any():
        rows = [f"row {r}" for r in values.index[numbers == 0][:3]]
        raise PipelineError(
            f"the parcel id column {column!r} holds the id 0 ({rows}), which the parcel_id layer keeps for pixels of "
            "no parcel: those parcels could not be told from the background; shift the ids (e.g. id + 1) or leave "
            "labels.id_column out"
        )
    return numbers.astype(np.int64)


def rasterize_labels(
    parcels: gpd.GeoDataFrame,
    grid: GeoBox,
    *,
    class_column: str,
    id_column: str | None = None,
    background: int = 0,
    chunksize: int = 512,
    double_by: Literal["class", "id"] = "class",
    class_codes: Mapping[str, int] | None = None,
) -> xr.Dataset:
    """Lazy label layers on ``grid`` from exact polygon areas.

    - ``class`` (int32): the class of the parcel covering most of the pixel (ties: the parcel first in
      ``id_column`` order, else in file order); ``background`` where no parcel covers any of it;
    - ``parcel_id`` (int64, with ``id_column``): that parcel's id, 0 where none;
    - ``coverage`` (float32): the share of the pixel covered by the union of the parcels, 0..1;
    - ``double_partial`` (bool): claimed by two or more parcels of different classes (``double_by="class"``)
      or different ids (``double_by="id"``);
    - ``double_full`` (bool): fully inside one parcel and also claimed by another (a geocoding error).

    A text ``class_column`` becomes codes through ``class_codes`` or in sorted order (``pipeline.classes``).
    """
    source = label_source(
        parcels, grid, class_column=class_column, id_column=id_column, background=background, double_by=double_by,
        class_codes=class_codes,
    )  # fmt: skip
    _warn_unclassified(source, grid, class_column)
    ny, nx = grid.shape
    chunks = ((STACKED_ROWS,), *da.empty((ny, nx), chunks=(chunksize, chunksize)).chunks)
    stacked = da.map_blocks(
        _label_block, source, grid, dtype=np.float64, chunks=chunks, meta=np.array((), dtype=np.float64)
    )
    coords = grid.coordinates
    layers = xr.Dataset(
        {name: (("y", "x"), layer_values(stacked, name)) for name in source.layers},
        coords={"y": coords["y"].values, "x": coords["x"].values},
        attrs={"background": background},
    )
    return attach_grid(layers, grid)
