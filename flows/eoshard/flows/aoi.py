"""Areas of interest from a vector file or a bbox in degrees."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import shapely
from shapely.geometry import box

from eoshard.pipeline.errors import GridError


def read_aoi(aoi: Path | tuple[float, float, float, float]) -> tuple[shapely.Geometry, str]:
    """The AOI as one geometry and its CRS: a bbox is EPSG:4326; a file's features are unioned."""
    if isinstance(aoi, tuple):
        return box(*aoi), "EPSG:4326"
    frame = gpd.read_file(aoi)
    if frame.empty:
        raise GridError(f"the AOI file {aoi} holds no features: expected at least one polygon")
    if frame.crs is None:
        raise GridError(f"the AOI file {aoi} has no CRS: expected one (GeoJSON is EPSG:4326 by definition)")
    area = shapely.union_all(frame.geometry.make_valid().to_numpy())
    if area.is_empty or area.area == 0:
        raise GridError(f"the AOI file {aoi} holds no area (points or lines only): give polygons")
    return area, frame.crs.to_string()
