"""The label file of a build: read (GeoParquet too), and checked against the build's grid before any pixel work."""

from __future__ import annotations

import difflib
import hashlib
import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely
import shapely.errors
from odc.geo.geobox import GeoBox
from pyogrio.errors import DataLayerError, DataSourceError

from eoshard.flows.config import BuildConfig, ConfigError
from eoshard.flows.vector_features import UNCLOSED_RING_WARNING, unbuildable_features, unbuildable_message
from eoshard.pipeline.classes import encode_classes


def read_labels(config: BuildConfig) -> gpd.GeoDataFrame:
    """The label features of ``config.labels`` (GeoParquet through geopandas' own reader: GDAL's Parquet driver is
    optional); a file that cannot be read, holds none, or lacks a column the config names is a ``ConfigError``."""
    assert config.labels is not None
    path, layer = config.labels.path, config.labels.layer
    parquet = Path(path).suffix.lower() in (".parquet", ".geoparquet")
    chosen = None if parquet else _layer(path, layer)
    try:
        with warnings.catch_warnings():
            # GDAL accepts such a ring, GEOS then refuses it: the error below names the features
            warnings.filterwarnings("ignore", message=UNCLOSED_RING_WARNING)
            parcels = gpd.read_parquet(path) if parquet else gpd.read_file(path, layer=chosen)
    except (DataSourceError, DataLayerError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"labels: {path} cannot be read as vector data ({first}); expected a GeoPackage, GeoJSON, Shapefile or "
            "GeoParquet file of label polygons"
        ) from err
    except shapely.errors.GEOSException as err:  # GDAL read a geometry that GEOS cannot build (an unclosed ring)
        bad = [] if parquet else unbuildable_features(path, chosen)
        raise ConfigError(
            f"labels: {unbuildable_message(path, bad, err)}; repair those features or remove them, then rerun"
        ) from err
    if parcels.empty:
        where = f" (layer {layer})" if layer else ""
        raise ConfigError(
            f"labels: {path}{where} holds no features: expected polygons with the column "
            f"{config.labels.class_column!r}; give the file that holds them, or remove `labels:` to build without"
        )
    _check_columns(config, parcels)
    return parcels


def _layer(path: Path, layer: str | None) -> str | None:
    """The layer to read: the one named (which must be there), or the only one with geometries; several of them
    and none named reads the first, with a warning that lists them."""
    try:
        listed = pyogrio.list_layers(path)
    except (DataSourceError, OSError):
        return layer  # read_file says what is wrong with the file
    names = [str(name) for name, _ in listed]
    spatial = [str(name) for name, kind in listed if kind is not None]
    if layer is not None and layer not in names:
        raise ConfigError(
            f"labels: {path} has no layer {layer!r} (labels.layer); it has {names}: name one of them"
        )
    if layer is None and len(spatial) > 1:
        warnings.warn(
            f"labels: {path} has {len(spatial)} layers with geometries ({', '.join(spatial)}): reading the first, "
            f"{spatial[0]!r}; name the parcels' layer with labels.layer",
            UserWarning,
            stacklevel=3,
        )
        return spatial[0]
    return layer


def _check_columns(config: BuildConfig, parcels: gpd.GeoDataFrame) -> None:
    assert config.labels is not None
    labels = config.labels
    named = {"class_column": labels.class_column, "class_name_column": labels.class_name_column,
             "id_column": labels.id_column}  # fmt: skip
    for option, column in named.items():
        if column is not None and column not in parcels.columns:
            held = sorted(map(str, parcels.columns))
            close = _close_column(column, held)
            raise ConfigError(
                f"labels: {labels.path} has no column {column!r} (labels.{option}); "
                + (f"did you mean {close!r}? " if close else "")
                + f"it has {held}: name one of them"
                + (", or leave it out" if option != "class_column" else "")
            )


def _close_column(column: str, held: list[str]) -> str | None:
    """The column ``column`` was likely meant to name: the same but for case (national LPIS files differ there:
    ``CODE_CULTU``, ``code_cultu``), else the closest spelling."""
    same = [c for c in held if c.casefold() == column.casefold()]
    close = same or difflib.get_close_matches(column, held, n=1)
    return close[0] if close else None


def check_labels(config: BuildConfig, parcels: gpd.GeoDataFrame, grid: GeoBox) -> None:
    """What would give a dataset of background alone: a file of no polygons, or polygons that all miss the AOI's
    grid. ``parcels`` are in the grid's CRS."""
    assert config.labels is not None
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


def labels_digest(config: BuildConfig, parcels: gpd.GeoDataFrame) -> str:
    """SHA-256 of what the label layers and class names are made of: the parcels' geometries (WKB) and their class,
    name and id columns. A build resumed or rerun over a label file whose parcels changed is refused by it."""
    assert config.labels is not None
    labels = config.labels
    digest = hashlib.sha256()
    for wkb in shapely.to_wkb(parcels.geometry.to_numpy()):
        digest.update(wkb)  # WKB is self-delimiting
    for column in (labels.class_column, labels.class_name_column, labels.id_column):
        if column is not None:
            digest.update(b"\0" + column.encode() + b"\0")
            digest.update(json.dumps(parcels[column].astype(object).where(parcels[column].notna()).tolist(),
                                     default=str).encode())  # fmt: skip
    return digest.hexdigest()
