"""Prediction writers: a COG (GDAL's COG driver, overviews, nodata, colour table, QML and STAC sidecars) or Zarr.

Both take blocks ``(bands, rows, cols)`` at ``(row, col)``; a writer is a context manager returning its
``write`` function, so the caller never holds the whole output.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eoshard.training.errors import InputError
from eoshard.training.maps import (
    CLASS_NODATA,
    class_colours,
    class_names,
    outline_4326,
    write_classification,
    write_qml,
)

Write = Callable[[int, int, np.ndarray], None]


@dataclass(frozen=True)
class OutputSpec:
    """Where and what: shape ``(bands, H, W)``, dtype, georeferencing, and the classes of a class map."""

    path: Path
    shape: tuple[int, int, int]
    dtype: str  # "uint8" (class map) or "float32" (probabilities, super-resolved bands)
    crs: str | None
    transform: list[float] | None
    classes: dict[int, str] | None = None  # a class map's classes (codes are output values)
    band_names: list[str] | None = None  # band descriptions (super-resolution keeps the input bands)
    chunk: int = 256  # Zarr chunk side: the blocks written, so no chunk is read back and rewritten
    dates: list[str] | None = None  # the input's dates (its period goes into a class map's STAC Item)

    @property
    def nodata(self) -> float:
        return CLASS_NODATA if self.dtype == "uint8" else float("nan")

    @property
    def names(self) -> dict[int, str]:
        """Every class code the model can output, with a name."""
        return class_names(self.classes or {}, max([*(self.classes or {}), 0]) + 1)


def need_rasterio() -> Any:
    try:
        import rasterio
    except ImportError as err:
        raise InputError(
            "GeoTIFF input/output needs rasterio: install the extra with `pip install 'eoshard-training[geotiff]'` "
            "or use a Zarr input and a .zarr output"
        ) from err
    return rasterio


def open_writer(spec: OutputSpec) -> Any:
    """The writer for ``spec.path`` (its folder made if missing): a COG for ``.tif``/``.tiff``, else a Zarr array."""
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    return write_cog(spec) if spec.path.suffix.lower() in (".tif", ".tiff") else write_zarr(spec)


@contextmanager
def write_zarr(spec: OutputSpec) -> Iterator[Write]:
    import zarr

    arr = zarr.create_array(
        str(spec.path), shape=spec.shape, dtype=spec.dtype, chunks=(1, spec.chunk, spec.chunk), overwrite=True,
        fill_value=spec.nodata,
    )  # fmt: skip
    attrs: dict[str, Any] = {"crs": spec.crs, "transform": spec.transform}
    attrs["nodata"] = CLASS_NODATA if spec.dtype == "uint8" else "nan"
    if spec.classes is not None:
        attrs["classes"] = {str(k): v for k, v in spec.names.items()}
    if spec.band_names is not None:
        attrs["bands"] = spec.band_names
    arr.attrs.update(attrs)

    def write(row: int, col: int, values: np.ndarray) -> None:
        arr[:, row : row + values.shape[1], col : col + values.shape[2]] = values

    yield write


def overview_count(height: int, width: int, smallest: int = 64) -> int:
    """Overview levels (halving) until the image fits in ``smallest`` pixels: 0 for a small image."""
    return max(0, math.ceil(math.log2(max(height, width) / smallest))) if max(height, width) > smallest else 0


@contextmanager
def write_cog(spec: OutputSpec) -> Iterator[Write]:
    """Blocks go into a tiled temporary GeoTIFF, copied to a COG with overviews once complete.

    A class map gets nodata 255, a colour table, band description ``class``, and ``NAME.qml`` + ``NAME.json``
    (QGIS style and STAC ``classification`` Item) beside it; float outputs get nodata NaN.
    """
    rasterio = need_rasterio()
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.shutil import copy
    from rasterio.windows import Window

    try:
        with rasterio.Env():  # PROJ's own complaint goes to logging, not to stderr beside ours
            crs = CRS.from_user_input(spec.crs) if spec.crs else None
    except CRSError as err:
        raise InputError(
            f"the input's CRS {spec.crs!r:.80} is not one PROJ knows ({err}): give an EPSG code (EPSG:32632) or WKT"
        ) from None
    bands, height, width = spec.shape
    if spec.classes is not None and spec.crs and spec.transform:  # the map's STAC item needs its footprint
        outline_4326(spec.crs, spec.transform, (height, width))
    profile = {
        "driver": "GTiff", "count": bands, "height": height, "width": width, "dtype": spec.dtype,
        "crs": crs, "transform": Affine(*spec.transform) if spec.transform else None, "tiled": True,
        "blockxsize": 256, "blockysize": 256, "nodata": spec.nodata,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "blocks.tif"
        with warnings.catch_warnings():  # an input without a grid makes an output without one: no news
            if spec.transform is None:
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            dst = rasterio.open(tmp_path, "w", **profile)
        with dst:
            yield lambda row, col, v: dst.write(v, window=Window(col, row, v.shape[2], v.shape[1]))
            if spec.classes is not None:
                names = spec.names
                dst.write_colormap(1, {k: (*rgb, 255) for k, rgb in class_colours(sorted(names)).items()})
                dst.set_band_description(1, "class")
            else:
                labels = spec.band_names or [f"class {k} probability" for k in range(bands)]
                for i, label in enumerate(labels, start=1):
                    dst.set_band_description(i, label)
        levels = overview_count(height, width)
        options = {"overview_count": levels} if levels else {"overviews": "NONE"}
        resampling = "nearest" if spec.classes is not None else "average"
        copy(tmp_path, spec.path, driver="COG", compress="deflate", overview_resampling=resampling, **options)
    if spec.classes is not None:
        write_qml(spec.path.with_suffix(".qml"), spec.names)
        write_classification(
            spec.path.with_suffix(".json"),
            spec.path,
            spec.names,
            spec.crs,
            spec.transform,
            (height, width),
            spec.dates,
        )
