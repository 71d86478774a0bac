"""The label file of a build: read (GeoParquet too), and checked against the build's grid before any pixel work."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import geopandas as gpd
import pandas as pd
import shapely
from odc.geo.geobox import GeoBox
from pyogrio.errors import DataLayerError, DataSourceError

from eoshard.flows.config import BuildConfig, ConfigError
from eoshard.pipeline.classes import encode_classes


def read_labels(config: BuildConfig, geometry: bool = True) -> gpd.GeoDataFrame:
    """The label features of ``config.labels`` (GeoParquet through geopandas' own reader: GDAL's Parquet driver is
    optional); a file that cannot be read, or holds none, is a ``ConfigError``."""
    assert config.labels is not None
    path, layer = config.labels.path, config.labels.layer
    try:
        if Path(path).suffix.lower() in (".parquet", ".geoparquet"):
            parcels = gpd.read_parquet(path)
        else:
            parcels = gpd.read_file(path, layer=layer, ignore_geometry=not geometry)
    except (DataSourceError, DataLayerError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"labels: {path} cannot be read as vector data ({first}); expected a GeoPackage, GeoJSON, Shapefile or "
            "GeoParquet file of label polygons"
        ) from err
    if parcels.empty:
        where = f" (layer {layer})" if layer else ""
        raise ConfigError(
            f"labels: {path}{where} holds no features: expected polygons with the column "
            f"{config.labels.class_column!r}; give the file that holds them, or remove `labels:` to build without"
        )
    return parcels


def check_labels(config: BuildConfig, parcels: gpd.GeoDataFrame, grid: GeoBox) -> None:
    """What would only fail after the shards, or give a dataset of background alone: a class name column the file
    lacks, a file of no polygons, polygons that all miss the AOI's grid. ``parcels`` are in the grid's CRS."""
    assert config.labels is not None
    name_column = config.labels.class_name_column
    if name_column and name_column not in parcels.columns:
        raise ConfigError(
            f"labels: {config.labels.path} has no column {name_column!r} (labels.class_name_column); it has "
            f"{sorted(map(str, parcels.columns))}: name one of them, or leave class_name_column out"
        )
    polygons = parcels[parcels.geometry.geom_type.isin(["Polygon", "MultiPolygon", "GeometryCollection"])]
    if polygons.empty or not (polygons.geometry.area > 0).any():
        kinds = sorted({str(k) for k in parcels.geometry.geom_type.dropna()})
        raise ConfigError(
            f"labels: {config.labels.path} holds no polygons (its geometries: {', '.join(kinds) or 'none'}): label "
            "layers are polygons' shares of each pixel; give the parcels' polygons"
        )
    extent = shapely.box(*grid.extent.boundingbox)
    if not polygons.geometry.intersects(extent).any():
        x0, y0, x1, y1 = polygons.total_bounds
        raise ConfigError(
            f"labels: none of the {len(polygons)} polygons of {config.labels.path} overlaps the AOI (the labels "
            f"span {x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f} in {grid.crs}; the AOI's grid "
            f"{', '.join(f'{v:.0f}' for v in grid.extent.boundingbox)}): check the AOI and the label file"
        )


def class_names(
    parcels: pd.DataFrame, class_column: str, name_column: str | None, class_codes: Mapping[str, int] | None
) -> dict[str, str]:
    """Code -> name of the dataset's classes. A name column names the codes of an integer class column and of a
    text one alike (a text column's own values name its codes where it has none); a code that parcels name in two
    ways takes the name most of them give (ties: the first in text order)."""
    codes, own = encode_classes(parcels[class_column], class_codes, class_column)
    if not name_column:
        return {str(code): name for code, name in sorted(own.items())}
    named = pd.DataFrame({"code": codes, "name": parcels[name_column].to_numpy()}).dropna()
    named = named[(named["name"].astype(str).str.strip() != "") & (named["code"] != 0)]  # 0: the background
    counts = named.groupby(["code", named["name"].astype(str)]).size().reset_index(name="n")
    first = counts.sort_values(["code", "n", "name"], ascending=[True, False, True]).drop_duplicates("code")
    chosen = {int(c): str(n) for c, n in zip(first["code"], first["name"], strict=True)}
    return {str(code): chosen.get(code, own.get(code, "")) for code in sorted({*chosen, *own})}
