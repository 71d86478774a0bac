"""Self-description for foundation models: band metadata for ``dataset.json`` and per-sample index columns.

Both are derived from what the build already wrote (the manifest, the index rows), so the shard tasks do not
change and the Zarr and LMDB bytes stay as they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import geopandas as gpd

from eoshard.pipeline.bandinfo import band_metadata
from eoshard.pipeline.timeseries import day_of_year

INDEX_GROUP = "indices"  # the group of cube.indices (docs/format.md "Float groups")


def manifest_band_metadata(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``dataset.json`` ``band_metadata``: the bands' table entries and how this dataset stores them.

    Reflectance when the Sentinel-2 groups are float32 (``cube.reflectance``), else digital numbers; the indices
    group's bands with their expressions.
    """
    groups = manifest["groups"]
    image_groups = [spec for name, spec in groups.items() if name != INDEX_GROUP]
    reflectance = any(spec["dtype"] == "float32" for spec in image_groups)
    indices = groups.get(INDEX_GROUP, {}).get("expressions", {})
    landsat = any(name.startswith("ls_") for name in groups)
    return band_metadata(list(manifest["bands"]), reflectance=reflectance, indices=indices, landsat=landsat)


def with_sample_metadata(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The index with each sample's centre (``center_lon``, ``center_lat``, WGS84 degrees) and ``doy`` (the day of
    year of each kept date, as Prithvi-EO-2 and other temporal-location models take it)."""
    bounds = frame.geometry.bounds  # the footprint boxes: their centres, exactly, in the dataset CRS
    x, y = (bounds["minx"] + bounds["maxx"]) / 2, (bounds["miny"] + bounds["maxy"]) / 2
    centres = gpd.GeoSeries(gpd.points_from_xy(x, y), crs=frame.crs, index=frame.index).to_crs(4326)
    out = frame.copy()
    out["center_lon"] = centres.x.astype("float64")
    out["center_lat"] = centres.y.astype("float64")
    out["doy"] = [[int(d) for d in day_of_year(list(dates))] for dates in frame["dates"]]
    return out
