"""Writing the demo world's rasters as COGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.io import MemoryFile
from rasterio.shutil import copy as rio_copy


def write_cog(path: Path, array: np.ndarray, epsg: int, transform: Affine, *, overviews: bool = True) -> None:
    """A single-band DEFLATE COG (256 px tiles, nodata 0), with nearest overviews unless told otherwise."""
    profile = {
        "driver": "GTiff", "dtype": array.dtype.name, "count": 1, "width": array.shape[1],
        "height": array.shape[0], "crs": f"EPSG:{epsg}", "transform": transform, "nodata": 0,
    }  # fmt: skip
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(array, 1)
        with mem.open() as src:
            rio_copy(
                src,
                str(path),
                driver="COG",
                compress="DEFLATE",
                blocksize=256,
                overview_resampling="nearest",
                overviews="AUTO" if overviews else "NONE",
            )
