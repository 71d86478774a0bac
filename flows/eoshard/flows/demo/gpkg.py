"""Writing the demo worlds' parcels as GeoPackages with the same bytes on every run."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio

# GDAL stamps a GeoPackage's table with the time it was written (``gpkg_contents.last_change``) unless
# ``OGR_CURRENT_DATE`` says otherwise: the end of the worlds' season
WRITTEN = "2024-10-31T00:00:00.000Z"


def write_gpkg(frame: gpd.GeoDataFrame, path: Path, layer: str = "parcels") -> None:
    """``frame`` as ``path``'s only layer, replacing the file, stamped ``WRITTEN``."""
    path.unlink(missing_ok=True)
    previous = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": WRITTEN})
    try:
        frame.to_file(path, layer=layer, driver="GPKG", engine="pyogrio")
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": previous})
