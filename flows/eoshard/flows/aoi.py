"""Areas of interest from a vector file or a bbox in degrees."""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import shapely
import shapely.errors
from pyogrio.errors import DataSourceError
from shapely.geometry import box

from eoshard.flows.vector_features import UNCLOSED_RING_WARNING, unbuildable_features, unbuildable_message
from eoshard.pipeline.errors import GridError


def read_aoi(aoi: Path | tuple[float, float, float, float]) -> tuple[shapely.Geometry, str]:
    """The AOI as one geometry and its CRS: a bbox is EPSG:4326; a file's features are unioned."""
    if isinstance(aoi, tuple):
        minx, miny, maxx, maxy = aoi
        if not (-180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90):
            raise GridError(
                f"the AOI bbox {aoi} is not minx,miny,maxx,maxy in degrees: expected -180 <= minx < maxx <= 180 "
                "and -90 <= miny < maxy <= 90 (longitude first; for metres, give a vector file with its CRS; "
                "for an AOI across the antimeridian, a vector file of its two halves)"
            )
        return box(*aoi), "EPSG:4326"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=UNCLOSED_RING_WARNING)  # the error below names the features
            frame = gpd.read_file(aoi)
    except (DataSourceError, ValueError) as err:
        raise GridError(
            f"the AOI file {aoi} cannot be read as vector data ({err}): expected a GeoJSON, GeoPackage, "
            "Shapefile or other file GDAL reads, with polygons"
        ) from None
    except shapely.errors.GEOSException as err:  # GDAL read a geometry that GEOS cannot build (an unclosed ring)
        message = unbuildable_message(aoi, unbuildable_features(aoi), err)
        raise GridError(f"the AOI file {message}; repair those features or remove them, then rerun") from None
    if frame.empty:
        raise GridError(f"the AOI file {aoi} holds no features: expected at least one polygon")
    if frame.crs is None:
        raise GridError(f"the AOI file {aoi} has no CRS: expected one (GeoJSON is EPSG:4326 by definition)")
    area = shapely.union_all(frame.geometry.make_valid().to_numpy())
    if area.is_empty or area.area == 0:
        raise GridError(f"the AOI file {aoi} holds no area (points or lines only): give polygons")
    return area, frame.crs.to_string()
